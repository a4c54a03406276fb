"""The fused residual-MLP conditioner of a coupling as one autograd node: its forward and a hand-written backward
(both C++, csrc/residual_mlp.cpp; the Python entry points are here).

:class:`~genad_fast.nn.flow.realnvp.ResidualMLP` on a compiled backend computes (biases carried beside the stream,
h = h̃ + B; ``bias_gelu(z, b)`` = GELU(z + b), :mod:`genad_fast.ops.gelu`)

    h̃_0 = x·W_inᵀ,                                  B_0 = b_in
    per block k:  g_k = bias_gelu(h̃_k, B_k),  p_k = g_k·W_1kᵀ,  a_k = bias_gelu(p_k, b_1k)
                  h̃_{k+1} = h̃_k + a_k·W_2kᵀ,         B_{k+1} = B_k + b_2k
    out = g·W_outᵀ + b_out,                           g = bias_gelu(h̃_n, B_n)

and its backward, from ∂out (by the chain rule through the same steps, in reverse; in the node each
``bias_gelu_backward`` is ``bias_gelu_backward_kept`` of the GELU′ its forward kept with ``bias_gelu_keep``, the same
bits without a second erf and exponential, :mod:`genad_fast.ops.gelu`):

    ∂W_out = ∂outᵀ·g,  ∂b_out = Σ_rows ∂out,  (∂h̃, ∂B) = bias_gelu_backward(∂out·W_out, h̃_n, B_n)
    per block, last first:  ∂W_2k = ∂h̃ᵀ·a_k,  ∂b_2k = ∂B,
                            (∂p, ∂b_1k) = bias_gelu_backward(∂h̃·W_2k, p_k, b_1k),  ∂W_1k = ∂pᵀ·g_k,
                            (∂h̃', ∂B') = bias_gelu_backward(∂p·W_1k, h̃_k, B_k),  ∂h̃ += ∂h̃',  ∂B += ∂B'
    ∂W_in = ∂h̃ᵀ·x,  ∂b_in = ∂B,  ∂x = ∂h̃·W_in

Why one node: autograd records ~11 nodes per conditioner (the products, the GELUs, the bias sums), each with its
own bookkeeping and Python call, and a flow step on a 32-feature table is ~250 such small calls (docs/
training_speed.md). One node does the same ATen and kernel calls, in the same order, so the values and gradients
are the modules' bit for bit (tests/test_flow_model.py); measured, ~1.3 ms of a ~23 ms training step at 32 features
and ~1 ms of ~78 ms at 1,544. Written in Python it still cost ~65 µs a conditioner, forward and backward, in
argument parsing and frames (~0.5 ms of a ~16 ms step at 32 features, one Sapphire Rapids thread): the node is C++.
A second derivative (``create_graph=True``) is refused by name, as the kernels' own autograd refuses it.

**bfloat16 products** (``*_bf16``; a FlowDetector's ``train_dtype="bfloat16"``): the same node and formulas, with
every product's operands rounded to bfloat16 and the product accumulated and returned in float32 (MKL's
``cblas_gemm_bf16bf16f32``, csrc/bf16_gemm.h): with r(·) the rounding, x·W_inᵀ is r(x)·r(W_in)ᵀ, ∂W_out is
r(∂out)ᵀ·r(g), and so on. The GELUs, the bias sums, the residual stream and every result stay float32, as in
``torch.backends.mkldnn``'s "bf16" precision, but per call. Each operand is rounded once, where it is made. Why: on
AMX a 1,544-feature flow's conditioner products run 2.5-5× faster this way (docs/training_speed.md, ninth pass).
Its eager twin is :func:`bf16_product` in the modules' composite (:meth:`~genad_fast.nn.flow.realnvp.ResidualMLP.
forward_low_precision` with ``backend="eager"``).
"""
from __future__ import annotations

import torch

from genad_fast import _ext


def conditioner_forward(x: torch.Tensor, n_blocks: int, params) -> torch.Tensor:
    """The conditioner's output (module docstring) without gradients (scoring), by the ``bias_gelu`` kernel of
    ``x``'s device (CPU or CUDA) and ATen's products; ``params`` in
    :meth:`~genad_fast.nn.flow.realnvp.ResidualMLP._fused_parameters`' order."""
    return _ext._C._residual_mlp_forward(x, n_blocks, list(params))


def conditioner_train(x: torch.Tensor, n_blocks: int, params) -> torch.Tensor:
    """The same output with gradients: one C++ autograd node (its backward hand-written, module docstring)."""
    return _ext._C._residual_mlp_train(x, n_blocks, list(params))



def conditioner_train_bf16(x: torch.Tensor, n_blocks: int, params) -> torch.Tensor:
    """The conditioner with bfloat16 products (module docstring), one C++ autograd node; float32 in and out."""
    return _ext._C._residual_mlp_train_bf16(x, n_blocks, list(params))


def conditioner_forward_bf16(x: torch.Tensor, n_blocks: int, params) -> torch.Tensor:
    """The same without gradients."""
    return _ext._C._residual_mlp_forward_bf16(x, n_blocks, list(params))


def bf16_products_available() -> bool:
    """Whether this torch build exports the bfloat16 GEMM the two above call (its x86-64 wheels, with MKL): the
    GEMM linear_act's bfloat16 product calls too (csrc/bf16_gemm.h)."""
    return bool(_ext._C._linear_act_has_mkl_bf16())


def _round_bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


class _Bf16Product(torch.autograd.Function):
    """a·b of bfloat16-rounded operands in float32, forward and backward (∂a = r(∂)·r(b)ᵀ, ∂b = r(a)ᵀ·r(∂))."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a_r, b_r = _round_bf16(a), _round_bf16(b)
        ctx.save_for_backward(a_r, b_r)
        return a_r @ b_r

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a_r, b_r = ctx.saved_tensors
        grad_r = _round_bf16(grad)
        return grad_r @ b_r.T, a_r.T @ grad_r


def bf16_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The eager twin of the node's products: ``a @ b`` with both operands, and in the backward the incoming
    gradient, rounded to bfloat16, the products and sums in ``a``'s dtype (exact products of bfloat16 values, so
    the node's MKL products differ from it by the order of the float32 sums only)."""
    return _Bf16Product.apply(a, b)
