"""Triton kernels of the Gaussian KDE log-density and the k-nearest distances (genad_fast.ops.distance).

Same definitions as csrc/include/genad/distance.h and the eager reference: squared distances by direct
differences, d² = Σ_d (q_d − r_d)² (accumulated in the input dtype; NaN/inf follow IEEE rules), and

    kde_logpdf(q)   = logsumexp_j(−d²(q, r_j) / (2h²)) − log M' − (D/2)·log(2πh²)
    knn_distance(q) = the k smallest d(q, r_j), ascending, NaN last (torch.topk's order)

with j = i left out when ``exclude_self`` (M' = M − 1, else M).

One program owns BLOCK_N queries and walks the references in tiles of BLOCK_M, one coordinate at a time
(rows are read through their stride, so column slices are used in place); nothing N×M is stored.

- KDE: an online log-sum-exp per query (running max m and sum s of exp(x − m), in float64) folds each tile in,
  the tile's exponentials taken in the data's precision; NaN terms are tracked by a flag (the result is NaN),
  −inf terms add nothing.
- kNN: a buffer of K_PAD >= k keys per query holds the best seen so far; a tile is merged by up to k rounds of
  "take the tile's smallest, replace the buffer's largest if it is smaller". Keys are the bit patterns of d²
  as integers (d² >= 0, so integer order is float order, +inf below NaN once NaN is made canonical), with a
  larger EMPTY key for excluded and padding entries; the rounds stop once no row of the block takes a key. The k
  answers are then taken out smallest first.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK_N = 32
BLOCK_M = 64


@triton.jit
def _sqrt(x):
    # IEEE square root: tl.sqrt is an approximation for float32 on the GPU (float64 is exact either way).
    # One assignment per branch, no early return: the compiler then takes only the branch of x's dtype
    # (with `return` inside the `if` it compiled both, and sqrt_rn rejects float64).
    if x.dtype == tl.float64:
        y = tl.sqrt(x)
    else:
        y = tl.sqrt_rn(x)
    return y


@triton.jit
def _sq_dist_tile(q_ptr, r_ptr, rows, cols, row_ok, col_ok, D, stride_q, stride_r, acc_dtype: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    d2 = tl.zeros((BLOCK_N, BLOCK_M), dtype=acc_dtype)
    for d in range(0, D):
        qd = tl.load(q_ptr + rows * stride_q + d, mask=row_ok, other=0.0).to(acc_dtype)
        rd = tl.load(r_ptr + cols * stride_r + d, mask=col_ok, other=0.0).to(acc_dtype)
        diff = qd[:, None] - rd[None, :]
        d2 += diff * diff
    return d2


@triton.jit
def _kde_kernel(q_ptr, r_ptr, out_ptr,                 # [N, D], [M, D] (row strides), [N]
                N, M, D, stride_q, stride_r,
                neg_inv_2h2: tl.float64, log_norm: tl.float64,  # (unquoted: with `from __future__ import
                # annotations` a quoted type reaches Triton as '"tl.float64"', which it ignores: fp32 scalars)
                EXCLUDE_SELF: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    dtype = q_ptr.dtype.element_ty
    acc_dtype = tl.float64 if dtype == tl.float64 else tl.float32
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    neg_inf = float("-inf")
    m = tl.full((BLOCK_N,), neg_inf, tl.float64)
    s = tl.zeros((BLOCK_N,), dtype=tl.float64)
    has_nan = tl.zeros((BLOCK_N,), dtype=tl.int32)
    for m0 in range(0, M, BLOCK_M):
        cols = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        col_ok = cols < M
        d2 = _sq_dist_tile(q_ptr, r_ptr, rows, cols, row_ok, col_ok, D, stride_q, stride_r, acc_dtype,
                           BLOCK_N, BLOCK_M)
        x = d2.to(tl.float64) * neg_inv_2h2
        valid = row_ok[:, None] & col_ok[None, :]
        if EXCLUDE_SELF:
            valid = valid & (rows[:, None] != cols[None, :])
        has_nan = tl.maximum(has_nan, tl.max((valid & (x != x)).to(tl.int32), axis=1))
        x = tl.where(valid & (x == x), x, neg_inf)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        # While every term so far is −inf (m_new = −inf) the sum stays 0: subtract 0 instead of −inf.
        shift = tl.where(m_new > neg_inf, m_new, 0.0)
        # The tile's terms exp(x − shift) in the data's precision (float32: the GPU's special-function unit, where
        # a float64 exp is a software routine of dozens of FP64 instructions, once a pair). Each term is in [0, 1]
        # and x − shift rounded to float32 moves a term with |x − shift| < 16 by under 1e-6 of itself; the terms
        # beyond weigh under e^-16 of the largest. The tile's sum is a tree of at most BLOCK_M terms, and the
        # running sum stays float64, as in the CUDA kernel (genad/distance.h, OnlineLse<double, float>).
        terms = tl.exp((x - shift[:, None]).to(acc_dtype))
        s = s * tl.exp(m - shift) + tl.sum(terms, axis=1).to(tl.float64)
        m = m_new
    lse = tl.where(s > 0, m + tl.log(tl.where(s > 0, s, 1.0)), neg_inf)
    lse = tl.where(has_nan > 0, float("nan"), lse)
    tl.store(out_ptr + rows, (lse + log_norm).to(dtype), mask=row_ok)


@triton.jit
def _knn_kernel(q_ptr, r_ptr, out_ptr,                 # [N, D], [M, D] (row strides), [N, k] contiguous
                N, M, D, k, stride_q, stride_r,
                EXCLUDE_SELF: tl.constexpr, K_PAD: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    dtype = q_ptr.dtype.element_ty
    if dtype == tl.float64:
        acc_dtype = tl.float64
        key_dtype = tl.int64
        NAN_KEY = 0x7FF8000000000000    # canonical +NaN, above +inf (0x7FF0...)
        EMPTY = 0x7FFFFFFFFFFFFFFF      # above every key
    else:
        acc_dtype = tl.float32
        key_dtype = tl.int32
        NAN_KEY = 0x7FC00000
        EMPTY = 0x7FFFFFFF
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    slots = tl.arange(0, K_PAD)
    best = tl.full((BLOCK_N, K_PAD), EMPTY, key_dtype)
    for m0 in range(0, M, BLOCK_M):
        cols = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        col_ok = cols < M
        d2 = _sq_dist_tile(q_ptr, r_ptr, rows, cols, row_ok, col_ok, D, stride_q, stride_r, acc_dtype,
                           BLOCK_N, BLOCK_M)
        key = tl.where(d2 != d2, NAN_KEY, d2.to(key_dtype, bitcast=True))
        valid = row_ok[:, None] & col_ok[None, :]
        if EXCLUDE_SELF:
            valid = valid & (rows[:, None] != cols[None, :])
        key = tl.where(valid, key, EMPTY)
        lanes = tl.arange(0, BLOCK_M)
        # Up to k rounds, each moving every row's smallest tile key into its buffer when below the buffer's
        # largest. A row's candidates only grow and its largest only shrinks, so once no row of the block takes
        # one no later round would: the loop stops there. Once the buffers hold near neighbours most tiles have
        # nothing to give, and the test costs one min and one max a row instead of k rounds of four reductions.
        cand = tl.min(key, axis=1)
        worst = tl.max(best, axis=1)
        rounds = 0
        while (tl.max((cand < worst).to(tl.int32), axis=0) > 0) & (rounds < k):
            cand_at = tl.argmin(key, axis=1)
            worst_at = tl.argmax(best, axis=1)
            take = cand < worst
            best = tl.where((slots[None, :] == worst_at[:, None]) & take[:, None], cand[:, None], best)
            key = tl.where(lanes[None, :] == cand_at[:, None], EMPTY, key)
            cand = tl.min(key, axis=1)
            worst = tl.max(best, axis=1)
            rounds += 1
    # The buffer holds the k smallest keys (and K_PAD − k others); out come the k smallest, ascending.
    for t in range(0, k):
        low = tl.min(best, axis=1)
        low_at = tl.argmin(best, axis=1)
        d2 = low.to(acc_dtype, bitcast=True)
        tl.store(out_ptr + rows * k + t, _sqrt(d2).to(dtype), mask=row_ok)
        best = tl.where(slots[None, :] == low_at[:, None], EMPTY, best)


def _check_rows(name: str, t: torch.Tensor) -> None:
    if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1):
        raise ValueError(f"{name} must be 2-D, got shape {list(t.shape)}" if t.dim() != 2 else
                         f"{name} must have unit stride on its last dimension, got strides {list(t.stride())}")


def kde_logpdf(queries: torch.Tensor, refs: torch.Tensor, bandwidth: float, exclude_self: bool) -> torch.Tensor:
    """log p [N] of rows queries [N, D] under the Gaussian KDE of refs [M, D] (inputs checked by the op layer)."""
    _check_rows("queries", queries)
    _check_rows("refs", refs)
    N, D = queries.shape
    M = refs.shape[0]
    out = torch.empty((N,), dtype=queries.dtype, device=queries.device)
    if N == 0:
        return out
    # log(2πh²) as log(2π) + 2·log h: h² overflows for h > 1.3e154
    log_norm = (-math.log(M - 1 if exclude_self else M)
                - 0.5 * D * (math.log(2.0 * math.pi) + 2.0 * math.log(bandwidth)))
    grid = (triton.cdiv(N, BLOCK_N),)
    _kde_kernel[grid](queries, refs, out, N, M, D, queries.stride(0), refs.stride(0),
                      -0.5 / (bandwidth * bandwidth), log_norm,
                      EXCLUDE_SELF=bool(exclude_self), BLOCK_N=BLOCK_N, BLOCK_M=BLOCK_M)
    return out


def knn_distance(queries: torch.Tensor, refs: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    """Distances [N, k] of rows queries [N, D] to their k nearest refs [M, D], ascending (checked by the op layer)."""
    _check_rows("queries", queries)
    _check_rows("refs", refs)
    N, D = queries.shape
    M = refs.shape[0]
    out = torch.empty((N, k), dtype=queries.dtype, device=queries.device)
    if N == 0:
        return out
    grid = (triton.cdiv(N, BLOCK_N),)
    _knn_kernel[grid](queries, refs, out, N, M, D, k, queries.stride(0), refs.stride(0),
                      EXCLUDE_SELF=bool(exclude_self), K_PAD=triton.next_power_of_2(k),
                      BLOCK_N=BLOCK_N, BLOCK_M=BLOCK_M)
    return out
