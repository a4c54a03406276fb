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
