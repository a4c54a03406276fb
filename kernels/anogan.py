"""Triton kernels of AnoGAN's latent search: the residual loss with its sub-gradients, and masked Adam.

Same math as csrc/include/genad/anogan.h:
    loss = (1−λ)·Σ|x − gx| + λ·Σ|fx − fgx|,  grad_gx = −(1−λ)·sign(x − gx),  grad_fgx = −λ·sign(fx − fgx)
with sign(0) = 0 and sign(NaN) = NaN; and for each active row, step += 1, m = lerp(m, g, 1−β1),
v = v·β2 + (1−β2)·g², z += (−lr/(1−β1^step))·m / (√v/√(1−β2^step) + ε), in torch.optim.Adam's order.

One program owns BLOCK_B rows and walks their columns in chunks of BLOCK_K (kernels/tiles.py: BLOCK_K the next
power of two >= the row length, at most 64, and BLOCK_B·BLOCK_K = 1024); inputs are read (and z, m, v written)
through their row strides, so column slices are used in place.

Scalars: the float arguments are annotated float64 so that compiled kernels get them exactly (a plain
Python float would be a float32 argument); per-element constants are then rounded to the tensor's dtype,
as torch rounds a Python scalar, while Adam's bias corrections are computed in float64, as torch computes
them in Python. β^step is exp2(step·log2 β) in float64 (log2 β from the host), which the interpreter can run.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .tiles import tile_shape



@triton.jit
def _sign_nan(d):
    # 1, −1, or d itself for ±0 and NaN (both comparisons are false for NaN).
    return tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, d)).to(d.dtype)


@triton.jit
def _sqrt(x):
    # IEEE square root: tl.sqrt is an approximation for float32 on the GPU (float64 is exact either way).
    # One assignment per branch, no early return: with `return` inside the `if`, Triton compiles the statement
    # after it too, and sqrt_rn rejects float64 (found on an H200; the interpreter does not compile).
    if x.dtype == tl.float64:
        y = tl.sqrt(x)
    else:
        y = tl.sqrt_rn(x)
    return y


@triton.jit
def _div(a, b):
    # IEEE division, as torch divides: `/` on float32 is an approximate division on the GPU.
    if a.dtype == tl.float64:
        y = a / b
    else:
        y = tl.div_rn(a, b)
    return y


@triton.jit
def _residual_pass(a_ptr, b_ptr, g_ptr, rows, row_ok, K, stride_a, stride_b, neg_w, acc,
                   BLOCK_K: tl.constexpr):
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        mask = row_ok[:, None] & (cols < K)[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0)
        b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0)
        d = a - b
        tl.store(g_ptr + rows[:, None] * K + cols[None, :], neg_w * _sign_nan(d), mask=mask)
        acc += tl.sum(tl.abs(d), axis=1).to(acc.dtype)
    return acc


@triton.jit
def _residual_kernel(x_ptr, gx_ptr, fx_ptr, fgx_ptr,      # [B, P], [B, P], [B, F], [B, F]
                     loss_ptr, ggx_ptr, gfgx_ptr,          # [B], [B, P], [B, F] (contiguous)
                     B, P, F, stride_x, stride_gx, stride_fx, stride_fgx,
                     w_p: tl.float64, w_f: tl.float64,  # unquoted: under `from __future__ import annotations`
                     # a quoted type reaches Triton as '"tl.float64"', which it ignores (fp32 scalars)
                     BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    dtype = x_ptr.dtype.element_ty
    acc_dtype = tl.float64 if dtype == tl.float64 else tl.float32
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    wp = tl.full([], w_p, dtype)
    wf = tl.full([], w_f, dtype)
    sum_p = _residual_pass(x_ptr, gx_ptr, ggx_ptr, rows, row_ok, P, stride_x, stride_gx, -wp,
                           tl.zeros((BLOCK_B,), dtype=acc_dtype), BLOCK_K)
    sum_f = _residual_pass(fx_ptr, fgx_ptr, gfgx_ptr, rows, row_ok, F, stride_fx, stride_fgx, -wf,
                           tl.zeros((BLOCK_B,), dtype=acc_dtype), BLOCK_K)
    loss = wp.to(acc_dtype) * sum_p + wf.to(acc_dtype) * sum_f
    tl.store(loss_ptr + rows, loss.to(dtype), mask=row_ok)


@triton.jit
def _masked_adam_kernel(z_ptr, g_ptr, m_ptr, v_ptr,       # [B, L] each, own row strides
                        step_ptr, active_ptr,              # [B] int64, [B] bool (as uint8)
                        B, L, stride_z, stride_g, stride_m, stride_v, stride_step, stride_active,
                        lr: tl.float64, log2_beta1: tl.float64, log2_beta2: tl.float64,
                        lerp_coef: tl.float64, beta2: tl.float64, one_minus_beta2: tl.float64,
                        eps: tl.float64,
                        LERP_SMALL: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    dtype = z_ptr.dtype.element_ty
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    act = tl.load(active_ptr + rows * stride_active, mask=rows < B, other=0) != 0
    step = tl.load(step_ptr + rows * stride_step, mask=act, other=0) + 1
    # Row scalars in float64; inactive rows get harmless values (step 1) and are masked out below.
    t = tl.where(act, step, 1).to(tl.float64)
    lr64 = tl.full([], lr, tl.float64)
    neg_step_size = (-(lr64 / (1.0 - tl.exp2(t * tl.full([], log2_beta1, tl.float64))))).to(dtype)
    bc2_sqrt = tl.sqrt(1.0 - tl.exp2(t * tl.full([], log2_beta2, tl.float64))).to(dtype)
    coef = tl.full([], lerp_coef, dtype)
    b2 = tl.full([], beta2, dtype)
    omb2 = tl.full([], one_minus_beta2, dtype)
    epsv = tl.full([], eps, dtype)
    for k0 in range(0, L, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        mask = act[:, None] & (cols < L)[None, :]
        z = tl.load(z_ptr + rows[:, None] * stride_z + cols[None, :], mask=mask, other=0.0)
        g = tl.load(g_ptr + rows[:, None] * stride_g + cols[None, :], mask=mask, other=0.0)
        m = tl.load(m_ptr + rows[:, None] * stride_m + cols[None, :], mask=mask, other=0.0)
        v = tl.load(v_ptr + rows[:, None] * stride_v + cols[None, :], mask=mask, other=0.0)
        if LERP_SMALL:
            m = tl.fma(coef, g - m, m)
        else:
            m = tl.fma(coef, g - m, g)
        v = v * b2 + omb2 * g * g
        denom = _div(_sqrt(v), bc2_sqrt[:, None]) + epsv
        z = z + _div(neg_step_size[:, None] * m, denom)
        tl.store(z_ptr + rows[:, None] * stride_z + cols[None, :], z, mask=mask)
        tl.store(m_ptr + rows[:, None] * stride_m + cols[None, :], m, mask=mask)
        tl.store(v_ptr + rows[:, None] * stride_v + cols[None, :], v, mask=mask)
    # The step count is written last, behind a barrier: the [BLOCK_B] row vector is replicated across the warps
    # of the program, and a warp that stored the new count before another warp had loaded the old one gave that
    # warp's columns a second increment (wrong bias correction on whole row segments; seen on an H200, where
    # the interpreter, which runs a program as one thread, cannot show it).
    tl.debug_barrier()
    tl.store(step_ptr + rows * stride_step, step, mask=act)


def _check_rows(name: str, t: torch.Tensor) -> None:
    if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1):
        raise ValueError(f"{name} must be 2-D, got shape {list(t.shape)}" if t.dim() != 2 else
                         f"{name} must have unit stride on its last dimension, got strides {list(t.stride())}")


def anogan_residual(x: torch.Tensor, gx: torch.Tensor, fx: torch.Tensor, fgx: torch.Tensor,
                    lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss [B], grad_gx [B, P], grad_fgx [B, F]) for rows x, gx [B, P] and fx, fgx [B, F]."""
    for name, t in (("x", x), ("gx", gx), ("fx", fx), ("fgx", fgx)):
        _check_rows(name, t)
    B, P = x.shape
    F = fx.shape[1]
    loss = torch.empty((B,), dtype=x.dtype, device=x.device)
    grad_gx = torch.empty((B, P), dtype=x.dtype, device=x.device)
    grad_fgx = torch.empty((B, F), dtype=x.dtype, device=x.device)
    if B == 0:
        return loss, grad_gx, grad_fgx
    block_b, block_k = tile_shape(max(P, F))
    _residual_kernel[(triton.cdiv(B, block_b),)](x, gx, fx, fgx, loss, grad_gx, grad_fgx, B, P, F,
                                                 x.stride(0), gx.stride(0), fx.stride(0), fgx.stride(0), 1.0 - lam,
                                                 lam, BLOCK_B=block_b, BLOCK_K=block_k)
    return loss, grad_gx, grad_fgx


