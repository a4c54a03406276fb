"""Eager diffusion ops (DDPM, Ho et al., NeurIPS 2020; DDIM, Song et al., ICLR 2021): the oracle of
:mod:`genad_fast.ops.diffusion`.

Per-sample coefficient vectors a, b, c of shape [B] carry any schedule (DDPM posterior, DDIM, per-sample
timesteps); the data x0, x_t, eps are [B, ...] (sample i is x[i]). z is standard normal noise of the data's
shape: the project's Philox stream at (seed, offset) for the whole tensor (:func:`genad_fast.reference.philox.randn`,
float32 normals converted to the data's dtype), or an explicit ``noise`` tensor.

    add_noise:                x_t = a_i·x0 + b_i·z
    diffusion_step:           x_s = a_i·x_t + b_i·eps + c_i·z
    recon_error_accumulate_:  score[B, T] += weight · mean_c(mask·(x − x̂)²)    for x, x̂, mask: [B, T, C]
"""
from __future__ import annotations

import torch

from genad_fast.reference.philox import randn as philox_randn


def _noise(like: torch.Tensor, seed: int, offset: int, noise: torch.Tensor | None) -> torch.Tensor:
    if noise is not None:
        return noise
    return philox_randn(tuple(like.shape), seed, offset, dtype=like.dtype, device=like.device)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1], broadcasting over a sample's elements."""
    return v.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def add_noise(x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor, seed: int, offset: int = 0,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    z = _noise(x0, seed, offset, noise)
    return _per_sample(a, x0) * x0 + _per_sample(b, x0) * z


def diffusion_step(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   seed: int, offset: int = 0, noise: torch.Tensor | None = None) -> torch.Tensor:
    z = _noise(x_t, seed, offset, noise)
    return _per_sample(a, x_t) * x_t + _per_sample(b, x_t) * eps + _per_sample(c, x_t) * z


def recon_error_accumulate_(score: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor,
                            mask: torch.Tensor | None = None, weight: float = 1.0) -> torch.Tensor:
    err = (x - x_hat) ** 2
    if mask is not None:
        err = err * mask
    score += weight * err.mean(dim=-1)
    return score
