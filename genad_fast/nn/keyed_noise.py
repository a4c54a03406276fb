"""Noise keyed by a row's content: the random draws a score needs, as a function of the row and a seed.

A stochastic score (VAE latent samples, AnoGAN's search starts) drawn from a generator that runs over
the call depends on where the row sits in the call and on how many rows came before it: the same row
scores differently alone, in a batch, or in a stream. Keying the draws on the row itself removes that:

    key(x)        = splitmix64( Σ_j bits(x_j) · w_j )       (wrapping int64 arithmetic; w_j fixed odd constants)
    row(x, s)     = top b bits of splitmix64( key(x) · φ + s )
    noise(x, s)   = N_s[row(x, s)]                          N_s: a [2^b, n] table of standard normals from seed s

``bits`` are the IEEE bits of the row's float32 values, φ the golden-ratio increment of splitmix64 (Steele,
Lea & Flood, OOPSLA 2014). The same row gets the same draws in any batch, on any thread, in any process; a
row's draws are exactly standard normal. Different rows pick table rows by a hash, so some share draws (any
two with probability 2^-b, b = 15 unless the draws are wider than 128): that changes nothing for either
row's score, which depends on its own draws only. The table is drawn once per (seed, n, dtype, device) and
cached, so keyed draws cost one gather per call (VAE scoring of 65,536 × 32 rows takes the same time as
with a generator's draws).
"""
from __future__ import annotations

import functools

import torch

__all__ = ["keyed_integers", "keyed_normals", "row_keys"]

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
    bits = table_bits(n)
    table = _table(int(seed), int(n), dtype, keys.device)
    rows = _shr(_splitmix(keys * _signed(_GOLDEN) + _signed(seed)), 64 - bits)
    return table[rows]


def keyed_integers(keys: torch.Tensor, seed: int, high: int) -> torch.Tensor:
    """``[B]`` integers in [0, ``high``), entry i a function of ``keys[i]`` and ``seed`` only: splitmix64 of the key
    (as for a table row), its top 63 bits modulo ``high`` (a bias of at most high / 2^63)."""
    return _shr(_splitmix(keys * _signed(_GOLDEN) + _signed(seed)), 1) % int(high)


def table_bits(n: int) -> int:
    """log2 of a table's rows: 2^15, fewer for wide draws so that a table holds at most 2^22 numbers (16 MiB in
    float32; with at most four tables cached, a long-running scorer keeps at most 64 MiB), never fewer than 2^10."""
    return max(10, min(15, ((1 << 22) // max(n, 1)).bit_length() - 1))


@functools.lru_cache(maxsize=4)
def _table(seed: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed & ((1 << 63) - 1))
    return torch.randn(1 << table_bits(n), n, generator=g, dtype=dtype).to(device)
