"""The fused residual-MLP conditioner of a coupling as one autograd node: its forward and a hand-written backward
(both C++, csrc/residual_mlp.cpp; the Python entry points are here).

:class:`~genad_fast.nn.flow.realnvp.ResidualMLP` on a compiled backend computes (biases carried beside the stream,
h = h̃ + B; ``bias_gelu(z, b)`` = GELU(z + b), :mod:`genad_fast.ops.gelu`)

    h̃_0 = x·W_inᵀ,                                  B_0 = b_in
    per block k:  g_k = bias_gelu(h̃_k, B_k),  p_k = g_k·W_1kᵀ,  a_k = bias_gelu(p_k, b_1k)
                  h̃_{k+1} = h̃_k + a_k·W_2kᵀ,         B_{k+1} = B_k + b_2k
    out = g·W_outᵀ + b_out,                           g = bias_gelu(h̃_n, B_n)

and its backward, from ∂out (by the chain rule through the same steps, in reverse):

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

**Low precision** (``*_lowp``, csrc/residual_mlp_lowp.cpp; a FlowDetector's ``train_dtype="bfloat16"``): the
modules' arithmetic under ``torch.autocast``, as one node. With ``·̂`` a cast to the low dtype (bfloat16) and every
product's output in it:

    h_0 = x̂·Ŵ_inᵀ + b̂_in;  per block k:  g_k = GELU(h_k),  p_k = g_k·Ŵ_1kᵀ + b̂_1k,  a_k = GELU(p_k),
                                       h_{k+1} = h_k + a_k·Ŵ_2kᵀ + b̂_2k
    out = GELU(h_n)·Ŵ_outᵀ + b̂_out, returned in x's dtype

and the backward the same chain in the low dtype (``gelu_backward`` for the GELUs), each weight gradient cast back
to its parameter's dtype. The bias gradients are sums of the rows accumulated into the parameter's dtype (autocast's
path rounds them to bfloat16 first). Why: a product of a 1,544-feature flow's conditioner runs 4-7× faster in
bfloat16 on AMX, and the module path under autocast gave back much of it in per-call casts and bookkeeping
(docs/training_speed.md, ninth pass).
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


def conditioner_train_lowp(x: torch.Tensor, n_blocks: int, params, dtype: torch.dtype) -> torch.Tensor:
    """The conditioner with its products in ``dtype`` (module docstring, "Low precision"), one C++ autograd node;
    the output, ``x``'s gradient and the parameters' gradients in their own dtypes."""
    return _ext._C._residual_mlp_train_lowp(x, n_blocks, list(params), dtype)


def conditioner_forward_lowp(x: torch.Tensor, n_blocks: int, params, dtype: torch.dtype) -> torch.Tensor:
    """The same without gradients."""
    return _ext._C._residual_mlp_forward_lowp(x, n_blocks, list(params), dtype)
