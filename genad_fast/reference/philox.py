"""Philox4x32-10 standard normals in eager PyTorch: the oracle of ``genad_fast.ops.randn``.

Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) maps a
128-bit counter ``(c0, c1, c2, c3)`` and a 64-bit key ``(k0, k1)`` to four uniform 32-bit words by ten rounds of

    c0, c1, c2, c3 <- hi(B*c2) ^ c1 ^ k0,  lo(B*c2),  hi(A*c0) ^ c3 ^ k1,  lo(A*c0)
    k0, k1 <- k0 + 0x9E3779B9, k1 + 0xBB67AE85

with A = 0xD2511F53, B = 0xCD9E8D57. As in Triton's ``tl.randn4x(seed, ctr)`` the key is the seed
(k0 = low 32 bits, k1 = high 32 bits) and the counter is (low32(ctr), high32(ctr), 0, 0); each word x becomes
u = float32(x') * 4.6566127342e-10 with x' = int32(x), folded by bitwise not when negative, and each pair
(u1, u2) becomes two normals by Box-Muller (Box & Muller, 1958), in float32:
u1 <- max(u1, 1e-7), r = sqrt(-2 log u1), th = 2 pi u2, (r cos th, r sin th).

A tensor of n elements uses q = ceil(n / 4) counters: element i is normal number i // q of counter offset + i % q.

Integers live in int64 tensors holding uint32 values; a 32x32-bit product is split into 16-bit halves so no
intermediate exceeds 2^49 and nothing overflows.
"""
from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
ROUND_A = 0xD2511F53
ROUND_B = 0xCD9E8D57
KEY_A = 0x9E3779B9
KEY_B = 0xBB67AE85
N_ROUNDS = 10
UNIFORM_SCALE = 4.6566127342e-10
TWO_PI = 6.283185307179586
MIN_UNIFORM = 1.0e-7


def counters(n: int) -> int:
    """q = ceil(n / 4): the counters a tensor of n elements uses (how far a caller advances ``offset``)."""
    return (n + 3) // 4


def _mulhilo(a: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of the 64-bit product a * x, for a uint32 constant a and uint32 values x (int64)."""
    x_hi, x_lo = x >> 16, x & 0xFFFF
    p_hi = a * x_hi  # < 2^48
    p_lo = a * x_lo  # < 2^48
    hi = (p_hi + (p_lo >> 16)) >> 16  # floor(a * x / 2^32)
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & MASK32
    return hi, lo


def philox4x32_10(c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor,
                  k0: int, k1: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ten Philox4x32 rounds; counters are int64 tensors of uint32 values, the key two uint32 ints."""
    for _ in range(N_ROUNDS):
        hi_b, lo_b = _mulhilo(ROUND_B, c2)
        hi_a, lo_a = _mulhilo(ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + KEY_A) & MASK32
        k1 = (k1 + KEY_B) & MASK32
    return c0, c1, c2, c3


def uint_to_uniform(x: torch.Tensor) -> torch.Tensor:
    """Triton's uint_to_uniform_float for uint32 words in int64: a float32 in [0, 1)."""
    folded = torch.where(x >= 2**31, x ^ MASK32, x)  # int32 view negative -> bitwise not
    return folded.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32, device=x.device)


def box_muller(u1: torch.Tensor, u2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton's pair_uniform_to_normal in float32."""
    f32 = dict(dtype=torch.float32, device=u1.device)
    u1 = torch.maximum(u1, torch.tensor(MIN_UNIFORM, **f32))
    th = torch.tensor(TWO_PI, **f32) * u2
    r = torch.sqrt(torch.tensor(-2.0, **f32) * torch.log(u1))
    return r * torch.cos(th), r * torch.sin(th)


def randn4x(seed: int, ctr_lo: torch.Tensor, ctr_hi: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tl.randn4x(seed, ctr)`` for counters given as their low and high 32 bits (int64 tensors)."""
    zero = torch.zeros_like(ctr_lo)
    w = philox4x32_10(ctr_lo, ctr_hi, zero, zero, seed & MASK32, (seed >> 32) & MASK32)
    n0, n1 = box_muller(uint_to_uniform(w[0]), uint_to_uniform(w[1]))
    n2, n3 = box_muller(uint_to_uniform(w[2]), uint_to_uniform(w[3]))
    return n0, n1, n2, n3


def randn(shape, seed: int, offset: int = 0, dtype: torch.dtype = torch.float32,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normals of ``shape`` from the Philox stream at (seed, offset), laid out as described above.

    float64 output holds the float32 normals converted, so it agrees with every other backend.
    """
    shape = torch.Size(shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,))
    n = shape.numel()
    q = counters(n)
    j = torch.arange(q, dtype=torch.int64, device=device)
    s = (offset & MASK32) + j  # counter offset + j as low and high words, without int64 overflow
    ctr_lo = s & MASK32
    ctr_hi = ((offset >> 32) + (s >> 32)) & MASK32
    flat = torch.cat(randn4x(seed, ctr_lo, ctr_hi))[:n]  # quarter k = normal k of every counter
    return flat.to(dtype).reshape(shape)
