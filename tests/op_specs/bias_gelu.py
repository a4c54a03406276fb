"""Spec of ``bias_gelu``: the exact (erf) GELU of a matrix product plus its bias, the layer of FlowDetector's
conditioners (Linear then GELU):

    out = GELU(u),  u = z + bias,  GELU(u) = u·Φ(u)
    ∂/∂z = g·GELU'(u),  GELU'(u) = Φ(u) + u·φ(u),  ∂/∂bias = Σ_rows g·GELU'(u)

z [M, N] float32 or float64, any strides; bias [N] of z's dtype and device, any stride; out [M, N], contiguous.
Differentiable in z and bias: the compiled backends register the backward op ``bias_gelu_backward(grad, z, bias) ->
(grad_z, grad_bias)`` (its autograd kernel is C++, csrc/autograd.cpp; no second derivative); the eager backend is
the composite under autograd. No Triton kernel. Oracle: :func:`genad_fast.reference.bias_gelu.bias_gelu`.

The CPU kernel runs a row at a time, float32 in vectors of 8 (AVX2) or 16 (AVX-512) lanes with a partial last
vector, float64 element by element; the bias gradient is summed in z's dtype within fixed blocks of at least 64 rows
(at most 1024 blocks: more rows a block past M = 65 536), then in double over the blocks in order. The cases below
give one element, tails of every width, rows of one column, a block and one row, many blocks split over threads,
more than 1024 blocks, and no rows at all.
"""
from __future__ import annotations

import math

import pytest
import torch

import genad_fast
from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import bias_gelu as ref
from op_specs.compare import EXACT, F32, F64, Tolerances, assert_terms_close, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, on_gpu, sized

OPS = ("bias_gelu",)
IMPLEMENTED = ("eager", "cpu", "cuda")
DTYPES = (F32, F64)
# (M, N): one element; one row of 17 (a tail of 1 after a 16-lane register); rows of exactly one 16-lane register;
# rows of 33 and 129 (a tail of 1 after 2 and 8 registers); rows of one column (64 rows: one bias block); one block
# and a row more; no rows (the bias gradient all zeros), no columns, neither; 1000 rows (16 blocks of 64, the last
# short, split over threads; 37 = 2·16 + 5); FlowDetector's [256, 128]; rows of 20 000 columns; 70 001 rows (over
# 1024 blocks: 69 rows a block, the last one short); on a GPU, thousands of blocks.
SHAPES = [(1, 1), (1, 17), (3, 16), (7, 33), (5, 129), (64, 1), (65, 3), (0, 5), (4, 0), (0, 0),
          sized((1000, 37), MEDIUM), sized((256, 128), MEDIUM), sized((3, 20000), MEDIUM),
          sized((70001, 3), MEDIUM), sized(on_gpu((16384, 1024), (2048, 64)), LARGE)]
# Layouts of z a caller hands over: contiguous; transposed (a product computed as (W·xᵀ)ᵀ); every other column; a
# window at a storage offset of a wider matrix; one row broadcast over M (stride 0). And of bias: contiguous, every
# other element of a longer vector, one value broadcast over N (stride 0).
LAYOUTS = ("contiguous", "transposed", "every-other", "offset-slice", "broadcast")
BIAS_LAYOUTS = ("contiguous", "every-other", "broadcast")
# The scale of z ~ N(0, scale²) (bias ~ N(0, 1)): 1, and 4 (u to ~±16: both tails, Φ and φ far below float32's
# resolution of 1).
SCALES = (1.0, 4.0)

# Forward against the reference in z's dtype. float32: the kernel's Φ is Abramowitz-Stegun's erf (|error| <= 1.5e-7
# absolute) with ATen's 20-ulp exp_u20 and a hardware reciprocal; the reference's is ATen's float erf, the same
# approximation but formed as 1 + erf, which loses ~1e-6 of |u|·Φ near u ~ -3.4 (measured against a float64
# truth: ATen 9.6e-7, the kernel 2.1e-7): the worst difference over SHAPES is 1.15e-6 at out = -9.3e-4, 57 % of atol
# 2e-6; where |out| is large, both are within ~3e-7 relative (rtol 5e-6). float64: the exact erfc against ATen's
# 1 + erf, which cancels to ~ulp(1) in the left tail (measured 2.3e-16 absolute near 0, 12 % of atol 2e-15; a few
# ulps relative elsewhere). cuda (not measured in this change: twice the CPU budgets): the eager reference runs
# CUDA's erf (a few ulps) on the same device, the kernel genad/gelu.h's erf with CUDA's expf.
FWD_TOL = Tolerances({F32: tol(5e-6, 2e-6), F64: tol(1e-14, 2e-15)},
                     cuda={F32: tol(1e-5, 4e-6), F64: tol(2e-14, 4e-15)})
