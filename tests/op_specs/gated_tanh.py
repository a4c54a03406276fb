"""Spec of ``gated_tanh``: WaveNet's gated activation unit (the residual layer of DiffWave and of
:class:`~genad_fast.nn.diffusion.Denoiser`):

    a, b = x.chunk(2, dim),   out = σ(a) · tanh(b),   tanh(b) evaluated as 2σ(2b) - 1
    ∂/∂a = g · tanh(b) · σ(a)(1 - σ(a)),   ∂/∂b = g · σ(a) · 4σ(2b)(1 - σ(2b))

x float32, float64 or bfloat16 (computed in float32, rounded once), any layout, rank >= 1, an even size along
``dim`` (negative dims count from the end); out has x's shape with ``dim`` halved, contiguous. Differentiable: the
compiled backends register the backward op ``gated_tanh_backward(grad, x, dim) -> grad_x``; the eager backend is
the composite under autograd. No Triton kernel. Oracle: :func:`genad_fast.reference.gated.gated_tanh`.

The kernels see x as ``[outer, 2, span]`` (outer: the sizes before ``dim``, span: half of ``dim`` times the sizes
after it): the cases below give spans of 1, odd spans no multiple of 8 or 16 lanes (vector tails), spans of one
element per row (``dim`` last, time-major ``[rows, 2C]``) and rows of tens of thousands of elements.
"""
from __future__ import annotations

import math

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import gated as ref
from op_specs.compare import BF16, EXACT, F32, F64, Tolerances, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, on_gpu, sized

OPS = ("gated_tanh",)
IMPLEMENTED = ("eager", "cpu", "cuda")
DTYPES = (F32, F64, BF16)
# (shape, dim): 1-D (span 1, and an odd span of 19); time-major [rows, 2C] with dim last, both spellings (span C,
# a tail of 13 lanes); the denoiser's [B, 2C, L] with dim 1 and -2 (span C·L = 5·17 = 85, a tail of 5); dim 0 (one
# row of the whole tensor); a 4-D tensor; empty ones (no rows, no columns, a zero-sized dim itself); and sizes where
# at::parallel_for splits a call (more than 2^15 output elements) in the middle of a row or over many short rows.
SHAPES = [((2,), 0), ((38,), -1), ((7, 26), 1), ((7, 26), -1), ((3, 10, 17), 1), ((3, 10, 17), -2),
          ((4, 6, 33), 0), ((2, 3, 4, 10), 3), ((2, 6, 5, 3), -3), ((1, 2, 1), 1),
          ((0, 6), 1), ((0, 10, 17), -2), ((5, 0), 1), ((3, 0, 7), 1), ((4, 6, 0), 1),
          sized(((8, 64, 200), 1), MEDIUM), sized(((20000, 6), -1), MEDIUM), sized(((1, 70000), 1), MEDIUM),
          sized((on_gpu((64, 256, 2000), (16, 64, 200)), 1), LARGE)]
# Layouts a caller hands over: contiguous; every stride reversed (a transpose of the whole tensor: of a
# [B, L, 2C] activation for the denoiser's [B, 2C, L]); every other element of the last dim; a window at a storage
# offset of a wider last dim; one sample broadcast over the first dim (stride 0).
LAYOUTS = ("contiguous", "transposed", "every-other", "offset-slice", "broadcast")
# The scale of N(0, 1) inputs: 1 (the unit's working range), 6 (|x| up to ~25, the sigmoids close to saturated).
SCALES = (1.0, 6.0)

