"""The fused residual-MLP conditioner of a coupling as one autograd node: its forward and a hand-written backward.

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
and ~1 ms of ~78 ms at 1,544. A second derivative (``create_graph=True``) is refused by name, as the kernels' own
autograd refuses it.
"""
from __future__ import annotations

import torch


def conditioner_forward(x: torch.Tensor, forward_op, n_blocks: int, params, saved: list | None = None) -> torch.Tensor:
    """The conditioner's output (module docstring) from ``params`` in :class:`ResidualMLPFunction`'s order, by the
    backend's ``bias_gelu`` kernel ``forward_op``; ``saved``, if given, receives what the backward reads."""
    h, bias = torch.mm(x, params[0].T), params[1]                # h̃_0 = x·W_inᵀ, B_0 = b_in
    for k in range(n_blocks):
        w1, b1, w2, b2 = params[2 + 4 * k: 6 + 4 * k]
        g = forward_op(h, bias)
        pre = torch.mm(g, w1.T)
        a = forward_op(pre, b1)                                  # a_k = GELU(Linear(GELU(h)))
        if saved is not None:
            saved += [h, bias, g, pre, a]
        h, bias = torch.addmm(h, a, w2.T), bias + b2             # h̃ += a_k·W_2kᵀ, B += b_2k
    g = forward_op(h, bias)
    if saved is not None:
        saved += [h, bias, g]
    return torch.addmm(params[-1], g, params[-2].T)


class ResidualMLPFunction(torch.autograd.Function):
    """``apply(x, forward_op, backward_op, n_blocks, W_in, b_in, [W_1k, b_1k, W_2k, b_2k]·n_blocks, W_out, b_out)``:
    the conditioner's output (module docstring); ``forward_op``/``backward_op`` are the backend's ``bias_gelu`` and
    ``bias_gelu_backward`` kernels."""

    @staticmethod
    def forward(ctx, x, forward_op, backward_op, n_blocks, *params):
        saved = [x]
        with torch.no_grad():
            out = conditioner_forward(x, forward_op, n_blocks, params, saved)
        ctx.save_for_backward(*saved, *params)
        ctx.backward_op, ctx.n_blocks = backward_op, n_blocks
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: the calls below are not differentiable
            raise RuntimeError("ResidualMLP's fused conditioner (a compiled backend) has no second derivative "
                               "(create_graph=True); run the flow with backend='eager' for one")
        saved, n, backward_op = ctx.saved_tensors, ctx.n_blocks, ctx.backward_op
        x, blocks = saved[0], [saved[1 + 5 * k: 6 + 5 * k] for k in range(n)]
        h, bias, g = saved[1 + 5 * n: 4 + 5 * n]
        params = saved[4 + 5 * n:]
        grads: list[torch.Tensor | None] = [None] * len(params)
        grad_out = grad_out.contiguous()
        grads[-2], grads[-1] = grad_out.T.mm(g), grad_out.sum(0)
        grad_h, grad_bias = backward_op(grad_out.mm(params[-2]), h, bias)
        for k in reversed(range(n)):
            h_k, bias_k, g_k, pre, a = blocks[k]
            w1, b1, w2, _ = params[2 + 4 * k: 6 + 4 * k]
            grads[4 + 4 * k], grads[5 + 4 * k] = grad_h.T.mm(a), grad_bias
            grad_pre, grads[3 + 4 * k] = backward_op(grad_h.mm(w2), pre, b1)
            grads[2 + 4 * k] = grad_pre.T.mm(g_k)
            grad_h_k, grad_bias_k = backward_op(grad_pre.mm(w1), h_k, bias_k)
            grad_h, grad_bias = grad_h + grad_h_k, grad_bias + grad_bias_k
        grads[0], grads[1] = grad_h.T.mm(x), grad_bias
        grad_x = grad_h.mm(params[0]) if ctx.needs_input_grad[0] else None
        grads = [gr if ctx.needs_input_grad[4 + i] else None for i, gr in enumerate(grads)]
        return (grad_x, None, None, None, *grads)