# ∂/∂z against the reference's autograd, with output gradients ~N(0, 1): |GELU'| <= 1.13, the same two erfs as the
# forward and ATen's exp (over SHAPES the worst is 4.2e-7 at |∂/∂z| = 0.19 in float32, 18 % of atol + rtol·|want|;
# 1.9e-16 in float64, 9 % of atol 2e-15).
GRAD_TOL = Tolerances({F32: tol(2e-6, 2e-6), F64: tol(1e-14, 2e-15)},
                      cuda={F32: tol(4e-6, 4e-6), F64: tol(2e-14, 4e-15)})
# ∂/∂bias, a sum of M terms g·GELU'(u): bounded in units of eps·Σ_rows|g|·(1 + |GELU'(u)|) (assert_terms_close),
# what was summed with each term's own error counted at an ulp of |g| (float32: the two erfs are ~1e-7 apart in
# absolute terms, ATen's float erf far off relatively in the left tail, where the terms are tiny); both summation
# orders fit too: the CPU kernel sums float32 blocks of 64 rows and the blocks in double, the reference ATen's
# cascade (the worst over SHAPES: 27 % of 4 units in float32 and 25 % in float64, both at M = 3; 5 % and 8 % at
# M >= 256).
GRAD_BIAS_ULPS = Tolerances({F32: dict(ulps=4.0), F64: dict(ulps=4.0)}, cuda={F32: dict(ulps=8.0)})
# The closed forms GELU(u) = u·Φ(u), GELU'(u) = Φ(u) + u·φ(u) with Φ from math.erfc (no cancellation) in float64,
# at |u| up to 30: the kernel's exact erfc and exp are within a few ulps of them (argument rounding: 2x²·ulp(x) for
# erfc(x) at x = 21 is 1e-13 relative), where the reference's 1 + erf(u/√2) is 0 at u = -30 (its gradient 0.1 %
# off, its output 0).
TAIL_TOL = Tolerances({F64: tol(1e-12, 0.0)})
# CPU runner only: rows are split over threads, each element's arithmetic is the same whatever the thread, and the
# bias gradient's blocks depend on M only: 1 and 2 threads give the same bits.
THREADS_TOL = EXACT
# GELU' ranges over [-0.128904, 1.128904] (GELU'' = φ(u)·(2 - u²): its extremes at u = ∓√2): the bounds of
# ∂/∂z / g a finite input must keep, with 1e-4 of room (float32 rounding).
GELU_PRIME_RANGE = (-0.1290, 1.1290)
# min GELU = -0.169971 (at u = -0.75179, where GELU' = 0), with 3e-5 of room.
GELU_MIN = -0.1700
# gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3) in float64: (M, N).
GRADCHECK_SHAPES = [(3, 5), (1, 1), (6, 17), (0, 4)]


def inputs(shape, dtype, device="cpu", seed=0, scale=1.0):
    """(z, bias): z ~ N(0, scale²) of ``shape`` [M, N], bias ~ N(0, 1) of [N], drawn in float64 and converted (the
    same values whatever the dtype)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=F64) * scale
    bias = torch.randn(shape[1], generator=g, dtype=F64)
    return z.to(dtype).to(device), bias.to(dtype).to(device)


def grads_like(shape, dtype, device="cpu", seed=1) -> torch.Tensor:
    """Output gradients ~N(0, 1) of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(dtype).to(device)


def layouts(shape, dtype, device="cpu", seed=0, scale=1.0) -> dict:
    """z of ``shape`` in each layout of LAYOUTS, the same values in each but the broadcast one (its first row)."""
    dense, _ = inputs(shape, dtype, device, seed, scale)
    M, N = shape
    wide = torch.zeros(M, 2 * N, dtype=dtype, device=device)
    wide[:, ::2] = dense
    offset = torch.full((M, N + 3), float("nan"), dtype=dtype, device=device)
    offset[:, 2:2 + N] = dense
    return {
        "contiguous": dense,
        "transposed": dense.t().contiguous().t(),
        "every-other": wide[:, ::2],
        "offset-slice": offset[:, 2:2 + N],
        "broadcast": dense[:1].expand(shape) if M else dense,
    }


def bias_layouts(n, dtype, device="cpu", seed=0) -> dict:
    """bias of [n] in each layout of BIAS_LAYOUTS, the same values in each but the broadcast one (its first)."""
    _, dense = inputs((1, n), dtype, device, seed)
    wide = torch.full((2 * n + 1,), float("nan"), dtype=dtype, device=device)
    wide[1::2] = dense
    return {
        "contiguous": dense,
        "every-other": wide[1::2],
        "broadcast": dense[:1].expand(n) if n else dense,
    }


