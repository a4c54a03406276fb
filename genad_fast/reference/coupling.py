"""Eager affine coupling (RealNVP, Dinh et al., ICLR 2017; Glow, Kingma & Dhariwal, NeurIPS 2018): the oracle.

h = (s_raw | t) of width 2D; s = clamp·tanh(s_raw/clamp) when clamp > 0, else s_raw.
    forward:  y = x·exp(s) + t,      logdet = Σ_j s_j
    inverse:  x = (y − t)·exp(−s),   logdet = −Σ_j s_j
Plain differentiable torch ops: autograd of these functions is the reference for the fused backward.
"""
from __future__ import annotations

import torch


def log_scale(h: torch.Tensor, d: int, clamp: float) -> torch.Tensor:
    s_raw = h[..., :d]
    return clamp * torch.tanh(s_raw / clamp) if clamp > 0 else s_raw


def coupling_forward(x: torch.Tensor, h: torch.Tensor, clamp: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    d = x.shape[-1]
    s = log_scale(h, d, clamp)
    return x * torch.exp(s) + h[..., d:], s.sum(-1)


def coupling_inverse(y: torch.Tensor, h: torch.Tensor, clamp: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    d = y.shape[-1]
    s = log_scale(h, d, clamp)
    return (y - h[..., d:]) * torch.exp(-s), -s.sum(-1)