# Forward against the reference in x's dtype. float32: the reference's 2σ(2b) - 1 cancels near b = 0 and its σ
# rounds once more than the kernel's e/(1 + e); both are within a few ulps of 1 in absolute terms (the output is in
# (-1, 1)): over SHAPES the worst error is 4.2e-7, 22 % of atol 1e-6 (8 ulps of 1). float64: the same in 2^-52 (the
# worst, 5.6e-16, uses 3 % of 1e-14). bfloat16: against the float32 reference on the upcast x, rounded to bfloat16
# (the kernel rounds once; the float32 values differ by ~1e-7, so a rounding lands on the other bfloat16 neighbour
# at most: one bfloat16 ulp, 2^-7 of a value at the bottom of its binade; 76 % used). ATen's bfloat16 composite,
# rounding after each of its five steps, misses this by up to 0.008 on 4 % of the elements (its 2σ(2b) - 1 cancels
# in bfloat16): it would fail here (check_bfloat16_is_rounded_once). cuda: the eager reference runs ATen's CUDA
# sigmoid (expf of CUDA's libm, 2 ulps) on the same device.
FWD_TOL = Tolerances({F32: tol(1e-6, 1e-6), F64: tol(1e-14, 1e-14), BF16: tol(2 ** -7, 1e-6)},
                     cuda={F32: tol(2e-6, 2e-6), F64: tol(1e-13, 1e-13)})
# Backward against the reference's autograd in x's dtype, with output gradients ~N(0, 1). The reference's sigmoid
# backward is ATen's out·(1 - out): 1 - out cancels where σ saturates, an absolute error of ~ulp(1)·|g| in each
# factor (the kernel's e/(1 + e)² does not cancel): over SHAPES the worst error is 1.1e-6 at |g| up to 4.5, 22 % of
# atol 5e-6 (rtol 2e-6). float64: the worst, 2.2e-15, uses 11 % of atol 2e-14. bfloat16: against the float32
# reference rounded, as the forward; the float32 reference's absolute error of ~1e-6 moves a rounding by one
# bfloat16 ulp at most (rtol; 89 % used), and where the exact value is below ~1e-6 the reference may say 0 (atol).
BWD_TOL = Tolerances({F32: tol(2e-6, 5e-6), F64: tol(1e-14, 2e-14), BF16: tol(2 ** -7, 1e-5)},
                     cuda={F32: tol(4e-6, 8e-6), F64: tol(1e-13, 1e-13)})
# A saturated unit's gradients against the closed forms g·tanh(b)·e/(1 + e)² (e = exp(-|a|)) and
# g·σ(a)·4e₂/(1 + e₂)² (e₂ = exp(-2|b|)) computed in Python floats: the kernel's formula has no cancellation, so the
# relative error is a few ulps of the dtype even at e = 1e-35 (measured 1.5e-7 in float32, 6e-16 in float64). The
# reference's out·(1 - out) is off by 0.1 % at a = 30 in float64 and gives 0 in float32. cuda: CUDA's expf is
# within 2 ulps (the CPU's SLEEF exp within 1).
SATURATED_TOL = Tolerances({F32: tol(1e-6, 0.0), F64: tol(1e-14, 0.0)}, cuda={F32: tol(2e-6, 0.0)})
# bfloat16 is computed in float32 and rounded once: the bfloat16 result is the float32 kernel's on the upcast input,
# rounded, bit for bit (the same float32 code on both devices).
BF16_ROUNDED_ONCE_TOL = EXACT
# CPU runner only: elements are split over threads; each element's arithmetic is the same whatever the thread.
THREADS_TOL = EXACT
# gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3) in float64.
GRADCHECK_SHAPES = [((3, 4, 5), 1), ((3, 4, 5), -2), ((4, 6), -1), ((6,), 0), ((2, 4, 3), 0)]


