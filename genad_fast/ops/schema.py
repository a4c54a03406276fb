"""Every op's schema and the backends that implement it: one table for the C++ and the Triton library.

``SCHEMAS`` holds the strings of ``csrc/ops.cpp``'s ``m.def`` lines, character for character: the C++ library
``genad_fast`` defines its ops from those lines, and the Triton twins in ``genad_fast_triton`` are defined here
from the same strings (:func:`define_triton`), so both namespaces have one signature per op (argument names,
alias annotations, defaults), which ``tests/test_op_schema.py`` compares with what the dispatcher registered.

``IMPLEMENTED`` is the capability table: the backends each op has. The dispatch object
(:class:`genad_fast.ops.dispatch.Dispatch`) reads it to say, per op, which backend runs it and whether a kernel
exists at all (``linear_act`` has no Triton kernel: the GPU search is captured in a CUDA graph instead;
``conv1d_act`` neither: on a GPU the convolution is cuDNN's either way; nor ``gated_tanh``: one element-wise pass,
which the CUDA kernel already is; nor ``bias_gelu`` and ``permute_affine``, for the same reason).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["CPP_NAMESPACE", "IMPLEMENTED", "SCHEMAS", "TRITON_NAMESPACE", "define_triton", "namespace_of"]

CPP_NAMESPACE = "genad_fast"             # backends "cpu" and "cuda": csrc/cpu, csrc/cuda
TRITON_NAMESPACE = "genad_fast_triton"   # backend "triton": kernels/ (genad_fast.kernels)

SCHEMAS: dict[str, str] = {
    "coupling_forward": "coupling_forward(Tensor x, Tensor h, float clamp) -> (Tensor y, Tensor logdet)",
    "coupling_inverse": "coupling_inverse(Tensor y, Tensor h, float clamp) -> (Tensor x, Tensor logdet)",
    "coupling_backward": ("coupling_backward(Tensor grad_out, Tensor grad_logdet, Tensor inp, Tensor h, float clamp, "
                          "bool inverse) -> (Tensor grad_inp, Tensor grad_h)"),
    "philox_normal_": "philox_normal_(Tensor(a!) out, int seed, int offset) -> ()",
    "add_noise": "add_noise(Tensor x0, Tensor a, Tensor b, int seed, int offset, Tensor? noise) -> Tensor",
    "diffusion_step": ("diffusion_step(Tensor x_t, Tensor eps, Tensor a, Tensor b, Tensor c, int seed, int offset, "
                       "Tensor? noise) -> Tensor"),
    "recon_error_accumulate_": ("recon_error_accumulate_(Tensor(a!) score, Tensor x, Tensor x_hat, Tensor? mask, "
                                "float weight) -> ()"),
    "anogan_residual": ("anogan_residual(Tensor x, Tensor gx, Tensor fx, Tensor fgx, float lam) -> (Tensor loss, "
                        "Tensor grad_gx, Tensor grad_fgx)"),
    "masked_adam_": ("masked_adam_(Tensor(a!) z, Tensor grad, Tensor(b!) m, Tensor(c!) v, Tensor(d!) step, "
                     "Tensor active, float lr, float beta1, float beta2, float eps) -> ()"),
    "kde_logpdf": "kde_logpdf(Tensor queries, Tensor refs, float bandwidth, bool exclude_self=False) -> Tensor",
    "knn_distance": "knn_distance(Tensor queries, Tensor refs, int k, bool exclude_self) -> Tensor",
    "linear_act": ("linear_act(Tensor x, Tensor weight, Tensor? bias, Tensor? gate, float gate_slope, "
                   "Tensor? addend, float? slope, ScalarType? out_dtype) -> Tensor"),
    "conv1d_act": "conv1d_act(Tensor x, Tensor weight, Tensor? bias, int length, float? slope, bool pool) -> Tensor",
    "gated_tanh": "gated_tanh(Tensor x, int dim) -> Tensor",
    "gated_tanh_backward": "gated_tanh_backward(Tensor grad, Tensor x, int dim) -> Tensor",
    "bias_gelu": "bias_gelu(Tensor z, Tensor bias) -> Tensor",
    "bias_gelu_backward": ("bias_gelu_backward(Tensor grad, Tensor z, Tensor bias) -> (Tensor grad_z, "
                           "Tensor grad_bias)"),
    "bias_gelu_keep": "bias_gelu_keep(Tensor z, Tensor bias) -> (Tensor out, Tensor derivative)",
    "bias_gelu_backward_kept": ("bias_gelu_backward_kept(Tensor grad, Tensor derivative) -> (Tensor grad_z, "
                                "Tensor grad_bias)"),
    "permute_affine": ("permute_affine(Tensor x_a, Tensor x_b, Tensor bias, Tensor log_scale, Tensor perm, int split) "
                       "-> (Tensor, Tensor)"),
    "permute_affine_backward": ("permute_affine_backward(Tensor grad_a, Tensor grad_b, Tensor v_a, Tensor v_b, "
                                "Tensor log_scale, Tensor perm, int source_split) -> (Tensor grad_x_a, "
                                "Tensor grad_x_b, Tensor grad_bias, Tensor grad_log_scale)"),
}

_ALL = ("eager", "cpu", "cuda", "triton")
#: The backends each op has ("eager" is its reference in genad_fast.reference, always there).
IMPLEMENTED: dict[str, tuple[str, ...]] = {op: _ALL for op in SCHEMAS}
IMPLEMENTED["linear_act"] = ("eager", "cpu", "cuda")
IMPLEMENTED["conv1d_act"] = ("eager", "cpu", "cuda")
IMPLEMENTED["gated_tanh"] = IMPLEMENTED["gated_tanh_backward"] = ("eager", "cpu", "cuda")
IMPLEMENTED["bias_gelu"] = IMPLEMENTED["bias_gelu_backward"] = ("eager", "cpu", "cuda")
IMPLEMENTED["bias_gelu_keep"] = IMPLEMENTED["bias_gelu_backward_kept"] = ("eager", "cpu", "cuda")
IMPLEMENTED["permute_affine"] = IMPLEMENTED["permute_affine_backward"] = ("eager", "cpu", "cuda")


def namespace_of(backend: str) -> str:
    """The library whose kernels run ``backend`` ("cpu" and "cuda" share the C++ one; keys by device)."""
    if backend == "triton":
        return TRITON_NAMESPACE
    if backend in ("cpu", "cuda"):
        return CPP_NAMESPACE
    raise ValueError(f"backend {backend!r} has no kernel library (eager runs genad_fast.reference)")


def define_triton(op: str, impl: Callable) -> None:
    """Define ``genad_fast_triton::<op>`` from :data:`SCHEMAS` and register ``impl`` for CPU tensors (Triton's
    interpreter) and CUDA tensors. ``impl`` imports Triton itself, on its first call, so that ``import
    genad_fast`` does not import triton."""
    if "triton" not in IMPLEMENTED[op]:
        raise ValueError(f"{op} has no Triton kernel (its backends: {', '.join(IMPLEMENTED[op])})")
    name, args = SCHEMAS[op].split("(", 1)
    if name != op:
        raise ValueError(f"the schema of {op!r} names {name!r}")
    torch.library.define(f"{TRITON_NAMESPACE}::{op}", "(" + args)
    torch.library.impl(f"{TRITON_NAMESPACE}::{op}", ("cpu", "cuda"), impl)