def _log2(beta: float) -> float:
    return math.log2(beta) if beta > 0 else -math.inf  # 0^step = exp2(−inf) = 0 for step >= 1


def masked_adam_(z: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor,
                 active: torch.Tensor, lr: float, beta1: float, beta2: float, eps: float) -> None:
    """Adam on the rows of z [B, L] with active[b] set, in place (z, m, v, step)."""
    for name, t in (("z", z), ("grad", grad), ("m", m), ("v", v)):
        _check_rows(name, t)
    if step.dtype != torch.int64 or active.dtype != torch.bool or step.dim() != 1 or active.dim() != 1:
        raise ValueError(  # the texts of the C++ checks (csrc/include/genad/host/anogan.h)
            f"step must be int64, got {str(step.dtype).removeprefix('torch.')}" if step.dtype != torch.int64 else
            f"active must be bool, got {str(active.dtype).removeprefix('torch.')}" if active.dtype != torch.bool else
            f"step must be a vector of one update count per row, shape [{z.shape[0]}], got shape {list(step.shape)}"
            if step.dim() != 1 else
            f"active must be a vector of one flag per row, shape [{z.shape[0]}], got shape {list(active.shape)}")
    B, L = z.shape
    if B == 0:
        return
    w = 1.0 - beta1
    small = w < 0.5
    # torch's lerp: weight rounded to the tensor's dtype, then weight − 1 formed in that dtype.
    w_t = torch.tensor(w, dtype=z.dtype).item()
    coef = w_t if small else torch.tensor(w_t - 1.0, dtype=z.dtype).item()
    block_b, block_k = tile_shape(L)
    _masked_adam_kernel[(triton.cdiv(B, block_b),)](
        z, grad, m, v, step, active.view(torch.uint8), B, L, z.stride(0), grad.stride(0), m.stride(0), v.stride(0),
        step.stride(0), active.stride(0), lr, _log2(beta1), _log2(beta2), coef, beta2, 1.0 - beta2, eps,
        LERP_SMALL=small, BLOCK_B=block_b, BLOCK_K=block_k)