def inputs(shape, dtype, device="cpu", seed=0, scale=1.0) -> torch.Tensor:
    """x of ``shape``: N(0, scale²) drawn in float64 and converted (the same values whatever the dtype)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=F64) * scale).to(dtype).to(device)


def out_shape(shape, dim) -> tuple:
    sizes = list(shape)
    sizes[dim] //= 2
    return tuple(sizes)


def grads_like(shape, dtype, device="cpu", seed=1) -> torch.Tensor:
    """Output gradients ~N(0, 1) of ``shape``."""
    return inputs(shape, dtype, device, seed)


def layouts(shape, dtype, device="cpu", seed=0, scale=1.0) -> dict:
    """x of ``shape`` in each layout of LAYOUTS, the same values in each but the broadcast one (its own)."""
    dense = inputs(shape, dtype, device, seed, scale)
    rank = len(shape)
    wide = torch.zeros(*shape[:-1], 2 * shape[-1], dtype=dtype, device=device)
    wide[..., ::2] = dense
    offset = torch.full((*shape[:-1], shape[-1] + 3), float("nan"), dtype=dtype, device=device)
    offset[..., 2:2 + shape[-1]] = dense
    out = {
        "contiguous": dense,
        "transposed": dense.permute(*reversed(range(rank))).contiguous().permute(*reversed(range(rank))),
        "every-other": wide[..., ::2],
        "offset-slice": offset[..., 2:2 + shape[-1]],
        "broadcast": dense[:1].expand(shape) if shape[0] else dense,
    }
    return out


def unit(target: Target, x, dim):
    return ops.gated_tanh(x, dim, backend=target.backend)


def oracle(x, dim, target: Target | None = None):
    """The reference in x's dtype; for bfloat16, the float32 reference on the upcast x, rounded to bfloat16 (what
    the compiled kernels promise). On the eager backend, which *is* the composite, a bfloat16 x gets the bfloat16
    composite itself: it rounds after each step and is off by up to 0.008 (see FWD_TOL)."""
    if x.dtype == BF16 and not (target is not None and target.backend == "eager"):
        return ref.gated_tanh(x.float(), dim).to(BF16)
    return ref.gated_tanh(x, dim)


def oracle_grad(x, dim, grad, target: Target | None = None):
    """d/dx of (reference(x) · grad).sum(), by autograd of the reference (float32 for a bfloat16 x, rounded; the
    bfloat16 composite's own on the eager backend, as :func:`oracle`)."""
    upcast = x.dtype == BF16 and not (target is not None and target.backend == "eager")
    work = x.float() if upcast else x
    xr = work.detach().clone().requires_grad_(True)
    ref.gated_tanh(xr, dim).backward(grad.to(work.dtype))
    return xr.grad.to(x.dtype)


def unit_grad(target: Target, x, dim, grad):
    """d/dx through the op's autograd on ``target`` (the registered backward on the compiled backends)."""
    xg = x.detach().clone().requires_grad_(True)
    out = unit(target, xg, dim)
    assert out.requires_grad
    out.backward(grad)
    return xg.grad


def _compared(got: torch.Tensor, want: torch.Tensor, tolerance: dict, **kwargs) -> None:
    """close() of two results of one dtype and shape; bfloat16 ones compared as float64 (exact: every bfloat16 is a
    float64), so the bound |got - want| <= atol + rtol·|want| is evaluated without rounding."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    if got.dtype == BF16:
        got, want = got.double(), want.double()
    close(got, want, tolerance, **kwargs)


def check_not_implemented_says_so(target: Target):
    """A backend without a gated_tanh kernel says so (it is not hidden behind another)."""
    with pytest.raises(BackendUnavailableError, match=f"gated_tanh has no '{target.backend}' implementation"):
        unit(target, inputs((2, 4, 3), F32, target.dev), 1)


def check_matches_reference(target: Target, dtype, shape, dim, scale):
    """Forward and backward (through autograd) against the reference; the output is contiguous, x's dtype and
    device, x's shape with ``dim`` halved."""
    if target.backend not in IMPLEMENTED:
        return check_not_implemented_says_so(target)
    x = inputs(shape, dtype, target.dev, scale=scale)
    got = unit(target, x, dim)
    assert got.shape == out_shape(shape, dim), (got.shape, shape, dim)
    assert got.dtype == dtype and got.device == x.device and got.is_contiguous()
    _compared(got, oracle(x, dim, target), FWD_TOL(target, dtype))
    g = grads_like(got.shape, dtype, target.dev)
    grad = unit_grad(target, x, dim, g)
    assert grad.shape == x.shape and grad.dtype == dtype
    _compared(grad, oracle_grad(x, dim, g, target), BWD_TOL(target, dtype))


def check_any_input_layout(target: Target, layout, dtype, shape, dim):
    """Any layout of x gives the reference's result on x's contiguous copy, forward and backward; the
    gradient has x's shape."""
    x = layouts(shape, dtype, target.dev, seed=3, scale=3.0)[layout]
    if layout != "contiguous" and x.dim() > 1 and x.numel() > 1:
        assert not x.is_contiguous(), layout   # the layout is one the kernel must copy or read through
    got = unit(target, x, dim)
    # contiguous whatever x's layout on the compiled backends; the eager composite keeps x's memory order (the
    # CPU runner's test_eager_backend_output_is_contiguous)
    assert got.is_contiguous() or target.backend == "eager"
    _compared(got, oracle(x.contiguous(), dim, target), FWD_TOL(target, dtype))
    g = grads_like(got.shape, dtype, target.dev)
    grad = unit_grad(target, x, dim, g)
    assert grad.shape == x.shape
    _compared(grad, oracle_grad(x.contiguous(), dim, g, target), BWD_TOL(target, dtype))


def check_kernel_takes_any_strides(target: Target):
    """The registered ops themselves (no Python layer in front) take any strides of x and of grad: a transposed x,
    a stride-0 (expanded) grad, as ``out.sum().backward()`` hands the backward."""
    x = inputs((6, 8, 9), F32, target.dev, seed=4, scale=3.0)
    xt = x.transpose(0, 2).contiguous().transpose(0, 2)
    for dim in (1, -3):   # the two even dims, one of them counted from the end
        got = target.ops.gated_tanh(xt, dim)
        close(got, oracle(x, dim), FWD_TOL(target, F32))
        g = torch.tensor(0.75, device=target.dev).expand(out_shape(x.shape, dim))
        grad = target.ops.gated_tanh_backward(g, xt, dim)
        assert grad.shape == x.shape and grad.is_contiguous()
        close(grad, target.ops.gated_tanh_backward(g.contiguous(), x, dim), EXACT)
        close(grad, oracle_grad(x, dim, g.contiguous()), BWD_TOL(target, F32))


def _compiled_only(target: Target, why: str) -> None:
    if target.ops is None:
        pytest.skip(f"the eager backend is ATen's composite: {why}")


def check_backward_op_formula(target: Target, dtype):
    """gated_tanh_backward(grad, x, dim) against the closed forms in float64 (no autograd in between):
    [g·tanh(b)·s(1 - s), g·s·4s₂(1 - s₂)] with s = σ(a), s₂ = σ(2b), both halves in x's positions."""
    _compiled_only(target, "it has no backward op")
    x = inputs((5, 12, 7), dtype, target.dev, seed=6, scale=2.0)
    g = grads_like((5, 6, 7), dtype, target.dev)
    grad = target.ops.gated_tanh_backward(g, x, 1)
    a, b = x.double().chunk(2, 1)
    s, s2, gd = torch.sigmoid(a), torch.sigmoid(2 * b), g.double()
    want = torch.cat([gd * torch.tanh(b) * s * (1 - s), gd * s * 4 * s2 * (1 - s2)], 1)
    _compared(grad, want.to(dtype), BWD_TOL(target, dtype))


def check_bfloat16_is_rounded_once(target: Target, shape, dim):
    """bfloat16 in, the float32 kernel's result on the upcast input rounded once to bfloat16 out, forward and
    backward; and this is more than the bfloat16 composite (which rounds five times) can do: the tolerance of
    check_matches_reference would catch a kernel that computed in bfloat16."""
    _compiled_only(target, "in bfloat16 it rounds after each step")
    x = inputs(shape, BF16, target.dev, seed=7, scale=4.0)
    got = unit(target, x, dim)
    close(got, unit(target, x.float(), dim).to(BF16), BF16_ROUNDED_ONCE_TOL)
    g = grads_like(got.shape, BF16, target.dev)
    close(unit_grad(target, x, dim, g), unit_grad(target, x.float(), dim, g.float()).to(BF16),
          BF16_ROUNDED_ONCE_TOL)
    composite = ref.gated_tanh(x, dim)
    with pytest.raises(AssertionError):
        _compared(composite, oracle(x, dim), FWD_TOL(target, BF16))


def extreme_inputs(dtype, device="cpu"):
    """Finite inputs at every magnitude, a and b alike: 0, ±tiny, ±1e-30, ±1, ±30, ±1e4, ±(largest finite)."""
    big = torch.finfo(dtype).max
    vals = [0.0, -0.0, torch.finfo(dtype).tiny, 1e-30, 0.5, 1.0, 9.0, 17.0, 30.0, 88.0, 1e4, 1e30, big]
    vals = torch.tensor(vals + [-v for v in vals], dtype=F64).clamp(-big, big).to(dtype)
    a, b = torch.meshgrid(vals, vals, indexing="ij")
    return torch.cat([a.reshape(1, -1), b.reshape(1, -1)], 0).to(device)   # [2, n]: dim 0 splits a | b


def check_finite_input_never_gives_nan(target: Target, dtype):
    """Every pairing of magnitudes: the output and both gradients finite, |out| <= 1 and |∂/∂x| within the
    bounds |g|/4 and |g| (σ' <= 1/4, σ <= 1 and 4σ₂' <= 1); equal to the reference, which is finite here too."""
    x = extreme_inputs(dtype, target.dev)
    out = unit(target, x, 0)
    assert torch.isfinite(out).all() and (out.abs() <= 1).all()
    _compared(out, oracle(x, 0, target), FWD_TOL(target, dtype))
    g = torch.full(out.shape, -2.5, dtype=dtype, device=target.dev)
    grad = unit_grad(target, x, 0, g)
    assert torch.isfinite(grad).all()
    assert (grad[0].abs() <= 2.5 / 4).all() and (grad[1].abs() <= 2.5).all()
    _compared(grad, oracle_grad(x, 0, g, target), BWD_TOL(target, dtype))
    # at the saturated ends the unit is exactly its limit: σ(±big) ∈ {0, 1}, tanh(±big) = ±1
    a, b = x[0].double(), x[1].double()
    ends = (a.abs() >= 1e4) & (b.abs() >= 1e4)
    want = torch.where(a[ends] > 0, torch.sign(b[ends]), torch.zeros_like(b[ends]))
    assert torch.equal(out[0][ends].double(), want)


# (a, b) of saturated units, in float32's normal range: σ(a) or tanh(b) within e^-30 .. e^-80 of its limit.
SATURATED = [(30.0, 0.7), (-30.0, 20.0), (80.0, -20.0), (0.3, 40.0), (-17.0, -9.0), (25.0, 30.0)]


def check_saturated_units_keep_their_gradients(target: Target, dtype):
    """∂/∂a = g·tanh(b)·e/(1 + e)² with e = exp(-|a|) and ∂/∂b = g·σ(a)·4e₂/(1 + e₂)² with e₂ = exp(-2|b|), to
    a few ulps relative, where σ(a)(1 - σ(a)) computed as out·(1 - out) would cancel (to 0 in float32)."""
    _compiled_only(target, "its sigmoid backward computes out·(1 - out), which cancels here")
    a = torch.tensor([p[0] for p in SATURATED], dtype=dtype)
    b = torch.tensor([p[1] for p in SATURATED], dtype=dtype)
    g = torch.tensor([1.3, -0.4, 2.0, 0.9, -1.7, 1.1], dtype=dtype)
    x = torch.stack([a, b], 1).to(target.dev)   # [n, 2], dim 1: a row per unit
    want_a, want_b = [], []
    for (ai, bi), gi in zip(SATURATED, g.tolist()):
        e, e2 = math.exp(-abs(ai)), math.exp(-2 * abs(bi))
        s = 1 / (1 + e) if ai >= 0 else e / (1 + e)
        want_a.append(gi * math.tanh(bi) * e / (1 + e) ** 2)
        want_b.append(gi * s * 4 * e2 / (1 + e2) ** 2)
    want = torch.tensor([want_a, want_b], dtype=F64).t()
    grad = unit_grad(target, x, 1, g[:, None].to(target.dev))
    close(grad.double().cpu(), want, SATURATED_TOL(target, dtype))
    direct = target.ops.gated_tanh_backward(g[:, None].to(target.dev), x, 1)
    close(direct.double().cpu(), want, SATURATED_TOL(target, dtype))


def check_nan_and_inf_propagate(target: Target, dtype):
    """NaN in a or b makes that unit's output and both its gradients NaN, and nothing else; ±inf saturates
    (σ(±inf) ∈ {0, 1}, tanh(±inf) = ±1, zero gradient through the saturated sigmoid): the reference's NaN mask
    and values, forward and backward."""
    specials = [float("nan"), float("inf"), -float("inf"), 0.0, 2.0, -3.0]
    a, b = torch.meshgrid(torch.tensor(specials, dtype=F64), torch.tensor(specials, dtype=F64), indexing="ij")
    x = torch.cat([a.reshape(-1, 1), b.reshape(-1, 1)], 1)            # [36, 2]: every pairing, dim -1
    x = torch.cat([x, inputs((36, 2), F64, seed=9)], 0).to(dtype).to(target.dev)   # finite rows after them
    out = unit(target, x, -1)
    want = oracle(x, -1, target)
    nan = torch.isnan(x).any(1, keepdim=True)
    assert torch.equal(torch.isnan(out), nan) and torch.equal(torch.isnan(want), nan)
    assert not torch.isinf(out).any()
    _compared(out, want, FWD_TOL(target, dtype), equal_nan=True)
    g = grads_like(out.shape, dtype, target.dev)
    grad = unit_grad(target, x, -1, g)
    want_grad = oracle_grad(x, -1, g, target)
    assert torch.equal(torch.isnan(grad), nan.expand(-1, 2)) and torch.equal(torch.isnan(want_grad), nan.expand(-1, 2))
    _compared(grad, want_grad, BWD_TOL(target, dtype), equal_nan=True)
    inf_a = torch.isinf(x[:, 0]) & ~nan[:, 0]
    assert (grad[inf_a, 0] == 0).all()                                  # σ'(±inf) = 0
    inf_b = torch.isinf(x[:, 1]) & ~nan[:, 0]
    assert (grad[inf_b, 1] == 0).all()                                  # tanh'(±inf) = 0


def check_empty(target: Target):
    """Zero rows, zero columns, a zero-sized dim itself: empty outputs and gradients of the right shapes."""
    for dtype in DTYPES:
        for shape, dim in [((0, 6), 1), ((0, 10, 17), -2), ((5, 0), 1), ((3, 0, 7), 1), ((4, 6, 0), 1), ((0,), 0)]:
            x = torch.empty(shape, dtype=dtype, device=target.dev)
            out = unit(target, x, dim)
            assert out.shape == out_shape(shape, dim) and out.dtype == dtype
            grad = unit_grad(target, x, dim, torch.empty(out.shape, dtype=dtype, device=target.dev))
            assert grad.shape == shape


def check_gradcheck(target: Target, shape, dim):
    """float64 finite differences through the op's autograd (the backward op on the compiled backends), on a
    contiguous and on a transposed x."""
    x = inputs(shape, F64, target.dev, seed=11, scale=2.0)
    for xs in (x, x.permute(*reversed(range(x.dim()))).contiguous().permute(*reversed(range(x.dim())))):
        xs = xs.detach().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: unit(target, t, dim), (xs,))


