"""``permute_affine``: a wide flow's permutation step (ActNorm, a fixed permutation, the coupling's split) from the
previous coupling's two halves, forward and forward+backward.

The shape of FlowDetector's training step on a series of 8 channels at window 193: [256, 1544] (batch 256), the
input given as the previous coupling's halves [256, 772] each. The eager provider is what the modules ran before
the op: the halves concatenated, ActNorm's affine map, the permutation's ``index_select`` and the split (the op's
eager twin); ``compile`` is ``torch.compile`` of it; ``cpu``/``cuda`` the op. ``fwd+bwd`` runs the forward, then the
backward of ``(v_a · g_a).sum() + (v_b · g_b).sum()`` into the halves', the bias's and the log-scale's gradients.
float32. The case runs with the inputs warm in cache; inside a training step they are not (docs/training_speed.md).

Bytes moved, each tensor once: forward reads the halves [N, D] and writes [N, D]; the backward reads the two
gradients and the outputs and writes the halves' gradients.
"""
from __future__ import annotations

import torch

from bench.registry import Case, Size, allclose_check, fused_op, register, standard_providers
from genad_fast.reference.permute_affine import permute_affine as permute_eager_twin

SIZES = [Size("N256-D1544", {"n": 256, "d": 1544}), Size("N2048-D1544", {"n": 2048, "d": 1544})]
CHECK = allclose_check(rtol=1e-4, atol=1e-4)  # the column sums add N rows


def setup(size: Size, device: torch.device, grad: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    n, d = size["n"], size["d"]
    half = d // 2
    out = {"x_a": torch.randn(n, half, generator=g).to(device).requires_grad_(grad),
           "x_b": torch.randn(n, d - half, generator=g).to(device).requires_grad_(grad),
           "bias": torch.randn(d, generator=g).to(device).requires_grad_(grad),
           "log_scale": (0.3 * torch.randn(d, generator=g)).to(device).requires_grad_(grad),
           "perm": torch.randperm(d, generator=g).to(device)}
    if grad:
        out["g_a"] = torch.randn(n, half, generator=g).to(device)
        out["g_b"] = torch.randn(n, d - half, generator=g).to(device)
    return out


def permute_eager(x_a, x_b, bias, log_scale, perm, g_a=None, g_b=None):
    return permute_eager_twin(x_a, x_b, bias, log_scale, perm, x_a.shape[1])


def permute_fused(backend: str):
    op = fused_op("permute_affine")
    return lambda x_a, x_b, bias, log_scale, perm, g_a=None, g_b=None: op(
        x_a, x_b, bias, log_scale, perm, x_a.shape[1], backend=backend)


def forward_backward(f):
    """The step's share of a training step: forward, then the backward into every input's gradient."""

    def step(x_a, x_b, bias, log_scale, perm, g_a, g_b):
        for t in (x_a, x_b, bias, log_scale):
            t.grad = None
        v_a, v_b = f(x_a, x_b, bias, log_scale, perm)
        ((v_a * g_a).sum() + (v_b * g_b).sum()).backward()
        return x_a.grad, x_b.grad, bias.grad, log_scale.grad

    return step


def items(size: Size) -> float:
    return size["n"] * size["d"]


register(Case(
    "permute_affine", "forward", SIZES, setup, standard_providers(permute_eager, permute_fused),
    items=items, bytes_moved=lambda s: 4.0 * 2 * items(s), check=CHECK,
    description="ActNorm, permutation and split of a flow step [N, 1544] from two halves, float32"))

register(Case(
    "permute_affine", "fwd+bwd", SIZES, lambda size, device: setup(size, device, grad=True),
    standard_providers(permute_eager, permute_fused, wrap=forward_backward),
    items=items, bytes_moved=lambda s: 4.0 * 6 * items(s), check=CHECK,
    description="forward, then backward into the halves', bias's and log-scale's gradients, float32"))
