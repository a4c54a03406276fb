"""Fused affine coupling (RealNVP, Dinh et al. 2017; Glow, Kingma & Dhariwal 2018).

Forward ``s = c·tanh(h[:, :D]/c); y = x·exp(s) + h[:, D:]; logdet = Σ_j s_j``; inverse
``x = (y − t)·exp(−s), logdet = −Σ_j s_j``; forward+backward runs the forward and then
``(y.sum() + logdet.sum()).backward()`` with x and h requiring grad. Clamp c = 2.0, float32.

Bytes moved: what a fused implementation must read and write at least, each tensor argument
and result once (4 bytes per float32):
- forward / inverse: read x[N,D] and h[N,2D], write y[N,D] and logdet[N]: 4ND + N floats;
- forward+backward: the forward, then the backward reading grad_y[N,D], grad_logdet[N], x, h and
  writing grad_x[N,D], grad_h[N,2D] (7ND + N): 11ND + 2N floats in all.
"""
from __future__ import annotations

import torch

from bench.registry import Case, Size, allclose_check, fused_op, register, standard_providers

CLAMP = 2.0
SIZES = [Size("4096x64", {"n": 4096, "d": 64}),
         Size("65536x64", {"n": 65536, "d": 64}),
         Size("1000000x32", {"n": 1_000_000, "d": 32})]
CHECK = allclose_check(rtol=1e-4, atol=1e-5)


def coupling_forward_eager(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = x.shape[1]
    s = CLAMP * torch.tanh(h[:, :d] / CLAMP)
    return x * torch.exp(s) + h[:, d:], s.sum(1)


def coupling_inverse_eager(y: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = y.shape[1]
    s = CLAMP * torch.tanh(h[:, :d] / CLAMP)
    return (y - h[:, d:]) * torch.exp(-s), -s.sum(1)


def fused_forward(backend: str):
    op = fused_op("coupling_forward")
    return lambda x, h: op(x, h, CLAMP, backend=backend)


def fused_inverse(backend: str):
    op = fused_op("coupling_inverse")
    return lambda y, h: op(y, h, CLAMP, backend=backend)


def forward_backward(f):
    """One training step's worth of the layer: forward, then backward of y.sum() + logdet.sum()."""

    def step(x: torch.Tensor, h: torch.Tensor):
        x.grad = h.grad = None          # as optimizer.zero_grad(set_to_none=True) does
        y, logdet = f(x, h)
        (y.sum() + logdet.sum()).backward()
        return x.grad, h.grad

    return step


def setup(size: Size, device: torch.device, grad: bool = False, inverse: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    n, d = size["n"], size["d"]
    x = torch.randn(n, d, generator=g).to(device).requires_grad_(grad)
    h = torch.randn(n, 2 * d, generator=g).to(device).requires_grad_(grad)
    return {"y" if inverse else "x": x, "h": h}


def items(size: Size) -> float:
    return size["n"] * size["d"]


def bytes_one_way(size: Size) -> float:
    n, d = size["n"], size["d"]
    return 4.0 * (4 * n * d + n)


register(Case(
    "coupling", "forward", SIZES, setup,
    standard_providers(coupling_forward_eager, fused_forward),
    items=items, bytes_moved=bytes_one_way, check=CHECK,
    description="y, logdet of an affine coupling, clamp 2.0, float32"))

register(Case(
    "coupling", "fwd+bwd", SIZES, lambda size, device: setup(size, device, grad=True),
    standard_providers(coupling_forward_eager, fused_forward, wrap=forward_backward),
    items=items, bytes_moved=lambda s: 4.0 * (11 * s["n"] * s["d"] + 2 * s["n"]), check=CHECK,
    description="forward, then backward of y.sum() + logdet.sum() into x.grad and h.grad"))

register(Case(
    "coupling", "inverse", SIZES, lambda size, device: setup(size, device, inverse=True),
    standard_providers(coupling_inverse_eager, fused_inverse),
    items=items, bytes_moved=bytes_one_way, check=CHECK,
    description="x, logdet of the inverse coupling, clamp 2.0, float32"))
