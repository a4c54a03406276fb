"""Noise keyed by a row's content: the random draws a score needs, as a function of the row and a seed.

A stochastic score (VAE latent samples, AnoGAN's search starts) drawn from a generator that runs over
the call depends on where the row sits in the call and on how many rows came before it: the same row
scores differently alone, in a batch, or in a stream. Keying the draws on the row itself removes that:

    key(x)       = splitmix64( Σ_j bits(x_j) · w_j )        (wrapping int64 arithmetic; w_j fixed odd constants)
    u_k(x, s)    = splitmix64( key(x) · φ + s + k · γ ) / 2^64                    k = 0, 1, 2, ...
    noise_k(x,s) = sqrt(-2 log(1 - u_2k)) · cos(2π u_2k+1)                        (Box–Muller)

``bits`` are the IEEE bits of the row's float32 values, φ and γ the golden-ratio increments of splitmix64
(Steele, Lea & Flood, OOPSLA 2014), ``s`` the detector's seed for that use. Different rows get
independent-looking standard normals; the same row gets the same ones in any batch, on any thread, in any
process. Rows that are bitwise equal share their noise (they are the same input).
"""
from __future__ import annotations

import math

import torch

__all__ = ["row_keys", "keyed_normals"]

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_ODD_WEIGHT_SEED = 0x5EED_0F_C011


def _signed(c: int) -> int:
    """A 64-bit constant as the int64 torch stores (two's complement)."""
    c &= (1 << 64) - 1
    return c - (1 << 64) if c >= 1 << 63 else c


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _splitmix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _signed(_MIX1)
    z = (z ^ _shr(z, 27)) * _signed(_MIX2)
    return z ^ _shr(z, 31)


def _column_weights(n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(_ODD_WEIGHT_SEED)
    w = torch.randint(-(1 << 62), 1 << 62, (n,), generator=g, dtype=torch.int64)
    return (w * 2 + 1).to(device)  # odd: every column's bits change the sum


def row_keys(x: torch.Tensor) -> torch.Tensor:
    """An int64 key per row of ``x`` (``[B, ...]``, flattened per row), from the bits of its float32 values."""
    rows = x.detach().reshape(x.shape[0], -1).to(torch.float32).contiguous()
    bits = rows.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return _splitmix((bits * _column_weights(bits.shape[1], bits.device)).sum(dim=1))


def keyed_normals(keys: torch.Tensor, seed: int, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[B, n]`` standard normals, row i a function of ``keys[i]`` and ``seed`` only (see the module docstring)."""
    k = torch.arange(2 * n, device=keys.device, dtype=torch.int64) * _signed(_GOLDEN)
    z = _splitmix(keys.unsqueeze(1) * _signed(_GOLDEN) + _signed(seed) + k)
    u = _shr(z, 11).to(torch.float64) * 2.0 ** -53                       # [B, 2n] in [0, 1)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, 0::2]))                   # 1 - u in (0, 1]: finite
    return (radius * torch.cos(2.0 * math.pi * u[:, 1::2])).to(dtype)