def unit(target: Target, z, bias):
    return ops.bias_gelu(z, bias, backend=target.backend)


def oracle(z, bias):
    """The reference in z's dtype."""
    return ref.bias_gelu(z, bias)


def oracle_grads(z, bias, grad):
    """(∂/∂z, ∂/∂bias) of (reference(z, bias) · grad).sum(), by autograd of the reference."""
    zr = z.detach().clone().requires_grad_(True)
    br = bias.detach().clone().requires_grad_(True)
    ref.bias_gelu(zr, br).backward(grad)
    return zr.grad, br.grad


def unit_grads(target: Target, z, bias, grad):
    """(∂/∂z, ∂/∂bias) through the op's autograd on ``target`` (the registered backward on the compiled backends),
    with leaves of z's and bias's own layouts (detach keeps the strides, where clone would make an every-other or
    broadcast layout contiguous): the backward sees them as the forward did."""
    zg = z.detach().requires_grad_(True)
    bg = bias.detach().requires_grad_(True)
    out = unit(target, zg, bg)
    assert out.requires_grad
    out.backward(grad)
    return zg.grad, bg.grad


def gelu_prime_f64(u: torch.Tensor) -> torch.Tensor:
    """GELU'(u) = Φ(u) + u·φ(u) in float64, Φ by erfc (no cancellation in either tail)."""
    return ref.gelu_derivative(u.double())


def bias_grad_scale(z, bias, grad) -> torch.Tensor:
    """Σ_rows |g|·(1 + |GELU'(z + bias)|) in float64: the unit of GRAD_BIAS_ULPS."""
    return (grad.double().abs() * (1 + gelu_prime_f64(z.double() + bias.double()).abs())).sum(0)


def check_bias_grad(target: Target, got, want, z, bias, grad):
    """∂/∂bias within GRAD_BIAS_ULPS units of eps·Σ_rows|g|·(1 + |GELU'(z + bias)|) of the reference's; the shape
    [N] and bias's dtype."""
    assert got.shape == bias.shape and got.dtype == bias.dtype, (got.shape, bias.shape, got.dtype)
    assert_terms_close(got, want, bias_grad_scale(z, bias, grad), **GRAD_BIAS_ULPS(target, got.dtype))


def check_not_implemented_says_so(target: Target):
    """A backend without a bias_gelu kernel says so (it is not hidden behind another)."""
    with pytest.raises(BackendUnavailableError, match=f"bias_gelu has no '{target.backend}' implementation"):
        unit(target, *inputs((3, 5), F32, target.dev))


def check_matches_reference(target: Target, dtype, shape, scale):
    """Forward and both gradients (through autograd) against the reference; the output is contiguous [M, N] in z's
    dtype and device, the gradients z's and bias's shapes."""
    if target.backend not in IMPLEMENTED:
        return check_not_implemented_says_so(target)
    z, bias = inputs(shape, dtype, target.dev, scale=scale)
    got = unit(target, z, bias)
    assert got.shape == z.shape and got.dtype == dtype and got.device == z.device and got.is_contiguous()
    close(got, oracle(z, bias), FWD_TOL(target, dtype))
    g = grads_like(shape, dtype, target.dev)
    gz, gb = unit_grads(target, z, bias, g)
    want_z, want_b = oracle_grads(z, bias, g)
    assert gz.shape == z.shape and gz.dtype == dtype
    close(gz, want_z, GRAD_TOL(target, dtype))
    check_bias_grad(target, gb, want_b, z, bias, g)


def check_any_input_layout(target: Target, layout, bias_layout, dtype, shape):
    """Any layout of z and of bias gives the reference's result on their contiguous copies, forward and backward;
    the output and ∂/∂z are contiguous [M, N] (the eager backend's too: the wrapper makes them so)."""
    z = layouts(shape, dtype, target.dev, seed=3, scale=3.0)[layout]
    bias = bias_layouts(shape[1], dtype, target.dev, seed=4)[bias_layout]
    if layout != "contiguous" and z.numel() > 1 and not (layout == "transposed" and min(shape) == 1):
        assert not z.is_contiguous(), layout   # the layout is one the kernel must copy or read through
    if bias_layout != "contiguous" and bias.numel() > 1:
        assert not bias.is_contiguous(), bias_layout
    got = unit(target, z, bias)
    assert got.is_contiguous()
    close(got, oracle(z.contiguous(), bias.contiguous()), FWD_TOL(target, dtype))
    g = grads_like(shape, dtype, target.dev)
    gz, gb = unit_grads(target, z, bias, g)
    want_z, want_b = oracle_grads(z.contiguous(), bias.contiguous(), g)
    assert gz.shape == z.shape and gb.shape == bias.shape
    close(gz, want_z, GRAD_TOL(target, dtype))
    check_bias_grad(target, gb, want_b, z.contiguous(), bias.contiguous(), g)


