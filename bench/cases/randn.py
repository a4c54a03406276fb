"""Standard normal noise, float32: ``torch.randn(n)`` against the fused counter-based Philox stream.

The fused op draws Philox4x32-10 numbers turned into normals by Box–Muller (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011), a different generator from torch's,
so outputs are not compared element by element; every provider's sample is checked to have
mean 0 and variance 1 within 6 standard errors instead. Bytes moved: the n floats written.
"""
from __future__ import annotations

import math

import torch

from bench.registry import Case, Size, fused_op, register, standard_providers

SIZES = [Size("2^20", {"n": 1 << 20}), Size("2^24", {"n": 1 << 24})]
SEED = 1234


def randn_eager(n: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, device=device)


def fused_randn(backend: str):
    op = fused_op("randn")
    return lambda n, device: op((n,), SEED, 0, torch.float32, device, backend=backend)


def setup(size: Size, device: torch.device) -> dict:
    return {"n": size["n"], "device": device}


def check_moments(ref: torch.Tensor, out: torch.Tensor) -> str | None:
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape or out.dtype != torch.float32:
        return f"expected a float32 tensor of shape {tuple(ref.shape)}, got {getattr(out, 'shape', type(out))}"
    n = out.numel()
    x = out.double()
    mean, var = x.mean().item(), x.var().item()
    # standard errors of the sample mean (1/sqrt n) and variance (sqrt(2/n)) of N(0, 1)
    if not (abs(mean) < 6 / math.sqrt(n) and abs(var - 1) < 6 * math.sqrt(2 / n)):
        return f"sample moments off: mean {mean:.3g}, variance {var:.5g} over {n} draws"
    return None


register(Case(
    "randn", "forward", SIZES, setup, standard_providers(randn_eager, fused_randn),
    items=lambda s: s["n"], bytes_moved=lambda s: 4.0 * s["n"], check=check_moments,
    description="n standard normal float32 numbers"))
