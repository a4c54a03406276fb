"""Diffusion sampling and scoring ops (DDPM, Ho et al. 2020; ImDiffusion, Chen et al., VLDB 2023), float32.

- ``diffusion_step``: one reverse step x_s = a_i·x_t + b_i·eps + c_i·z over a batch of B windows of W timestamps
  and C channels, per-sample coefficients, z drawn in the kernel from the Philox stream. The eager provider is what
  one writes in PyTorch: ``a[:, None, None]*x + b[:, None, None]*eps + c[:, None, None]*torch.randn_like(x)``.
- ``add_noise``: the forward process x_t = a_i·x0 + b_i·z, same shapes, eager ``a*x0 + b*torch.randn_like(x0)``.
- ``recon_error``: score[B, W] += w·mean_c(mask·(x − x̂)²) into a score buffer (imputation masks, one draw).

The fused ops draw Philox normals, eager draws torch's generator, so the noisy outputs cannot match element by
element: the check takes d = (out − eager)/c_i, which is z_fused − z_eager, and asks for mean 0 and variance 2
within 6 standard errors (any error in the deterministic part a_i·x + b_i·eps would show up there too).

Bytes moved, each tensor once (4 bytes per float32, N = B·W·C): step reads x, eps, writes out, reads a, b, c:
12N + 12B; add_noise 8N + 8B; recon_error reads x, x̂, mask and reads and writes score: 12N + 8BW.
"""
from __future__ import annotations

import math

import torch

from bench.registry import Case, Size, allclose_check, fused_op, register, standard_providers

SIZES = [Size("4096x64x25", {"b": 4096, "w": 64, "c": 25})]
SEED = 1234
WEIGHT = 0.25


def coefficients(B: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample a, b, c, fixed by B (the check recomputes c): spread like a schedule's, c_i in [0.2, 0.8]."""
    a = torch.linspace(0.95, 1.05, B)
    b = torch.linspace(-0.3, -0.05, B)
    c = torch.linspace(0.2, 0.8, B)
    return a.to(device), b.to(device), c.to(device)


def step_eager(x, eps, a, b, c):
    return a[:, None, None] * x + b[:, None, None] * eps + c[:, None, None] * torch.randn_like(x)


def add_noise_eager(x, eps, a, b, c):
    return a[:, None, None] * x + c[:, None, None] * torch.randn_like(x)


def fused_step(backend: str):
    op = fused_op("diffusion_step")
    return lambda x, eps, a, b, c: op(x, eps, a, b, c, SEED, 0, backend=backend)


def fused_add_noise(backend: str):
    op = fused_op("add_noise")
    return lambda x, eps, a, b, c: op(x, a, c, SEED, 0, backend=backend)


def setup(size: Size, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    B, W, C = size["b"], size["w"], size["c"]
    x = torch.randn(B, W, C, generator=g).to(device)
    eps = torch.randn(B, W, C, generator=g).to(device)
    a, b, c = coefficients(B, device)
    return {"x": x, "eps": eps, "a": a, "b": b, "c": c}


def check_noise(ref: torch.Tensor, out: torch.Tensor) -> str | None:
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape or out.dtype != ref.dtype:
        return f"expected a {ref.dtype} tensor of shape {tuple(ref.shape)}, got {getattr(out, 'shape', type(out))}"
    if not bool(out.isfinite().all()):
        return "non-finite values in the output"
    if out is ref:  # eager against itself: nothing more to compare
        return None
    _, _, c = coefficients(ref.shape[0], ref.device)
    d = ((out - ref) / c.view(-1, 1, 1)).double()
    n = d.numel()
    mean, var = d.mean().item(), d.var().item()
    # z_fused - z_eager ~ N(0, 2): standard errors sqrt(2/n) for the mean and sqrt(8/n) for the variance
    if not (abs(mean) < 6 * math.sqrt(2 / n) and abs(var - 2) < 6 * math.sqrt(8 / n)):
        return f"(out - eager)/c has mean {mean:.3g} and variance {var:.5g}, expected 0 and 2 over {n} values"
    return None


# ---- recon_error --------------------------------------------------------------------------------------------

def recon_eager(score, x, x_hat, mask):
    score += WEIGHT * ((x - x_hat) ** 2 * mask).mean(-1)
    return score


def fused_recon(backend: str):
    op = fused_op("recon_error_accumulate_")
    return lambda score, x, x_hat, mask: op(score, x, x_hat, mask, WEIGHT, backend=backend)


def private_score(f):
    """Each provider accumulates into its own score buffer (zeros at its first call); the first, untimed call
    returns a snapshot of it for the check, the timed calls the buffer itself."""
    own: dict[str, torch.Tensor] = {}

    def call(score, **inputs):
        first = not own
        if first:
            own["score"] = torch.zeros_like(score)
        out = f(own["score"], **inputs)
        return out.clone() if first else out

    return call


def recon_setup(size: Size, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(1)
    B, W, C = size["b"], size["w"], size["c"]
    return {"score": torch.zeros(B, W).to(device),
            "x": torch.randn(B, W, C, generator=g).to(device),
            "x_hat": torch.randn(B, W, C, generator=g).to(device),
            "mask": (torch.rand(B, W, C, generator=g) < 0.5).float().to(device)}


def items(size: Size) -> float:
    return size["b"] * size["w"] * size["c"]


register(Case(
    "diffusion_step", "forward", SIZES, setup, standard_providers(step_eager, fused_step),
    items=items, bytes_moved=lambda s: 4.0 * (3 * items(s) + 3 * s["b"]), check=check_noise,
    description="x_s = a·x_t + b·eps + c·z over B windows [W, C], per-sample coefficients, in-kernel noise"))

register(Case(
    "add_noise", "forward", SIZES, setup, standard_providers(add_noise_eager, fused_add_noise),
    items=items, bytes_moved=lambda s: 4.0 * (2 * items(s) + 2 * s["b"]), check=check_noise,
    description="x_t = a·x0 + b·z over B windows [W, C], per-sample coefficients, in-kernel noise"))

register(Case(
    "recon_error", "accumulate", SIZES, recon_setup,
    standard_providers(recon_eager, fused_recon, wrap=private_score),
    items=items, bytes_moved=lambda s: 4.0 * (3 * items(s) + 2 * s["b"] * s["w"]),
    check=allclose_check(rtol=1e-5, atol=1e-6),
    description="score[B, W] += 0.25·mean_c(mask·(x − x̂)²), a random half of the points masked"))
