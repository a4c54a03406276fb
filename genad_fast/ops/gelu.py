"""``bias_gelu``: the exact GELU of a matrix product plus its bias, forward and backward in one pass each.

::

    out    = GELU(z + b),    GELU(u) = u·Φ(u)                      z [M, N] (a product without its bias), b [N]
    grad_z = g·GELU'(z + b), GELU'(u) = Φ(u) + u·φ(u)
    grad_b = Σ_rows grad_z

(Hendrycks & Gimpel 2016.) float32 (Φ from the Abramowitz-Stegun erf ATen's float GELU uses, |error| <= 1.5e-7)
or float64 (the exact erf).

Why an op: FlowDetector trains its couplings' conditioners, residual MLPs of Linear and GELU layers
(:class:`~genad_fast.nn.flow.realnvp.ResidualMLP`), forty such layers a step at [256, 128]. Composed from ATen
ops each costs the bias broadcast into the product's output, the GELU's erf, and in the backward a second erf, an
exp and a separate reduction for the bias gradient. The kernels read their inputs once and write their outputs
once; Φ's exponential is φ's, so the backward costs no second transcendental; the bias gradient is summed in
double over fixed row blocks (the same bits for any number of threads). The eager backend runs
:mod:`genad_fast.reference.bias_gelu` under autograd. CPU and CUDA kernels; no Triton kernel.

A training step that keeps its activations can keep GELU' too: the registered pair ``bias_gelu_keep(z, bias) ->
(out, derivative)`` and ``bias_gelu_backward_kept(grad, derivative) -> (grad_z, grad_bias)`` (the same bits as
``bias_gelu`` and ``bias_gelu_backward``) moves the erf and the exponential out of the backward, which becomes a
multiply and the column sums: the fused conditioner's node trains with them (csrc/residual_mlp.cpp). At [256, 128]
on one Sapphire Rapids thread capped at AVX2, the forward 24.7 → 25.8 µs and the backward 27.2 → 7.8 µs. Called
from C++ only (no Python wrapper, no autograd of their own); eager twins in :mod:`genad_fast.reference.bias_gelu`.
"""
from __future__ import annotations

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.reference import bias_gelu as _reference

__all__ = ["bias_gelu"]


def bias_gelu(z: torch.Tensor, bias: torch.Tensor, *, backend: str | Dispatch | None = None) -> torch.Tensor:
    """``GELU(z + bias)`` (exact GELU), contiguous ``[M, N]``; see the module docstring.

    Differentiable in z and bias (the backward kernel on the compiled backends, autograd of the composite on the
    eager one); a second derivative (``create_graph=True``) only on the eager backend: the compiled one raises.
    ``backend``: ``"eager"``, ``"cpu"``, ``"cuda"``, None (``GENAD_FAST_BACKEND``, else auto) or a
    :class:`~genad_fast.ops.Dispatch`. There is no Triton kernel: ``"triton"`` raises BackendUnavailableError.
    """
    for name, t, rank in (("z", z, 2), ("bias", bias, 1)):
        if not isinstance(t, torch.Tensor) or t.dim() != rank:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a {rank}-D tensor, got {got}")
    check_float("z", z)
    if bias.dtype != z.dtype:
        raise TypeError(f"bias must have z's dtype {str(z.dtype).replace('torch.', '')}, got "
                        f"{str(bias.dtype).replace('torch.', '')}")
    if bias.shape[0] != z.shape[1]:
        raise ValueError(f"bias must have shape [{z.shape[1]}] (one entry per column of z), got {list(bias.shape)}")
    if bias.device != z.device:
        raise ValueError(f"bias is on {bias.device}, z on {z.device}: pass tensors on one device")
    chosen = select("bias_gelu", backend, z.device)
    if chosen == "eager":
        return _reference.bias_gelu(z, bias).contiguous()
    return kernel("bias_gelu", chosen)(z, bias)


def _fake_forward(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return z.new_empty(z.shape)


def _fake_backward(grad: torch.Tensor, z: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return z.new_empty(z.shape), bias.new_empty(bias.shape)


def _fake_keep(z: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return z.new_empty(z.shape), z.new_empty(z.shape)


def _fake_backward_kept(grad: torch.Tensor, derivative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return derivative.new_empty(derivative.shape), derivative.new_empty(derivative.shape[1:])


if _ext._C is not None and hasattr(torch.ops.genad_fast, "bias_gelu"):
    torch.library.register_fake("genad_fast::bias_gelu")(_fake_forward)
    torch.library.register_fake("genad_fast::bias_gelu_backward")(_fake_backward)
    torch.library.register_fake("genad_fast::bias_gelu_keep")(_fake_keep)
    torch.library.register_fake("genad_fast::bias_gelu_backward_kept")(_fake_backward_kept)