def _compiled_only(target: Target, why: str) -> None:
    if target.ops is None:
        pytest.skip(f"the eager backend is ATen's composite: {why}")


def check_kernel_takes_any_strides(target: Target):
    """The registered ops themselves (no Python layer in front) take any strides of z, bias and grad: a transposed
    z, a strided bias, a stride-0 (expanded) grad, as ``out.sum().backward()`` hands the backward; the results are
    the contiguous inputs' bit for bit."""
    _compiled_only(target, "it has no registered op")
    z, bias = inputs((37, 21), F32, target.dev, seed=4, scale=3.0)
    zt = z.t().contiguous().t()
    bs = torch.stack([bias, torch.full_like(bias, float("nan"))], 1)[:, 0]   # stride 2
    assert not zt.is_contiguous() and bs.stride() == (2,)
    got = target.ops.bias_gelu(zt, bs)
    assert got.is_contiguous()
    close(got, target.ops.bias_gelu(z, bias), EXACT)
    close(got, oracle(z, bias), FWD_TOL(target, F32))
    g = torch.tensor(0.75, device=target.dev).expand(z.shape)
    gz, gb = target.ops.bias_gelu_backward(g, zt, bs)
    assert gz.shape == z.shape and gz.is_contiguous() and gb.shape == bias.shape
    want_z, want_b = target.ops.bias_gelu_backward(g.contiguous(), z, bias)
    close(gz, want_z, EXACT)
    close(gb, want_b, EXACT)
    ref_z, ref_b = oracle_grads(z, bias, g.contiguous())
    close(gz, ref_z, GRAD_TOL(target, F32))
    check_bias_grad(target, gb, ref_b, z, bias, g)


def check_backward_op_formula(target: Target, dtype):
    """bias_gelu_backward(grad, z, bias) against the closed form g·(Φ(u) + u·φ(u)) in float64 (no autograd in
    between), and its ∂/∂bias against the float64 column sums of its own ∂/∂z."""
    _compiled_only(target, "it has no backward op")
    z, bias = inputs((130, 19), dtype, target.dev, seed=6, scale=2.0)
    g = grads_like((130, 19), dtype, target.dev)
    gz, gb = target.ops.bias_gelu_backward(g, z, bias)
    want = g.double() * gelu_prime_f64(z.double() + bias.double())
    close(gz, want.to(dtype), GRAD_TOL(target, dtype))
    # its own ∂/∂z summed: only the order of the sum differs (units of Σ|terms|)
    assert_terms_close(gb, gz.double().sum(0).to(dtype), want.abs().sum(0), **GRAD_BIAS_ULPS(target, dtype))
    assert_terms_close(gb, want.sum(0).to(dtype), bias_grad_scale(z, bias, g), **GRAD_BIAS_ULPS(target, dtype))


def extreme_inputs(dtype, device="cpu", largest=True):
    """(z, bias): z every finite magnitude (0, ±tiny, ±1e-30, ±0.5 ... ±30, ±88, ±1e4, ±1e30, ±largest finite unless
    ``largest`` is False) down the rows, the same in each of 3 columns; bias 0, 0.75, -1.5 (z + bias stays finite)."""
    big = torch.finfo(dtype).max
    vals = [0.0, -0.0, torch.finfo(dtype).tiny, 1e-30, 0.5, 0.75, 1.0, 1.5, 3.0, 5.0, 9.0, 17.0, 30.0, 88.0, 1e4,
            1e30] + ([big] if largest else [])
    col = torch.tensor(vals + [-v for v in vals], dtype=F64).clamp(-big, big).to(dtype)
    z = col[:, None].expand(-1, 3).contiguous()
    return z.to(device), torch.tensor([0.0, 0.75, -1.5], dtype=dtype, device=device)