def check_is_the_denoisers_gated_unit(target: Target):
    """The composite a residual layer writes, ``torch.sigmoid(a) * torch.tanh(b)`` on a ``[B, 2C, L]`` tensor
    split along channels, in float64, forward and backward (tanh evaluated as 2σ(2b) - 1 is the same function)."""
    x = inputs((4, 2 * 9, 25), F64, target.dev, seed=12, scale=2.0)
    g = grads_like((4, 9, 25), F64, target.dev)
    xr = x.clone().requires_grad_(True)
    a, b = xr.chunk(2, 1)
    want = torch.sigmoid(a) * torch.tanh(b)
    want.backward(g)
    got = unit(target, x, 1)
    close(got, want.detach(), FWD_TOL(target, F64))
    close(unit_grad(target, x, 1, g), xr.grad, BWD_TOL(target, F64))


def opcheck_samples(target: Target) -> dict:
    """Every dtype; dims positive and negative; a transposed x; an empty batch; inputs that require grad (the
    autograd registration); dense and expanded (stride 0) output gradients for the backward."""
    dev = target.dev
    fwd, bwd = [], []
    for dtype in DTYPES:
        x = inputs((3, 6, 5), dtype, dev, seed=2)
        xt = x.transpose(0, 2).contiguous().transpose(0, 2)
        for xs, dim in ((x, 1), (x, -2), (xt, 1), (x.reshape(3, 30), -1), (x[:0], 1)):
            fwd.append((xs.detach().clone().requires_grad_(True), dim))
            g = grads_like(out_shape(xs.shape, dim), dtype, dev)
            bwd.append((g, xs, dim))
        bwd.append((torch.ones((), dtype=dtype, device=dev).expand(3, 3, 5), x, 1))
    return {"gated_tanh": fwd, "gated_tanh_backward": bwd}


