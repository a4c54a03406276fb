"""Triton kernels of the diffusion ops (same math as csrc/include/genad/diffusion.h), on ``tl.randn4x``.

``combine``: out = a_i·x + b_i·eps + c_i·z (diffusion_step) or a_i·x + b_i·z (add_noise, no eps) over [B, M] rows
with any row stride. In-kernel noise follows the stream layout of DESIGN.md ("Noise"): for n = B·M elements and
q = ceil(n / 4) counters, program p owns counters j in [p·BLOCK, (p+1)·BLOCK) and updates elements j, q + j,
2q + j, 3q + j with the four normals of ``tl.randn4x(seed, offset + j)``, so z equals
``genad_fast.ops.randn((B, M), seed, offset)`` element by element and every access is a contiguous run.

``recon_error_accumulate_``: score[b, t] += weight·mean_c(mask·(x − x̂)²) for [B, T, C] inputs of any strides;
a program owns BLOCK_R timestamps (no two programs write one score) and sums the channels in chunks of BLOCK_C.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .philox import NO_FP_FUSION

BLOCK = 1024
BLOCK_R = 64
BLOCK_C = 32


#: Flat indices stay below this, so that _quotient's float64 estimate is exact or one below the quotient.
MAX_ELEMENTS = 2**51


@triton.jit
def _quotient(i, d, inv_d):
    """i // d for int64 i in [0, 2^51) and d >= 1, with inv_d = 1.0 / d in float64.

    An int64 division is a software routine of dozens of instructions on a GPU, and the combine kernels need one
    an element (its row, for the row's coefficients): it made them ~2x slower than the CUDA ones on an H200
    (docs/benchmark_gpu.md). Here q = trunc(i·inv_d) in float64 instead. Its relative error is below 2^-52, so
    for i < 2^52 it is never above the quotient (a quotient just below an integer k is at least 1/d below it,
    more than the error i/d·2^-52), and it is one below where i·inv_d rounds down across an integer
    (49·fl(1/49) = 0.9999999999999999): one step up, decided by the integer product, makes it exact."""
    q = (i.to(tl.float64) * inv_d).to(tl.int64)
    return tl.where((q + 1) * d <= i, q + 1, q)


@triton.jit
def _combine_at(i, z, live, x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr, sx, se, sa, sb, sc, M, inv_m,
                HAS_EPS: tl.constexpr):
    """out[i] for flat indices i (int64) with noise z, where ``live``; inv_m = 1.0 / M in float64."""
    r = _quotient(i, M, inv_m)
    col = i - r * M
    x = tl.load(x_ptr + r * sx + col, mask=live)
    a = tl.load(a_ptr + r * sa, mask=live)
    c = tl.load(c_ptr + r * sc, mask=live)
    z = z.to(x.dtype)
    if HAS_EPS:
        e = tl.load(e_ptr + r * se + col, mask=live)
        b = tl.load(b_ptr + r * sb, mask=live)
        y = a * x + b * e + c * z
    else:
        y = a * x + c * z
    tl.store(out_ptr + i, y, mask=live)


# No value specialisation of the integers: Triton would turn a 1 into a compile-time constant (and recompile per
# divisibility), while the kernel treats them as int64.
@triton.jit(do_not_specialize=["sx", "se", "sa", "sb", "sc", "n", "q", "M", "seed", "offset"])
def _combine_philox_kernel(x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr,  # x, eps, out: [B, M]; a, b, c: [B]
                           sx, se, sa, sb, sc, n, q, M, seed, offset,
                           HAS_EPS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    j = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    n = n.to(tl.int64)
    q = q.to(tl.int64)
    M = M.to(tl.int64)
    inv_m = 1.0 / M.to(tl.float64)
    # int64 counters: randint4x then takes the high 32 bits as the second counter word.
    z0, z1, z2, z3 = tl.randn4x(seed, offset.to(tl.int64) + j)
    live = j < q
    _combine_at(j, z0, live, x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr, sx, se, sa, sb, sc, M, inv_m, HAS_EPS)
    _combine_at(q + j, z1, live & (q + j < n), x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr, sx, se, sa, sb, sc, M,
                inv_m, HAS_EPS)
    _combine_at(2 * q + j, z2, live & (2 * q + j < n), x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr, sx, se, sa, sb,
                sc, M, inv_m, HAS_EPS)
    _combine_at(3 * q + j, z3, live & (3 * q + j < n), x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr, sx, se, sa, sb,
                sc, M, inv_m, HAS_EPS)


@triton.jit(do_not_specialize=["sx", "se", "sa", "sb", "sc", "sn", "n", "M"])
def _combine_noise_kernel(x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, noise_ptr, out_ptr,  # noise: [B, M]
                          sx, se, sa, sb, sc, sn, n, M, HAS_EPS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    M = M.to(tl.int64)
    inv_m = 1.0 / M.to(tl.float64)
    live = i < n.to(tl.int64)
    r = _quotient(i, M, inv_m)
    z = tl.load(noise_ptr + r * sn + (i - r * M), mask=live)
    _combine_at(i, z, live, x_ptr, e_ptr, a_ptr, b_ptr, c_ptr, out_ptr, sx, se, sa, sb, sc, M, inv_m, HAS_EPS)


def _check_rows(name: str, t: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if t.dtype not in (torch.float32, torch.float64) or t.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {list(t.shape)}" if t.dim() != 2 else
                         f"{name} must be float32 or float64, got {str(t.dtype).removeprefix('torch.')}")
    if t.shape[1] > 1 and t.stride(1) != 1:
        raise ValueError(f"{name} must have unit stride on its last dimension, got strides {list(t.stride())}")
    if like is not None and (t.shape != like.shape or t.dtype != like.dtype or t.device != like.device):
        raise ValueError(f"{name} must be on the data's device {like.device}, got {t.device}" if t.device != like.device
                         else f"{name} must have the data's shape {list(like.shape)}, got {list(t.shape)}"
                         if t.shape != like.shape else f"{name} must have the data's dtype "
                         f"{str(like.dtype).removeprefix('torch.')}, got {str(t.dtype).removeprefix('torch.')}")


def _check_coefficient(name: str, v: torch.Tensor, like: torch.Tensor) -> None:
    if v.dim() != 1 or v.shape[0] != like.shape[0] or v.dtype != like.dtype or v.device != like.device:
        raise ValueError(f"{name} must be on the data's device {like.device}, got {v.device}" if v.device != like.device
                         else f"{name} must be a vector of one coefficient per sample, shape [{like.shape[0]}], got "
                         f"shape {list(v.shape)}" if v.dim() != 1 or v.shape[0] != like.shape[0] else
                         f"{name} must have the data's dtype {str(like.dtype).removeprefix('torch.')}, got "
                         f"{str(v.dtype).removeprefix('torch.')}")


def combine(x: torch.Tensor, eps: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor | None, c: torch.Tensor,
            seed: int, offset: int, noise: torch.Tensor | None) -> torch.Tensor:
    """a·x + b·eps + c·z (or a·x + c·z without eps) for [B, M] rows; a new contiguous [B, M] tensor."""
    _check_rows("data", x)
    for name, t in (("eps", eps), ("noise", noise)):
        if t is not None:
            _check_rows(name, t, like=x)
    for name, v in (("a", a), ("b", b), ("c", c)):
        if v is not None:
            _check_coefficient(name, v, x)
    if seed < 0 or offset < 0:
        raise ValueError(f"seed must be in [0, 2^63), got {seed}" if seed < 0 else
                         f"offset must be in [0, 2^63), got {offset}")
    B, M = x.shape
    n = B * M
    if n >= MAX_ELEMENTS:
        raise ValueError(f"data must have fewer than 2^51 elements, got {n}")
    out = torch.empty((B, M), dtype=x.dtype, device=x.device)
    if n == 0:
        return out
    has_eps = eps is not None
    e, bv = (eps, b) if has_eps else (x, a)  # unused pointers when there is no eps
    strides = (x.stride(0), e.stride(0), a.stride(0), bv.stride(0), c.stride(0))
    if noise is None:
        q = (n + 3) // 4
        _combine_philox_kernel[(triton.cdiv(q, BLOCK),)](x, e, a, bv, c, out, *strides, n, q, M, seed, offset,
                                                         HAS_EPS=has_eps, BLOCK=BLOCK, **NO_FP_FUSION)
    else:
        _combine_noise_kernel[(triton.cdiv(n, BLOCK),)](x, e, a, bv, c, noise, out, *strides, noise.stride(0), n, M,
                                                        HAS_EPS=has_eps, BLOCK=BLOCK, **NO_FP_FUSION)
    return out


@triton.jit(do_not_specialize=["s0", "s1", "x0", "x1", "x2", "h0", "h1", "h2", "m0", "m1", "m2", "BT", "T", "C"])
def _recon_kernel(score_ptr, x_ptr, h_ptr, m_ptr, w_ptr,  # score: [B, T]; x, x_hat, mask: [B, T, C]; w: [1]
                  s0, s1, x0, x1, x2, h0, h1, h2, m0, m1, m2, BT, T, C,
                  HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    T = T.to(tl.int64)
    C = C.to(tl.int64)
    live = r < BT.to(tl.int64)
    b = _quotient(r, T, 1.0 / T.to(tl.float64))
    t = r - b * T
    dtype = x_ptr.dtype.element_ty
    acc = tl.zeros((BLOCK_R,), dtype=dtype)
    for c0 in range(0, C, BLOCK_C):
        ch = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
        on = live[:, None] & (ch[None, :] < C)
        x = tl.load(x_ptr + b[:, None] * x0 + t[:, None] * x1 + ch[None, :] * x2, mask=on, other=0.0)
        h = tl.load(h_ptr + b[:, None] * h0 + t[:, None] * h1 + ch[None, :] * h2, mask=on, other=0.0)
        d = x - h
        err = d * d
        if HAS_MASK:
            m = tl.load(m_ptr + b[:, None] * m0 + t[:, None] * m1 + ch[None, :] * m2, mask=on, other=0.0)
            err = m * err
        acc += tl.sum(err, axis=1)
    w = tl.load(w_ptr)
    s_ptrs = score_ptr + b * s0 + t * s1
    s = tl.load(s_ptrs, mask=live)
    # The row vector may be replicated across warps: every warp reads the old score before any warp writes the
    # new one (without the barrier a late warp could add its term twice; see masked_adam_ in anogan.py).
    tl.debug_barrier()
    tl.store(s_ptrs, s + w * (acc / C.to(dtype)), mask=live)


def recon_error_accumulate_(score: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor | None,
                            weight: float) -> None:
    """score[B, T] += weight·mean_c(mask·(x − x̂)²), in place, for [B, T, C] inputs of any strides."""
    if x.dtype not in (torch.float32, torch.float64) or x.dim() != 3:
        raise ValueError(f"x must be 3-D, got shape {list(x.shape)}" if x.dim() != 3 else
                         f"x must be float32 or float64, got {str(x.dtype).removeprefix('torch.')}")
    for name, t in (("x_hat", x_hat), ("mask", mask)):
        if t is not None and (t.shape != x.shape or t.dtype != x.dtype or t.device != x.device):
            raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}" if t.device != x.device else
                             f"{name} must have x's shape {list(x.shape)}, got {list(t.shape)}" if t.shape != x.shape
                             else f"{name} must have x's dtype {str(x.dtype).removeprefix('torch.')}, got "
                             f"{str(t.dtype).removeprefix('torch.')}")
    if score.shape != x.shape[:2] or score.dtype != x.dtype or score.device != x.device:
        raise ValueError(f"score must be on x's device {x.device}, got {score.device}" if score.device != x.device
                         else f"score must have shape {list(x.shape[:2])}, got {list(score.shape)}"
                         if score.shape != x.shape[:2] else f"score must have x's dtype "
                         f"{str(x.dtype).removeprefix('torch.')}, got {str(score.dtype).removeprefix('torch.')}")
    B, T, C = x.shape
    if B * T == 0:
        return
    if B * T >= MAX_ELEMENTS:
        raise ValueError(f"x must have fewer than 2^51 timestamps (B·T), got {B * T}")
    # The weight through a one-element tensor of the data's dtype: a Python float becomes a float32 kernel
    # argument, which would round e.g. 1/3 for float64 data.
    w = torch.full((1,), weight, dtype=x.dtype, device=x.device)
    m = mask if mask is not None else x
    _recon_kernel[(triton.cdiv(B * T, BLOCK_R),)](
        score, x, x_hat, m, w, score.stride(0), score.stride(1), *x.stride(), *x_hat.stride(), *m.stride(),
        B * T, T, C, HAS_MASK=mask is not None, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