def check_finite_input_never_gives_nan(target: Target, dtype):
    """Every finite magnitude: the output and both gradients finite, min GELU <= out <= max(u, 0) and ∂/∂z within
    GELU's slope range times |g|; equal to the reference where it is finite (ATen's float32 CPU gelu overflows to inf
    at the largest float); at |u| >= 1e4 the output is exactly its limit (u or 0) and ∂/∂z exactly g or 0. (The
    eager backend is that gelu: it is not given the largest float.)"""
    z, bias = extreme_inputs(dtype, target.dev, largest=target.ops is not None)
    u = z + bias
    out = unit(target, z, bias)
    assert torch.isfinite(out).all()
    assert (out >= GELU_MIN).all() and (out <= u.clamp_min(0)).all()
    want = oracle(z, bias)
    finite = torch.isfinite(want)
    assert finite.float().mean() > 0.9
    close(out[finite], want[finite], FWD_TOL(target, dtype))
    g = torch.full(z.shape, -2.5, dtype=dtype, device=target.dev)
    gz, gb = unit_grads(target, z, bias, g)
    assert torch.isfinite(gz).all() and torch.isfinite(gb).all()
    slope = gz / g
    assert (slope >= GELU_PRIME_RANGE[0]).all() and (slope <= GELU_PRIME_RANGE[1]).all()
    want_z, want_b = oracle_grads(z, bias, g)
    close(gz, want_z, GRAD_TOL(target, dtype))
    check_bias_grad(target, gb, want_b, z, bias, g)
    far = u.abs() >= 1e4
    assert torch.equal(out[far], torch.where(u[far] > 0, u[far], torch.zeros_like(u[far])))
    assert torch.equal(gz[far], torch.where(u[far] > 0, g[far], torch.zeros_like(g[far])))


# u of the tails: Φ(u) (left) or 1 - Φ(u) (right) from 1e-3 down to 5e-198 (Φ(-8) = 6e-16 is a few ulps of 1 +
# erf in float64; Φ(-20) and Φ(-30) are far below float32's smallest normal).
TAILS = [-30.0, -20.0, -12.5, -8.0, -5.0, -3.0, 4.0, 7.5, 9.0, 12.0]
# u where the unit is exactly its limit in both dtypes: Φ(u) rounds to 1 (0) and u·φ(u) underflows to 0.
SATURATED = [-1e4, -200.0, -40.0, 40.0, 200.0, 1e4]


def check_tails_keep_their_precision(target: Target):
    """float64: out = u·Φ(u) and ∂/∂z = g·(Φ(u) + u·φ(u)) against the closed forms of math.erfc and math.exp, to
    1e-12 relative at u down to -30 (φ(-30) ~ 1e-196), where the reference's 1 + erf(u/√2) gives 0 for Φ; ∂/∂bias
    of one row is ∂/∂z bit for bit (a sum of one term)."""
    _compiled_only(target, "its 1 + erf(u/√2) cancels in the left tail")
    u = torch.tensor(TAILS, dtype=F64)
    z, bias = (u - 0.5)[None], torch.full((len(TAILS),), 0.5, dtype=F64)   # z + bias = u exactly
    g = torch.linspace(-1.7, 2.3, len(TAILS), dtype=F64)[None]
    want_out, want_gz = [], []
    for ui, gi in zip(TAILS, g[0].tolist()):
        cdf = 0.5 * math.erfc(-ui / math.sqrt(2.0))
        pdf = math.exp(-0.5 * ui * ui) / math.sqrt(2.0 * math.pi)
        want_out.append(ui * cdf)
        want_gz.append(gi * (cdf + ui * pdf))
    want_out, want_gz = torch.tensor([want_out], dtype=F64), torch.tensor([want_gz], dtype=F64)
    assert (want_out != 0).all() and (want_gz != 0).all()
    dev = target.dev
    out = unit(target, z.to(dev), bias.to(dev)).cpu()
    close(out, want_out, TAIL_TOL(target, F64))
    gz, gb = unit_grads(target, z.to(dev), bias.to(dev), g.to(dev))
    close(gz.cpu(), want_gz, TAIL_TOL(target, F64))
    close(gb.cpu(), gz[0].cpu(), EXACT)
    direct_z, _ = target.ops.bias_gelu_backward(g.to(dev), z.to(dev), bias.to(dev))
    close(direct_z.cpu(), want_gz, TAIL_TOL(target, F64))
    # the reference misses this by 0.1 % at u = -30 (its Φ(-30) is 0): the tolerance would catch that
    with pytest.raises(AssertionError):
        close(oracle_grads(z, bias, g)[0], want_gz, TAIL_TOL(target, F64))


def check_saturated_units_are_their_limits(target: Target, dtype):
    """|u| >= 40: out is u or 0 exactly (-0 allowed), ∂/∂z is g or 0 exactly, in both dtypes (Φ rounds to 1 or 0,
    u·φ(u) underflows to 0)."""
    u = torch.tensor(SATURATED, dtype=dtype)
    z, bias = (u - 0.25)[None].to(target.dev), torch.full((len(SATURATED),), 0.25, dtype=dtype, device=target.dev)
    g = torch.linspace(-1.7, 2.3, len(SATURATED), dtype=dtype)[None].to(target.dev)
    out = unit(target, z, bias).cpu()
    close(out, torch.where(u > 0, u, torch.zeros_like(u))[None], EXACT)
    gz, gb = unit_grads(target, z, bias, g)
    close(gz.cpu(), torch.where(u > 0, g.cpu()[0], torch.zeros_like(u))[None], EXACT)
    close(gb.cpu(), gz[0].cpu(), EXACT)


