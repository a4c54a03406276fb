"""Eager diffusion ops (DDPM, Ho et al., NeurIPS 2020; DDIM, Song et al., ICLR 2021): the oracle.

Per-sample coefficient vectors a, b, c of shape [B] carry any schedule (DDPM posterior, DDIM, per-sample
timesteps); data are [B, M] rows. z is standard normal noise: the project's Philox stream at (seed, offset)
for the whole [B, M] tensor (genad_fast.reference.philox.randn), or an explicit tensor.

    add_noise:       x_t  = a_i·x0 + b_i·z
    diffusion_step:  x_s  = a_i·x_t + b_i·eps + c_i·z
    recon_error_accumulate_:  score[B, T] += weight · mean_c(mask·(x − x̂)²)   for x, x̂, mask: [B, T, C]
"""
from __future__ import annotations

import torch

from genad_fast.reference.philox import randn as philox_randn


def _noise(like: torch.Tensor, seed: int, offset: int, noise: torch.Tensor | None) -> torch.Tensor:
    if noise is not None:
        return noise
    return philox_randn(tuple(like.shape), seed, offset, dtype=like.dtype, device=like.device)


def add_noise(x0, a, b, seed, offset, noise=None):
    z = _noise(x0, seed, offset, noise)
    return a[:, None] * x0 + b[:, None] * z


def diffusion_step(x_t, eps, a, b, c, seed, offset, noise=None):
    z = _noise(x_t, seed, offset, noise)
    return a[:, None] * x_t + b[:, None] * eps + c[:, None] * z


def recon_error_accumulate_(score, x, x_hat, mask=None, weight=1.0):
    err = (x - x_hat) ** 2
    if mask is not None:
        err = err * mask
    score += weight * err.mean(dim=-1)
    return score
