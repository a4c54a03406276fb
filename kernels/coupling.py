"""Triton kernels of the fused affine coupling (RealNVP / Glow): forward, inverse and their backward.

Same math as csrc/include/genad/coupling.h: s = clamp·tanh(s_raw/clamp) (or s_raw when clamp = 0),
forward y = x·e^s + t with logdet = Σ s, inverse x = (y − t)·e^{−s} with logdet = −Σ s. One program owns
BLOCK_N rows and walks their D columns in BLOCK_D chunks (kernels/tiles.py: BLOCK_D the next power of two >= D, at
most 64, and BLOCK_N·BLOCK_D = 1024), accumulating the row's logdet in float32 or
wider. Inputs are read through their row strides (column slices are not copied).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .tiles import tile_shape



@triton.jit
def _tanh(u):
    # 2/(1 + e^{-2u}) - 1: saturates to ±1 without overflow trouble (e^{+inf} = inf gives -1) and
    # runs in Triton's interpreter, which has no libdevice. Near 0 its absolute error is ~1 ulp of 1,
    # i.e. ~1e-7 in float32 on s: far below what y = x·e^s resolves.
    return 2.0 / (1.0 + tl.exp(-2.0 * u)) - 1.0


@triton.jit
def _log_scale(s_raw, clamp, HAS_CLAMP: tl.constexpr, CLAMP_PTR: tl.constexpr):
    if HAS_CLAMP:
        if CLAMP_PTR:
            clamp = tl.load(clamp)
        th = _tanh(s_raw / clamp)
        return clamp * th, 1.0 - th * th
    return s_raw, tl.full(s_raw.shape, 1.0, s_raw.dtype)


@triton.jit
def _coupling_kernel(a_ptr, h_ptr, out_ptr, logdet_ptr,  # a, out: [N, D]; h: [N, 2D]; logdet: [N]
                     N, D, stride_a, stride_h, stride_out, clamp,
                     INVERSE: tl.constexpr, HAS_CLAMP: tl.constexpr, CLAMP_PTR: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    acc = tl.zeros((BLOCK_N,), dtype=tl.float64 if a_ptr.dtype.element_ty == tl.float64 else tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = row_ok[:, None] & (cols < D)[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0)
        s_raw = tl.load(h_ptr + rows[:, None] * stride_h + cols[None, :], mask=mask, other=0.0)
        t = tl.load(h_ptr + rows[:, None] * stride_h + D + cols[None, :], mask=mask, other=0.0)
        s, _ = _log_scale(s_raw, clamp, HAS_CLAMP, CLAMP_PTR)
        if INVERSE:
            out = (a - t) * tl.exp(-s)
        else:
            out = a * tl.exp(s) + t
        tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], out, mask=mask)
        acc += tl.sum(tl.where(mask, s, 0.0), axis=1).to(acc.dtype)
    if INVERSE:
        acc = -acc
    tl.store(logdet_ptr + rows, acc.to(logdet_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def _coupling_backward_kernel(g_ptr, gl_ptr, a_ptr, h_ptr, ga_ptr, gh_ptr,
                              N, D, stride_g, col_stride_g, stride_gl, stride_a, stride_h, clamp,
                              INVERSE: tl.constexpr, HAS_CLAMP: tl.constexpr, CLAMP_PTR: tl.constexpr,
                              BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    gl = tl.load(gl_ptr + rows * stride_gl, mask=row_ok, other=0.0)[:, None]
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = row_ok[:, None] & (cols < D)[None, :]
        g = tl.load(g_ptr + rows[:, None] * stride_g + cols[None, :] * col_stride_g, mask=mask, other=0.0)
        a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0)
        s_raw = tl.load(h_ptr + rows[:, None] * stride_h + cols[None, :], mask=mask, other=0.0)
        t = tl.load(h_ptr + rows[:, None] * stride_h + D + cols[None, :], mask=mask, other=0.0)
        s, ds = _log_scale(s_raw, clamp, HAS_CLAMP, CLAMP_PTR)
        if INVERSE:
            e = tl.exp(-s)
            x = (a - t) * e
            grad_a = g * e
            grad_t = -grad_a
            grad_sraw = (-g * x - gl) * ds
        else:
            e = tl.exp(s)
            grad_a = g * e
            grad_t = g
            grad_sraw = (grad_a * a + gl) * ds
        tl.store(ga_ptr + rows[:, None] * D + cols[None, :], grad_a, mask=mask)
        tl.store(gh_ptr + rows[:, None] * (2 * D) + cols[None, :], grad_sraw, mask=mask)
        tl.store(gh_ptr + rows[:, None] * (2 * D) + D + cols[None, :], grad_t, mask=mask)


def _clamp_arg(clamp: float, like: torch.Tensor):
    """The clamp as the kernels take it: a Python float becomes a float32 kernel argument, which would
    round e.g. 0.3 for float64 inputs, so float64 gets it through a one-element tensor of its own dtype."""
    if like.dtype == torch.float64 and clamp > 0:
        return torch.full((1,), clamp, dtype=like.dtype, device=like.device), True
    return float(clamp), False


def _check_rows(name: str, t: torch.Tensor, broadcast_ok: bool = False) -> None:
    if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1 and not (broadcast_ok and t.stride(1) == 0)):
        raise ValueError(f"{name} must be 2-D, got shape {list(t.shape)}" if t.dim() != 2 else
                         f"{name} must have unit stride on its last dimension, got strides {list(t.stride())}")


def coupling(a: torch.Tensor, h: torch.Tensor, clamp: float, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (or inverse) coupling of rows ``a[N, D]`` with ``h[N, 2D]``: returns (out, logdet)."""
    _check_rows("input", a)
    _check_rows("h", h)
    N, D = a.shape
    out = torch.empty((N, D), dtype=a.dtype, device=a.device)
    logdet = torch.empty((N,), dtype=a.dtype, device=a.device)
    if N == 0:
        return out, logdet
    block_n, block_d = tile_shape(D)
    c, c_ptr = _clamp_arg(clamp, a)
    _coupling_kernel[(triton.cdiv(N, block_n),)](a, h, out, logdet, N, D, a.stride(0), h.stride(0), out.stride(0), c,
                                                 INVERSE=inverse, HAS_CLAMP=clamp > 0, CLAMP_PTR=c_ptr,
                                                 BLOCK_N=block_n, BLOCK_D=block_d)
    return out, logdet