def check_nan_and_inf_propagate(target: Target, dtype):
    """NaN in z makes that element's output and ∂/∂z NaN and its column's ∂/∂bias, nothing else; NaN in bias its
    whole column; -inf gives NaN (GELU(-inf) = -inf·0, as the reference); the rest equals the reference."""
    z, bias = inputs((9, 6), dtype, target.dev, seed=9, scale=2.0)
    z[1, 0] = float("nan")
    z[4, 2] = -float("inf")
    z[7, 4] = float("nan")
    bias[3] = float("nan")
    nan = torch.zeros(9, 6, dtype=torch.bool, device=target.dev)
    nan[1, 0] = nan[4, 2] = nan[7, 4] = True
    nan[:, 3] = True
    out = unit(target, z, bias)
    assert torch.equal(torch.isnan(out), nan)
    close(out, oracle(z, bias), FWD_TOL(target, dtype), equal_nan=True)
    g = grads_like(z.shape, dtype, target.dev)
    gz, gb = unit_grads(target, z, bias, g)
    want_z, want_b = oracle_grads(z, bias, g)
    assert torch.equal(torch.isnan(gz), nan) and torch.equal(torch.isnan(want_z), nan)
    close(gz, want_z, GRAD_TOL(target, dtype), equal_nan=True)
    assert torch.equal(torch.isnan(gb), nan.any(0))
    check_bias_grad(target, gb, want_b, z, bias, g)


def check_plus_inf_gives_plus_inf(target: Target, dtype):
    """GELU(+inf) = +inf (Φ(inf) = 1): at z = +inf and where a finite z meets bias = +inf, the output is +inf (ATen's
    float32 CPU gelu says NaN there: the contract is the function's limit, not that); every other element, and its
    gradients, the reference's. (∂/∂z at +inf is not asserted: the kernels compute inf·φ(inf) = NaN there, as
    ATen's gelu backward does, where GELU'(+inf) = 1.)"""
    _compiled_only(target, "it is ATen's gelu, whose float32 CPU kernel gives NaN at +inf")
    z, bias = inputs((5, 19), dtype, target.dev, seed=10, scale=2.0)
    z[2, 3] = z[0, 17] = float("inf")
    bias[11] = float("inf")
    inf = torch.zeros(5, 19, dtype=torch.bool, device=target.dev)
    inf[2, 3] = inf[0, 17] = True
    inf[:, 11] = True
    out = unit(target, z, bias)
    assert torch.equal(out[inf], torch.full_like(out[inf], float("inf"))), out[inf]
    finite = ~inf
    close(out[finite], oracle(z, bias)[finite], FWD_TOL(target, dtype))
    g = grads_like(z.shape, dtype, target.dev)
    gz, gb = unit_grads(target, z, bias, g)
    want_z, _ = oracle_grads(z, bias, g)
    close(gz[finite], want_z[finite], GRAD_TOL(target, dtype))
    clean = ~inf.any(0)
    zc, bc = z[:, clean], bias[clean]
    check_bias_grad(target, gb[clean], oracle_grads(zc, bc, g[:, clean])[1], zc, bc, g[:, clean])


def check_empty(target: Target):
    """No rows (the bias gradient is all zeros, not left uninitialised), no columns, neither: outputs and gradients
    of the right shapes and dtypes."""
    for dtype in DTYPES:
        for shape in [(0, 5), (0, 37), (4, 0), (0, 0)]:
            z, bias = inputs(shape, dtype, target.dev)
            out = unit(target, z, bias)
            assert out.shape == shape and out.dtype == dtype
            gz, gb = unit_grads(target, z, bias, torch.empty(shape, dtype=dtype, device=target.dev))
            assert gz.shape == shape and gb.shape == (shape[1],) and gb.dtype == dtype
            assert torch.equal(gb, torch.zeros_like(gb))


def check_gradcheck(target: Target, shape):
    """float64 finite differences through the op's autograd (the backward op on the compiled backends) in z and
    bias together, on contiguous inputs and on a transposed z with a strided bias."""
    z, bias = inputs(shape, F64, target.dev, seed=11, scale=2.0)
    zt = z.t().contiguous().t()
    bs = torch.cat([bias[:, None], bias[:, None]], 1)[:, 1]
    for zs, bb in ((z, bias), (zt, bs)):
        zs = zs.detach().requires_grad_(True)
        bb = bb.detach().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: unit(target, a, b), (zs, bb))


