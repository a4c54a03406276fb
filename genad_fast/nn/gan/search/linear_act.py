"""The MLP program on the compiled CPU kernels: every layer, forward and backward, one ``linear_act`` call.

On the CPU backend the hand-written path of the search (:class:`~genad_fast.nn.gan.search.program._MLPProgram`)
runs each layer, forward and backward, as one call of the fused op :func:`genad_fast.ops.linear_act`
(float32, or bfloat16 through MKL's bfloat16 GEMM): the input cast and the LeakyReLU backward before
the product, bias, the join of the two gradients, the LeakyReLU and the output cast after it, on each
thread's rows while they are in cache. An iteration is then ten such calls, the residual op and Adam.
Other backends (``eager``, CUDA) run the same plan as ATen calls into preallocated buffers.

The two functions that choose and fetch the kernel, :func:`_layer_op_runs` and :func:`_linear_act_op`,
ask the call's :class:`~genad_fast.ops.Dispatch`: the search resolves no backend of its own.
"""
from __future__ import annotations

import torch

from genad_fast.ops import Dispatch
from genad_fast.ops.dispatch import kernel

__all__: list[str] = []


def _layer_op_runs(backend: "Dispatch | str | None", device: torch.device) -> bool:
    """Whether the search's ``linear_act`` runs on the compiled CPU kernel (``backend``: the call's dispatch, or a
    name resolved here for a direct call). A backend without the op (Triton) runs the ATen plan instead."""
    d = backend if isinstance(backend, Dispatch) else Dispatch.build(backend, device)
    return device.type == "cpu" and d.has("linear_act") and d.backend_of("linear_act") == "cpu"


def _linear_act_op():
    """The compiled CPU ``linear_act`` kernel, called without the op layer's per-call checks (ten calls an
    iteration; :func:`_layer_op_runs` said it runs here)."""
    return kernel("linear_act", "cpu").default


class _LinearActPlan:
    """The arguments of every ``linear_act`` call, fixed once: the last layers of G and f write float32
    (the residual op reads them as they are), the first layers read float32 (z; G(z)) and the backward
    starts from the residual op's float32 gradients, so there are no casts between calls.

    ``g``, ``f``: the program's layers as ``(Wᵀ [in, out], W [out, in], bias, slope)`` in the product dtype;
    ``g_layers``, ``f_layers``: the networks' layers (for the biases, kept in the data dtype). The op allocates
    its outputs, so this plan needs no buffers.
    """

    def __init__(self, g, f, g_layers, f_layers, device: torch.device, dtype: torch.dtype,
                 matmul_dtype: torch.dtype) -> None:
        data, prod = dtype, matmul_dtype

        def forward(prog, layers):
            return [(w, None if l.bias is None else l.bias.detach().to(device, data), slope,
                     data if i == len(prog) - 1 else prod)
                    for i, ((_, w, _, slope), l) in enumerate(zip(prog, layers))]

        self.fwd_g, self.fwd_f = forward(g, g_layers), forward(f, f_layers)
        # backward: weight Wᵀ, the LeakyReLU's slope as gate slope (gated by the layer's output), output dtype
        self.bwd_f = [(wt, 0.0 if slope is None else slope, slope is not None, prod) for wt, _, _, slope in f]
        self.bwd_g = [(wt, 0.0 if slope is None else slope, slope is not None, data if i == 0 else prod)
                      for i, (wt, _, _, slope) in enumerate(g)]

    def forward(self, z: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's output through G, then f, by ``linear_act`` (the last of each in float32)."""
        op = _linear_act_op()
        h, acts_g, acts_f = z, [], []
        for w, b, slope, out in self.fwd_g:
            h = op(h, w, b, None, 0.0, None, slope, out)
            acts_g.append(h)
        for w, b, slope, out in self.fwd_f:
            h = op(h, w, b, None, 0.0, None, slope, out)
            acts_f.append(h)
        return acts_g, acts_f

    def bind(self, z: torch.Tensor, x: torch.Tensor, fx: torch.Tensor, lam: float, residual_op):
        """One iteration as a function of no arguments: ten ``linear_act`` calls, the residual op between."""
        op = _linear_act_op()

        def step() -> tuple[torch.Tensor, torch.Tensor]:
            acts_g, acts_f = self.forward(z)
            loss, r_gx, r_fgx = residual_op(x, acts_g[-1], fx, acts_f[-1], lam)
            g = r_fgx
            for i in reversed(range(len(self.bwd_f))):   # through f; its first layer adds dL/dG(z) (the join)
                wt, slope, gated, out = self.bwd_f[i]
                g = op(g, wt, None, acts_f[i] if gated else None, slope, r_gx if i == 0 else None, None, out)
            for i in reversed(range(len(self.bwd_g))):   # through G, down to dL/dz in float32
                wt, slope, gated, out = self.bwd_g[i]
                g = op(g, wt, None, acts_g[i] if gated else None, slope, None, None, out)
            return loss, g
        return step
