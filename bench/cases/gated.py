"""``gated_tanh``: the gated activation unit of DiffusionDetector's denoiser, forward and forward+backward.

The unit of every residual layer of :class:`genad_fast.nn.diffusion.Denoiser` at its training shape: the dilated
convolution's output ``[B, 2C, L]`` = ``[64, 128, 192]`` (batch 64, 64 residual channels, window 192: what a
default fit of the reference series trains on), and a stream's small call ``[2, 128, 64]``. The eager provider is
the composite the module ran before the op (``σ(a)·(2σ(2b) - 1)`` over the halves, the op's eager twin);
``compile`` is ``torch.compile`` of it; ``cpu``/``cuda`` the op. ``fwd+bwd`` runs the forward, then the backward of
``(out · g).sum()`` into x.grad (a training step's worth of the unit). float32.

Bytes moved, each tensor once: forward reads x [B, 2C, L] and writes [B, C, L]; the backward also reads g
[B, C, L] and x again and writes x.grad [B, 2C, L].
"""
from __future__ import annotations

import torch

from bench.registry import Case, Size, allclose_check, fused_op, register, standard_providers

SIZES = [Size("B2-C64-L64", {"b": 2, "c": 64, "l": 64}), Size("B64-C64-L192", {"b": 64, "c": 64, "l": 192})]
CHECK = allclose_check(rtol=1e-5, atol=1e-5)


def setup(size: Size, device: torch.device, grad: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    x = (2.0 * torch.randn(size["b"], 2 * size["c"], size["l"], generator=g)).to(device).requires_grad_(grad)
    out = {"x": x}
    if grad:
        out["g"] = torch.randn(size["b"], size["c"], size["l"], generator=g).to(device)
    return out


def gated_eager(x, g=None):
    """The module's composite before the op (genad_fast.reference.gated: tanh(b) as 2σ(2b) - 1)."""
    a, b = x.chunk(2, dim=1)
    return torch.sigmoid(a) * (2.0 * torch.sigmoid(2.0 * b) - 1.0)


def gated_fused(backend: str):
    op = fused_op("gated_tanh")
    return lambda x, g=None: op(x, 1, backend=backend)


def forward_backward(f):
    """The unit's share of a training step: forward, then backward of (out · g).sum() into x.grad."""

    def step(x: torch.Tensor, g: torch.Tensor):
        x.grad = None
        (f(x) * g).sum().backward()
        return x.grad

    return step


def items(size: Size) -> float:
    return size["b"] * size["c"] * size["l"]


register(Case(
    "gated_tanh", "forward", SIZES, setup, standard_providers(gated_eager, gated_fused),
    items=items, bytes_moved=lambda s: 4.0 * 3 * items(s), check=CHECK,
    description="σ(a)·tanh(b) over the halves of [B, 2C, L] (the denoiser's gated unit), float32"))

register(Case(
    "gated_tanh", "fwd+bwd", SIZES, lambda size, device: setup(size, device, grad=True),
    standard_providers(gated_eager, gated_fused, wrap=forward_backward),
    items=items, bytes_moved=lambda s: 4.0 * 9 * items(s), check=CHECK,
    description="forward, then backward of (out · g).sum() into x.grad, float32"))