def check_is_a_linear_then_gelu(target: Target):
    """What a conditioner layer writes, ``torch.nn.GELU()(torch.nn.Linear(K, N)(x))``, as ``bias_gelu(x @ Wᵀ, b)``
    in float64: the same output and the same gradients of x, W and b."""
    g = torch.Generator().manual_seed(12)
    lin = torch.nn.Linear(7, 13, dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(13, 7, generator=g, dtype=F64))
        lin.bias.copy_(torch.randn(13, generator=g, dtype=F64))
    lin = lin.to(target.dev)
    x = torch.randn(40, 7, generator=g, dtype=F64).to(target.dev)
    grad = grads_like((40, 13), F64, target.dev)
    xr = x.clone().requires_grad_(True)
    want = torch.nn.GELU()(lin(xr))
    want.backward(grad)
    want_w, want_b = lin.weight.grad.clone(), lin.bias.grad.clone()
    lin.zero_grad()
    xk = x.clone().requires_grad_(True)
    got = unit(target, xk @ lin.weight.t(), lin.bias)
    got.backward(grad)
    close(got, want.detach(), FWD_TOL(target, F64))
    close(xk.grad, xr.grad, GRAD_TOL(target, F64))
    close(lin.weight.grad, want_w, GRAD_TOL(target, F64))
    assert_terms_close(lin.bias.grad, want_b, lin.bias.grad.new_full((13,), 40 * 1.13 * float(grad.abs().max())),
                       **GRAD_BIAS_ULPS(target, F64))


def opcheck_samples(target: Target) -> dict:
    """Both dtypes; a transposed z and a strided bias; a row of one column; no rows; inputs that require grad (the
    C++ autograd registration); dense and expanded (stride 0) output gradients for the backward. The kept-derivative
    pair on the same inputs, without grad."""
    dev = target.dev
    fwd, bwd = [], []
    for dtype in DTYPES:
        z, bias = inputs((6, 21), dtype, dev, seed=2)
        zt = z.t().contiguous().t()
        bs = torch.cat([bias[:, None], bias[:, None]], 1)[:, 0]
        for zs, bb in ((z, bias), (zt, bs), (z[:, :1], bias[:1]), (z[:0], bias)):
            fwd.append((zs.detach().clone().requires_grad_(True), bb.detach().clone().requires_grad_(True)))
            bwd.append((grads_like(zs.shape, dtype, dev), zs, bb))
        bwd.append((torch.ones((), dtype=dtype, device=dev).expand(6, 21), z, bias))
    keep = [(z.detach(), b.detach()) for z, b in fwd]   # no autograd of their own: called below a C++ node
    kept = [(g, ref.bias_gelu_keep(z, b)[1]) for g, z, b in bwd]
    return {"bias_gelu": fwd, "bias_gelu_backward": bwd, "bias_gelu_keep": keep, "bias_gelu_backward_kept": kept}


OPCHECK = ("bias_gelu", "bias_gelu_backward", "bias_gelu_keep", "bias_gelu_backward_kept")


def check_captured_in_a_cuda_graph(target: Target, capture):
    """Forward and backward ops captured once (``capture``: gpu_support.captured) and replayed after the inputs
    changed in place: the replay's outputs are the eager calls' on the new inputs (the kernels run on the current
    stream, and the bias gradient's reduction allocates nothing outside the graph's pool)."""
    _compiled_only(target, "it has no op of its own to capture")
    z, bias = inputs((256, 128), F32, target.dev, seed=13, scale=3.0)
    g = grads_like((256, 128), F32, target.dev)
    replay = capture(lambda: (target.ops.bias_gelu(z, bias), *target.ops.bias_gelu_backward(g, z, bias)))
    replay()
    z2, b2 = inputs(z.shape, F32, target.dev, seed=14, scale=3.0)
    z.copy_(z2)
    bias.copy_(b2)
    out, gz, gb = replay()
    close(out, target.ops.bias_gelu(z, bias), EXACT)
    want_z, want_b = target.ops.bias_gelu_backward(g, z, bias)
    close(gz, want_z, EXACT)
    close(gb, want_b, EXACT)
    close(out, oracle(z, bias), FWD_TOL(target, F32))


def check_other_device_is_refused(target: Target):
    """The ops with an argument on the CPU and z on the GPU: the CUDA kernel names the argument and its device (the
    device contract of csrc/include/genad/host/checks.h), rather than reading host memory."""
    if not target.is_cuda or target.ops is None:
        pytest.skip("a CUDA kernel's device contract")
    z, bias = inputs((4, 6), F32, target.dev)
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: bias must be a CUDA tensor for the CUDA kernel, "
                                           r"got cpu"):
        target.ops.bias_gelu(z, bias.cpu())
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu_backward: grad must be a CUDA tensor for the "
                                           r"CUDA kernel, got cpu"):
        target.ops.bias_gelu_backward(torch.zeros(4, 6), z, bias)
    with pytest.raises(ValueError, match=r"bias is on cpu, z on cuda:\d: pass tensors on one device"):
        unit(target, z, bias.cpu())