def coupling_backward(grad_out: torch.Tensor, grad_logdet: torch.Tensor, inp: torch.Tensor, h: torch.Tensor,
                      clamp: float, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (grad_inp [N, D], grad_h [N, 2D]) of either direction; see csrc/include/genad/coupling.h."""
    _check_rows("grad_out", grad_out, broadcast_ok=True)  # column stride 0: a gradient broadcast along rows
    _check_rows("inp", inp)
    _check_rows("h", h)
    N, D = inp.shape
    grad_inp = torch.empty((N, D), dtype=inp.dtype, device=inp.device)
    grad_h = torch.empty((N, 2 * D), dtype=inp.dtype, device=inp.device)
    if N == 0:
        return grad_inp, grad_h
    block_n, block_d = tile_shape(D)
    grid = (triton.cdiv(N, block_n),)
    c, c_ptr = _clamp_arg(clamp, inp)
    _coupling_backward_kernel[grid](grad_out, grad_logdet, inp, h, grad_inp, grad_h, N, D,
                                    grad_out.stride(0), grad_out.stride(1) if D > 1 else 1, grad_logdet.stride(0),
                                    inp.stride(0), h.stride(0), c, INVERSE=inverse, HAS_CLAMP=clamp > 0,
                                    CLAMP_PTR=c_ptr, BLOCK_N=block_n, BLOCK_D=block_d)
    return grad_inp, grad_h
