"""``bias_gelu``: the exact GELU of a product plus its bias, FlowDetector's conditioner layer, forward and
forward+backward.

The shape of a training step's conditioner layers: [256, 128] (batch 256, hidden 128, the flow's defaults), and
[4096, 128] (a larger batch). The eager provider is what the modules run, ``F.gelu(z + b)`` (the op's eager twin;
in the modules the bias add is ``addmm``'s broadcast copy); ``compile`` is ``torch.compile`` of it; ``cpu``/``cuda``
the op. ``fwd+bwd`` runs the forward, then the backward of ``(out · g).sum()`` into z.grad and b.grad. float32.
``fwd+bwd-kept`` times the same gradients the way the conditioner's node computes them: its cpu and cuda providers
run ``bias_gelu_keep`` (GELU' kept from the forward) and ``bias_gelu_backward_kept`` (the backward a multiply and the
column sums), no autograd.

Bytes moved, each tensor once: forward reads z [M, N] and b, writes [M, N]; the backward also reads g and z again
and writes z.grad and b.grad.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.registry import (Case, Provider, Size, Unavailable, allclose_check, fused_op, register,
                            standard_providers)

SIZES = [Size("M256-N128", {"m": 256, "n": 128}), Size("M4096-N128", {"m": 4096, "n": 128})]
CHECK = allclose_check(rtol=1e-4, atol=1e-4)  # the bias gradient sums M rows


def setup(size: Size, device: torch.device, grad: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    z = (2.0 * torch.randn(size["m"], size["n"], generator=g)).to(device).requires_grad_(grad)
    b = torch.randn(size["n"], generator=g).to(device).requires_grad_(grad)
    out = {"z": z, "b": b}
    if grad:
        out["g"] = torch.randn(size["m"], size["n"], generator=g).to(device)
    return out


def gelu_eager(z, b, g=None):
    return F.gelu(z + b)


def gelu_fused(backend: str):
    op = fused_op("bias_gelu")
    return lambda z, b, g=None: op(z, b, backend=backend)


def forward_backward(f):
    """The layer's share of a training step: forward, then backward of (out · g).sum() into z.grad and b.grad."""

    def step(z: torch.Tensor, b: torch.Tensor, g: torch.Tensor):
        z.grad = b.grad = None
        (f(z, b) * g).sum().backward()
        return z.grad, b.grad

    return step


def kept_pair(z: torch.Tensor, b: torch.Tensor, g: torch.Tensor):
    """The conditioner node's GELU, forward and backward: (∂z, ∂b) from the derivative the forward kept."""
    ops = torch.ops.genad_fast
    _, derivative = ops.bias_gelu_keep(z.detach(), b.detach())
    return ops.bias_gelu_backward_kept(g, derivative)


def build_kept(inputs: dict):
    fused_op("bias_gelu")  # Unavailable where genad_fast does not import
    if not hasattr(torch.ops.genad_fast, "bias_gelu_keep"):
        raise Unavailable("genad_fast._C is not built: no bias_gelu_keep op")
    return lambda: kept_pair(**inputs)


def kept_providers() -> dict[str, Provider]:
    """eager and compile: the composite's forward and backward (as in ``fwd+bwd``); cpu, cuda: the kept pair."""
    providers = standard_providers(gelu_eager, gelu_fused, wrap=forward_backward, backends=())
    return {**providers, **{device: Provider(device, device, build_kept) for device in ("cpu", "cuda")}}


def items(size: Size) -> float:
    return size["m"] * size["n"]


register(Case(
    "bias_gelu", "forward", SIZES, setup, standard_providers(gelu_eager, gelu_fused),
    items=items, bytes_moved=lambda s: 4.0 * 2 * items(s), check=CHECK,
    description="GELU(z + b) of a conditioner layer [M, 128], float32"))

register(Case(
    "bias_gelu", "fwd+bwd", SIZES, lambda size, device: setup(size, device, grad=True),
    standard_providers(gelu_eager, gelu_fused, wrap=forward_backward),
    items=items, bytes_moved=lambda s: 4.0 * 6 * items(s), check=CHECK,
    description="forward, then backward of (out · g).sum() into z.grad and b.grad, float32"))

register(Case(
    "bias_gelu", "fwd+bwd-kept", SIZES, lambda size, device: setup(size, device, grad=True), kept_providers(),
    items=items, bytes_moved=lambda s: 4.0 * 7 * items(s), check=CHECK,
    description="the same gradients; the fused providers by the kept-derivative pair (the conditioner's), float32"))