# ---- the pair that keeps GELU' from the forward (bias_gelu_keep, bias_gelu_backward_kept) -------------------------

def check_kept_pair_gives_the_same_bits(target: Target, dtype, layout, bias_layout):
    """``bias_gelu_keep(z, bias)`` is (``bias_gelu(z, bias)``, GELU'(z + bias)) and ``bias_gelu_backward_kept(g,
    GELU')`` is ``bias_gelu_backward(g, z, bias)``, bit for bit (the same formulas, GELU' one fused multiply-add),
    for any layout of z and bias and an expanded (stride 0) or transposed grad: FlowDetector's conditioner node
    trains with the pair, and its gradients are the modules' (tests/test_flow_model.py)."""
    _compiled_only(target, "the pair is the compiled backends' own")
    shape = (130, 37)
    z = layouts(shape, dtype, target.dev, seed=15, scale=3.0)[layout]
    bias = bias_layouts(shape[1], dtype, target.dev, seed=16)[bias_layout]
    out, derivative = target.ops.bias_gelu_keep(z, bias)
    assert out.is_contiguous() and derivative.is_contiguous() and derivative.shape == z.shape
    close(out, target.ops.bias_gelu(z, bias), EXACT)
    for g in (grads_like(shape, dtype, target.dev), grads_like(shape[::-1], dtype, target.dev).t(),
              torch.tensor(-0.625, dtype=dtype, device=target.dev).expand(shape)):
        gz, gb = target.ops.bias_gelu_backward_kept(g, derivative)
        want_z, want_b = target.ops.bias_gelu_backward(g, z, bias)
        assert gz.is_contiguous() and gb.shape == bias.shape and gb.dtype == dtype
        close(gz, want_z, EXACT)
        close(gb, want_b, EXACT)


def check_kept_pair_matches_reference(target: Target, dtype, shape, scale):
    """The pair against its eager twins (genad_fast.reference.bias_gelu): the output within the forward's
    tolerance, GELU' within the gradient's (it is ∂/∂z at g = 1), grad·GELU' bit for bit given the same derivative
    and the column sums within GRAD_BIAS_ULPS units; GELU' within GELU_PRIME_RANGE."""
    _compiled_only(target, "the pair is the compiled backends' own")
    z, bias = inputs(shape, dtype, target.dev, seed=17, scale=scale)
    out, derivative = target.ops.bias_gelu_keep(z, bias)
    want_out, want_derivative = ref.bias_gelu_keep(z, bias)
    close(out, want_out, FWD_TOL(target, dtype))
    close(derivative, want_derivative, GRAD_TOL(target, dtype))
    assert (derivative >= GELU_PRIME_RANGE[0]).all() and (derivative <= GELU_PRIME_RANGE[1]).all()
    g = grads_like(shape, dtype, target.dev)
    gz, gb = target.ops.bias_gelu_backward_kept(g, derivative)
    want_z, want_b = ref.bias_gelu_backward_kept(g, derivative)
    close(gz, want_z, EXACT)
    assert_terms_close(gb, want_b, (g.double() * derivative.double()).abs().sum(0), **GRAD_BIAS_ULPS(target, dtype))


def check_kept_pair_refuses_what_does_not_match(target: Target):
    """The backward from a kept derivative names what does not match it: grad's shape, dtype and device; and an
    integer or 1-D derivative."""
    _compiled_only(target, "the pair is the compiled backends' own")
    z, bias = inputs((4, 3), F32, target.dev)
    derivative = target.ops.bias_gelu_keep(z, bias)[1]
    kept = target.ops.bias_gelu_backward_kept
    name = "genad_fast::bias_gelu_backward_kept"
    with pytest.raises(RuntimeError, match=rf"{name}: grad must have shape \[4, 3\], got \[3, 4\]"):
        kept(torch.zeros(3, 4, device=target.dev), derivative)
    with pytest.raises(RuntimeError, match=rf"{name}: grad must have derivative's dtype float32, got float64"):
        kept(torch.zeros(4, 3, dtype=F64, device=target.dev), derivative)
    with pytest.raises(RuntimeError, match=rf"{name}: derivative must be 2-D, got shape \[3\]"):
        kept(torch.zeros(3, device=target.dev), derivative[0])
    with pytest.raises(RuntimeError, match=rf"{name}: derivative must be float32 or float64, got int32"):
        kept(torch.zeros(4, 3, dtype=torch.int32, device=target.dev), derivative.int())
    if target.is_cuda:
        with pytest.raises(RuntimeError, match=rf"{name}: grad must be a CUDA tensor for the CUDA kernel, got cpu"):
            kept(torch.zeros(4, 3), derivative)