OPCHECK = ("gated_tanh", "gated_tanh_backward")


def check_captured_in_a_cuda_graph(target: Target, capture):
    """Forward and backward ops captured once (``capture``: gpu_support.captured) and replayed after the input
    changed in place: the replay's outputs are the eager calls' on the new input (the kernels run on the current
    stream and allocate nothing outside the graph's pool)."""
    _compiled_only(target, "it has no op of its own to capture")
    x = inputs((4, 2 * 24, 100), F32, target.dev, seed=13, scale=3.0)
    g = grads_like((4, 24, 100), F32, target.dev)
    replay = capture(lambda: (target.ops.gated_tanh(x, 1), target.ops.gated_tanh_backward(g, x, 1)))
    replay()
    x.copy_(inputs(x.shape, F32, target.dev, seed=14, scale=3.0))
    out, grad = replay()
    close(out, target.ops.gated_tanh(x, 1), EXACT)
    close(grad, target.ops.gated_tanh_backward(g, x, 1), EXACT)
    close(out, oracle(x, 1), FWD_TOL(target, F32))


def check_grad_on_another_device_is_refused(target: Target):
    """The backward op with grad on the CPU and x on the GPU: the CUDA kernel names grad and its device (the device
    contract of csrc/include/genad/host/checks.h), rather than reading host memory."""
    if not target.is_cuda or target.ops is None:
        pytest.skip("a CUDA kernel's device contract")
    x = inputs((4, 6), F32, target.dev)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh_backward: grad must be a CUDA tensor for the "
                                           r"CUDA kernel, got cpu"):
        target.ops.gated_tanh_backward(torch.zeros(4, 3), x, 1)
