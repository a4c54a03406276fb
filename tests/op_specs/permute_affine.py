"""Spec of ``permute_affine``: the input of a normalizing-flow step with a fixed permutation (Glow's ActNorm, then
the permutation, then the coupling's split), read from the previous step's two halves:

    x = [x_a, x_b] (columns),  v[:, j] = (x[:, p_j] + bias[p_j])·e_j,  e_j = exp(log_scale[p_j])
    out = (v[:, :split], v[:, split:]), each contiguous
    ∂/∂x[:, p_j] = g_j·e_j    ∂/∂bias[p_j] = Σ_rows g_j·e_j    ∂/∂log_scale[p_j] = Σ_rows g_j·v_j

x_a [N, Da], x_b [N, Db] float32 or float64 with unit stride on the last dimension (any row stride: column slices
of a wider matrix are read in place; Da or Db may be 0), D = Da + Db; bias, log_scale [D] of x_a's dtype (any
stride); perm [D] int64, a permutation of 0 .. D-1 (any stride); 0 <= split <= D. Differentiable in x_a, x_b, bias
and log_scale: the compiled backends register ``permute_affine_backward(grad_a, grad_b, v_a, v_b, log_scale, perm,
source_split=Da) -> (grad_x_a, grad_x_b, grad_bias, grad_log_scale)`` (its autograd kernel is C++, csrc/autograd.cpp:
an unused output's gradient is zeros, a broadcast one is copied; no second derivative); the eager backend is the
composite under autograd. No Triton kernel. Oracle: :func:`genad_fast.reference.permute_affine.permute_affine`.

The CPU kernel copies a row's two halves side by side into a buffer and gathers from it in vectors (float32: 8 or
16 lanes with AVX2 or AVX-512, float64: 4 or 8, a scalar tail after them); the backward ungathers through the
inverse permutation the same way and sums the columns in the dtype within fixed blocks of at least 64 rows (at most
1024 blocks: more rows a block past N = 65 536), then in double over the blocks in order. The cases below give
widths D of 1, 7, 17 and 33 (tails of every kind after 0, 1 and 2 registers), either half empty, split at 0, in the
middle and at D, one row, one block and a row either side of it, several blocks, more than 1024 blocks, no rows and
no columns.
"""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import permute_affine as ref
from op_specs.compare import EXACT, F32, F64, Tolerances, assert_terms_close, close
from op_specs.targets import LARGE, MEDIUM, Target, on_gpu, sized

OPS = ("permute_affine",)
IMPLEMENTED = ("eager", "cpu", "cuda")
DTYPES = (F32, F64)
# (N, Da, Db, split): D = 1 (either half the empty one, split at 0 and at D); D = 7 and 17 at 63 and 64 rows (one
# column-sum block short, and exactly one), split at 0 and at D; D = 33 at 65 rows (a block and a row); 300 rows (5
# blocks) with an empty half on either side; no rows; no columns; neither; 3000 rows of 37 (47 blocks, split over
# threads); 70 001 rows (over 1024 blocks: 69 rows a block, the last one short); FlowDetector's [256, 1544] in
# halves of 772; on a GPU, millions of elements.
SHAPES = [(1, 1, 0, 1), (1, 0, 1, 0), (1, 1, 0, 0), (63, 3, 4, 2), (63, 4, 3, 7), (64, 9, 8, 0), (64, 8, 9, 17),
          (65, 16, 17, 16), (65, 17, 16, 33), (300, 0, 33, 20), (300, 33, 0, 13), (300, 16, 17, 0), (0, 3, 4, 5),
          (5, 0, 0, 0), (0, 0, 0, 0),
          sized((3000, 20, 17, 11), MEDIUM), sized((70001, 2, 3, 2), MEDIUM), sized((256, 772, 772, 772), MEDIUM),
          sized(on_gpu((16384, 512, 512, 512), (2048, 40, 24, 32)), LARGE)]
# Layouts of the halves a caller hands over: each contiguous; the two halves of one [N, D] matrix (what a coupling
# that writes in place would give: row stride D); column windows of a wider NaN-padded matrix, at storage offsets;
# every other row (row stride 2·width); one row broadcast over N (row stride 0). And of bias, log_scale and perm:
# contiguous, or every other element of a longer vector.
LAYOUTS = ("contiguous", "halves-of-one", "offset-slices", "every-other-row", "row-broadcast")
PARAM_LAYOUTS = ("contiguous", "every-other")
# The scale of x ~ N(0, scale²) (bias ~ N(0, 1), log_scale ~ N(0, 0.5²)): 1, and 1e3.
SCALES = (1.0, 1e3)

# The forward is the reference's arithmetic, element for element: the same two roundings ((x + b), then the product
# with e) and ATen's exp of log_scale on the same device (the CPU kernel calls at::exp, the CUDA one too): bit for
# bit, in both dtypes, on every backend (cuda: not measured in this change; the same argument holds there).
FWD_TOL = Tolerances({F32: EXACT, F64: EXACT})
# ∂/∂x = g·e, one product: the reference's autograd forms the same product (index_select's backward adds g to zero,
# the product's backward multiplies by exp(log_scale)): bit for bit.
GRAD_X_TOL = Tolerances({F32: EXACT, F64: EXACT})
# ∂/∂bias and ∂/∂log_scale, sums of N terms g·e and g·v: bounded in units of eps·Σ_rows|term| (assert_terms_close).
# The CPU kernel sums in the dtype within blocks of >= 64 rows and the blocks in double; the reference takes ATen's
# cascade of g·e, and for log_scale Σ g·(x + b) times e afterwards (the product of exp's backward): different
# orders and one rounding more or less. Measured over SHAPES and SCALES: the worst 1.4 units in float32, 1.0 in
# float64 (0.95 and 0.8 over the layouts); 4 units (as bias_gelu's) leaves room for other draws. cuda (not measured
# in this change): ATen's double sums of g and g·v, then scaled: twice the CPU budget.
GRAD_SUM_ULPS = Tolerances({F32: dict(ulps=4.0), F64: dict(ulps=4.0)},
                           cuda={F32: dict(ulps=8.0), F64: dict(ulps=8.0)})
# The same sums where every term of a column has one sign and about one size (a gradient broadcast over the rows,
# as out.sum()'s backward hands it, times one e): the rounding errors of a running sum no longer cancel, and the
# CPU kernel's block sums (running sums of >= 64 rows in the dtype) err by up to (64 - 1)/2 units where ATen's
# cascade stays within a few. Measured against the reference at N = 64 .. 4096: 5.4 to 9.9 units in float32, 5.6
# to 14.1 in float64 (there the blocks' partial sums are added in float64 too: a running sum of up to 1024 of them,
# 120 units at N = 70 001); the checks that use this table have N <= 90 (the worst there: 6.7 units, float32).
# cuda: ATen's double sums, within a few.
GRAD_SUM_SAME_SIGN_ULPS = Tolerances({F32: dict(ulps=16.0), F64: dict(ulps=16.0)})
# CPU runner only: rows are split over threads, each element's arithmetic is the same whatever the thread, and the
# column sums' blocks depend on N only: 1 and 2 threads give the same bits.
THREADS_TOL = EXACT
# gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3) in float64: (N, Da, Db, split), the last on strided halves.
GRADCHECK_CASES = [(3, 2, 3, 2), (4, 0, 5, 5), (5, 4, 0, 0), (2, 1, 1, 1), (6, 3, 4, 7)]


def inputs(case, dtype, device="cpu", seed=0, scale=1.0):
    """(x_a, x_b, bias, log_scale, perm) of ``case`` (N, Da, Db, split): x ~ N(0, scale²), bias ~ N(0, 1),
    log_scale ~ N(0, 0.5²) drawn in float64 and converted (the same values whatever the dtype), perm a uniformly
    random permutation."""
    N, Da, Db = case[:3]
    g = torch.Generator().manual_seed(seed)
    x_a = torch.randn(N, Da, generator=g, dtype=F64) * scale
    x_b = torch.randn(N, Db, generator=g, dtype=F64) * scale
    bias = torch.randn(Da + Db, generator=g, dtype=F64)
    log_scale = torch.randn(Da + Db, generator=g, dtype=F64) * 0.5
    perm = torch.randperm(Da + Db, generator=g)
    return (*(t.to(dtype).to(device) for t in (x_a, x_b, bias, log_scale)), perm.to(device))


def grads_like(case, dtype, device="cpu", seed=1):
    """Output gradients (g_a [N, split], g_b [N, D - split]) ~N(0, 1)."""
    N, Da, Db, split = case
    g = torch.Generator().manual_seed(seed)
    ga = torch.randn(N, split, generator=g, dtype=F64)
    gb = torch.randn(N, Da + Db - split, generator=g, dtype=F64)
    return ga.to(dtype).to(device), gb.to(dtype).to(device)


def layouts(case, dtype, device="cpu", seed=0, scale=1.0) -> dict:
    """(x_a, x_b) in each layout of LAYOUTS, the same values in each but the broadcast one (its first row)."""
    x_a, x_b = inputs(case, dtype, device, seed, scale)[:2]
    N, Da, Db = case[:3]
    one = torch.cat([x_a, x_b], 1).contiguous()
    wide = torch.full((N, Da + Db + 5), float("nan"), dtype=dtype, device=device)
    wide[:, 1:1 + Da] = x_a
    wide[:, 3 + Da:3 + Da + Db] = x_b
    rows_a = torch.full((2 * N, Da), float("nan"), dtype=dtype, device=device)
    rows_b = torch.full((2 * N, Db), float("nan"), dtype=dtype, device=device)
    rows_a[::2], rows_b[::2] = x_a, x_b
    return {
        "contiguous": (x_a, x_b),
        "halves-of-one": (one[:, :Da], one[:, Da:]),
        "offset-slices": (wide[:, 1:1 + Da], wide[:, 3 + Da:3 + Da + Db]),
        "every-other-row": (rows_a[::2], rows_b[::2]),
        "row-broadcast": (x_a[:1].expand(N, Da), x_b[:1].expand(N, Db)) if N else (x_a, x_b),
    }


def every_other(t: torch.Tensor) -> torch.Tensor:
    """``t`` (1-D) as every other element of a longer vector (stride 2), the gaps holding garbage."""
    fill = -7 if t.dtype == torch.int64 else float("nan")
    wide = torch.full((2 * t.shape[0] + 1,), fill, dtype=t.dtype, device=t.device)
    wide[1::2] = t
    return wide[1::2]


def unit(target: Target, x_a, x_b, bias, log_scale, perm, split):
    return ops.permute_affine(x_a, x_b, bias, log_scale, perm, split, backend=target.backend)


def oracle(x_a, x_b, bias, log_scale, perm, split):
    """The reference in x_a's dtype."""
    return ref.permute_affine(x_a, x_b, bias, log_scale, perm, split)


def _leaves(*ts):
    """Leaves that keep each tensor's own layout (detach keeps the strides, where clone would make a column slice or
    a broadcast layout contiguous): the backward sees them as the forward did."""
    return [t.detach().requires_grad_(True) for t in ts]


def oracle_grads(x_a, x_b, bias, log_scale, perm, split, grads):
    """(∂/∂x_a, ∂/∂x_b, ∂/∂bias, ∂/∂log_scale) of Σ reference·grads, by autograd of the reference."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x_a, x_b, bias, log_scale)]
    outs = ref.permute_affine(*leaves, perm, split)
    torch.autograd.backward(outs, list(grads))
    return tuple(t.grad for t in leaves)


def unit_grads(target: Target, x_a, x_b, bias, log_scale, perm, split, grads):
    """The four gradients through the op's autograd on ``target`` (the registered backward on the compiled
    backends)."""
    leaves = _leaves(x_a, x_b, bias, log_scale)
    outs = unit(target, *leaves, perm, split)
    assert all(o.requires_grad for o in outs)
    torch.autograd.backward(outs, list(grads))
    return tuple(t.grad for t in leaves)


def sum_scales(x_a, x_b, bias, log_scale, perm, grads):
    """(Σ_rows |g·e|, Σ_rows |g·v|) per source column, in float64: the units of GRAD_SUM_ULPS for ∂/∂bias and
    ∂/∂log_scale (g, e and v in output order, scattered back through perm)."""
    x = torch.cat([x_a, x_b], 1).double()
    e = torch.exp(log_scale.double())
    g = torch.cat(list(grads), 1).double()
    v = ((x + bias.double()) * e).index_select(1, perm)
    sb, ss = torch.empty_like(e), torch.empty_like(e)
    sb[perm] = (g.abs() * e[perm]).sum(0)
    ss[perm] = (g * v).abs().sum(0)
    return sb, ss


def check_sums(target: Target, got, want, x_a, x_b, bias, log_scale, perm, grads, ulps=GRAD_SUM_ULPS):
    """∂/∂bias and ∂/∂log_scale (got[2:], want[2:]) within ``ulps`` (GRAD_SUM_ULPS, or GRAD_SUM_SAME_SIGN_ULPS for
    a gradient broadcast over the rows) units of eps·Σ_rows|term|; bias's shape and dtype."""
    sb, ss = sum_scales(x_a, x_b, bias, log_scale, perm, grads)
    for name, gt, wt, s in (("bias", got[2], want[2], sb), ("log_scale", got[3], want[3], ss)):
        assert gt.shape == bias.shape and gt.dtype == bias.dtype, (name, gt.shape, gt.dtype)
        assert_terms_close(gt, wt, s.to(gt.device), **ulps(target, gt.dtype))


def check_grads(target: Target, got, want, x_a, x_b, bias, log_scale, perm, grads, equal_nan=False,
                ulps=GRAD_SUM_ULPS):
    """The four gradients against the reference's: ∂/∂x by GRAD_X_TOL (x_a's and x_b's shapes, contiguous), the
    column sums by :func:`check_sums`."""
    dtype = x_a.dtype
    for gt, wt, x in zip(got[:2], want[:2], (x_a, x_b)):
        assert gt.shape == x.shape and gt.dtype == dtype and gt.is_contiguous()
        close(gt, wt, GRAD_X_TOL(target, dtype), equal_nan=equal_nan)
    check_sums(target, got, want, x_a, x_b, bias, log_scale, perm, grads, ulps)


def check_outputs(target: Target, got, want, case, dtype, device, equal_nan=False):
    """(v_a, v_b): contiguous [N, split] and [N, D - split] of dtype on device, the reference's by FWD_TOL."""
    N, Da, Db, split = case
    assert isinstance(got, tuple) and len(got) == 2
    for o, w, width in zip(got, want, (split, Da + Db - split)):
        assert o.shape == (N, width) and o.dtype == dtype and o.device == device and o.is_contiguous(), \
            (o.shape, o.dtype, o.stride())
        close(o, w, FWD_TOL(target, dtype), equal_nan=equal_nan)


def check_not_implemented_says_so(target: Target):
    """A backend without a permute_affine kernel says so (it is not hidden behind another)."""
    with pytest.raises(BackendUnavailableError, match=f"permute_affine has no '{target.backend}' implementation"):
        unit(target, *inputs((3, 2, 3, 2), F32, target.dev), 2)


def check_matches_reference(target: Target, dtype, case, scale):
    """Forward and all four gradients (through autograd) against the reference."""
    if target.backend not in IMPLEMENTED:
        return check_not_implemented_says_so(target)
    args = inputs(case, dtype, target.dev, scale=scale)
    split = case[3]
    got = unit(target, *args, split)
    check_outputs(target, got, oracle(*args, split), case, dtype, target.dev)
    g = grads_like(case, dtype, target.dev)
    check_grads(target, unit_grads(target, *args, split, g), oracle_grads(*args, split, g), *args, g)


def check_any_input_layout(target: Target, layout, param_layout, dtype, case):
    """Any layout of the halves (row strides, storage offsets, a broadcast row) and of bias, log_scale and perm
    gives the reference's result on contiguous copies, forward and backward; the outputs and ∂/∂x are contiguous
    (the eager backend's too: the wrapper makes them so)."""
    x_a, x_b = layouts(case, dtype, target.dev, seed=3, scale=3.0)[layout]
    _, _, bias, log_scale, perm = inputs(case, dtype, target.dev, seed=4)
    if param_layout == "every-other":
        bias, log_scale, perm = every_other(bias), every_other(log_scale), every_other(perm)
        assert bias.stride() == log_scale.stride() == perm.stride() == (2,)
    split = case[3]
    dense = (x_a.contiguous(), x_b.contiguous(), bias.contiguous(), log_scale.contiguous(), perm.contiguous())
    got = unit(target, x_a, x_b, bias, log_scale, perm, split)
    check_outputs(target, got, oracle(*dense, split), case, dtype, target.dev)
    g = grads_like(case, dtype, target.dev)
    got_grads = unit_grads(target, x_a, x_b, bias, log_scale, perm, split, g)
    check_grads(target, got_grads, oracle_grads(*dense, split, g), *dense, g)


def _compiled_only(target: Target, why: str) -> None:
    if target.ops is None:
        pytest.skip(f"the eager backend is ATen's composite: {why}")


def check_kernel_takes_any_strides(target: Target):
    """The registered ops themselves (no Python layer in front) take halves with any row stride, and bias,
    log_scale and perm with any stride; the backward takes gradients and outputs with any row stride (a row
    broadcast over N: stride 0); the results are the contiguous inputs' bit for bit."""
    _compiled_only(target, "it has no registered op")
    case = (70, 9, 8, 5)
    x_a, x_b = layouts(case, F32, target.dev, seed=4, scale=2.0)["offset-slices"]
    _, _, bias, log_scale, perm = inputs(case, F32, target.dev, seed=5)
    bs, ls, ps = every_other(bias), every_other(log_scale), every_other(perm)
    assert x_a.stride() == x_b.stride() == (22, 1)
    got = target.ops.permute_affine(x_a, x_b, bs, ls, ps, 5)
    want = target.ops.permute_affine(x_a.contiguous(), x_b.contiguous(), bias, log_scale, perm, 5)
    for o, w in zip(got, want):
        assert o.is_contiguous()
        close(o, w, EXACT)
    dense = (x_a.contiguous(), x_b.contiguous(), bias, log_scale, perm)
    close(got, oracle(*dense, 5), FWD_TOL(target, F32))
    # gradients of one row each, broadcast over the N rows (as out.sum(0)'s backward hands them); v_a, v_b as column
    # windows of a wider matrix
    ga, gb = (t[:1].expand(70, t.shape[1]) for t in grads_like(case, F32, target.dev))
    wide = torch.full((70, 20), float("nan"), device=target.dev)
    wide[:, 1:6], wide[:, 8:20] = got
    back = target.ops.permute_affine_backward(ga, gb, wide[:, 1:6], wide[:, 8:20], ls, ps, 9)
    want_back = target.ops.permute_affine_backward(ga.contiguous(), gb.contiguous(), *got, log_scale, perm, 9)
    for b, w in zip(back, want_back):
        assert b.is_contiguous()
        close(b, w, EXACT)
    g = (ga.contiguous(), gb.contiguous())
    check_grads(target, back, oracle_grads(*dense, 5, g), *dense, g, ulps=GRAD_SUM_SAME_SIGN_ULPS)


def check_backward_op_formula(target: Target, dtype):
    """permute_affine_backward(grad_a, grad_b, v_a, v_b, log_scale, perm, Da) against the closed forms in float64
    (no autograd in between): ∂/∂x[:, p_j] = g_j·e_j (one product: bit for bit), ∂/∂bias[p_j] = Σ g_j·e_j and
    ∂/∂log_scale[p_j] = Σ g_j·v_j (the sums exact in float64, within GRAD_SUM_ULPS of them)."""
    _compiled_only(target, "it has no backward op")
    case = (130, 11, 8, 6)
    x_a, x_b, bias, log_scale, perm = inputs(case, dtype, target.dev, seed=6, scale=2.0)
    v_a, v_b = target.ops.permute_affine(x_a, x_b, bias, log_scale, perm, 6)
    g_a, g_b = grads_like(case, dtype, target.dev)
    gx_a, gx_b, gbias, glog = target.ops.permute_affine_backward(g_a, g_b, v_a, v_b, log_scale, perm, 11)
    e = torch.exp(log_scale).double()          # ATen's exp in the dtype, as the kernel's
    g = torch.cat([g_a, g_b], 1).double()
    v = torch.cat([v_a, v_b], 1).double()
    want_x = torch.empty_like(g)
    want_x[:, perm] = g * e[perm]
    close(torch.cat([gx_a, gx_b], 1), want_x.to(dtype), GRAD_X_TOL(target, dtype))
    want_b, want_s = torch.empty_like(e), torch.empty_like(e)
    want_b[perm] = (g * e[perm]).sum(0)
    want_s[perm] = (g * v).sum(0)
    sb, ss = torch.empty_like(e), torch.empty_like(e)
    sb[perm] = (g * e[perm]).abs().sum(0)
    ss[perm] = (g * v).abs().sum(0)
    assert_terms_close(gbias, want_b.to(dtype), sb, **GRAD_SUM_ULPS(target, dtype))
    assert_terms_close(glog, want_s.to(dtype), ss, **GRAD_SUM_ULPS(target, dtype))


def check_one_output_unused(target: Target, unused):
    """A loss of one output only ("a" or "b"): the other's gradient is None, taken as zeros (∂/∂x zero in its
    columns, its columns of the sums zero); the same gradients as the reference's."""
    case = (67, 5, 12, 9)
    args = inputs(case, F64, target.dev, seed=7)
    g = list(grads_like(case, F64, target.dev))
    keep = 1 if unused == "a" else 0
    leaves = _leaves(*args[:4])
    outs = unit(target, *leaves, args[4], 9)
    (outs[keep] * g[keep]).sum().backward()
    got = tuple(t.grad for t in leaves)
    g[1 - keep] = torch.zeros_like(g[1 - keep])
    want = oracle_grads(*args, 9, g)
    check_grads(target, got, want, *args, g)
    # the unused output's source columns get nothing at all
    cols = args[4][:9] if unused == "a" else args[4][9:]
    assert (got[2][cols] == 0).all() and (got[3][cols] == 0).all()
    gx = torch.cat(got[:2], 1)
    assert (gx[:, cols] == 0).all() and (gx.abs().sum(0) > 0).sum() == 17 - cols.numel()


def check_broadcast_gradient(target: Target):
    """``v_a.sum() + 2·v_b.sum()``: the outputs' gradients arrive broadcast (stride 0 in both dimensions); the
    gradients are the reference's."""
    case = (90, 7, 10, 4)
    args = inputs(case, F32, target.dev, seed=8, scale=2.0)
    leaves = _leaves(*args[:4])
    v_a, v_b = unit(target, *leaves, args[4], 4)
    (v_a.sum() + 2 * v_b.sum()).backward()
    g = (torch.ones(90, 4, device=target.dev), torch.full((90, 13), 2.0, device=target.dev))
    check_grads(target, tuple(t.grad for t in leaves), oracle_grads(*args, 4, g), *args, g,
                ulps=GRAD_SUM_SAME_SIGN_ULPS)


def check_transposed_gradient(target: Target):
    """A loss that reads an output through a transpose: its gradient arrives with a column stride (copied by the
    autograd kernel before the backward op, which takes unit stride only); the gradients are the reference's."""
    case = (33, 6, 9, 8)
    args = inputs(case, F64, target.dev, seed=9)
    gen = torch.Generator().manual_seed(9)
    w, w_b = (torch.randn(shape, generator=gen, dtype=F64).to(target.dev) for shape in ((8, 33), (33, 7)))
    leaves = _leaves(*args[:4])
    v_a, v_b = unit(target, *leaves, args[4], 8)
    ((v_a.t() * w).sum() + (v_b * w_b).sum()).backward()
    g = (w.t(), w_b)
    check_grads(target, tuple(t.grad for t in leaves), oracle_grads(*args, 8, g), *args, g)


def check_nan_and_inf_propagate(target: Target, dtype):
    """No clamping: NaN and ±inf in x and bias, log_scale = -inf (e = 0) and a log_scale whose exp overflows (e =
    inf) go through the affine map as IEEE arithmetic says, in the reference's places and values (NaN where
    x + b is NaN or where 0·inf meets), forward and backward; ∂/∂x is finite wherever e is."""
    case = (70, 6, 7, 5)
    x_a, x_b, bias, log_scale, perm = inputs(case, dtype, target.dev, seed=10, scale=2.0)
    nan, inf = float("nan"), float("inf")
    x_a[3, 1], x_a[10, 4], x_b[20, 0], x_b[5, 6], x_b[69, 2] = nan, inf, -inf, nan, inf
    bias[2], bias[9] = nan, -inf
    big = 100.0 if dtype == F32 else 1000.0                  # exp overflows to inf
    log_scale[5], log_scale[11] = -inf, big
    x_b[7, 11 - 6] = -bias[11]                               # x + b = 0 at e = inf: 0·inf = NaN
    args = (x_a, x_b, bias, log_scale, perm)
    got = unit(target, *args, 5)
    want = oracle(*args, 5)
    check_outputs(target, got, want, case, dtype, target.dev, equal_nan=True)
    x = torch.cat([x_a, x_b], 1).double()
    e = torch.exp(log_scale)                                 # in the dtype: inf where it overflows there
    truth = ((x + bias.double()) * e.double()).index_select(1, perm)
    v = torch.cat(got, 1)
    assert torch.equal(torch.isnan(v), torch.isnan(truth)) and torch.isnan(v).sum() > 70
    assert torch.equal(torch.isinf(v), torch.isinf(truth)) and torch.isinf(v).sum() > 70
    assert torch.equal(v[torch.isinf(v)], truth[torch.isinf(truth)].to(dtype))   # infinities kept, signs too
    g = grads_like(case, dtype, target.dev)
    got_g = unit_grads(target, *args, 5, g)
    want_g = oracle_grads(*args, 5, g)
    for gt, wt in zip(got_g[:2], want_g[:2]):
        close(gt, wt, GRAD_X_TOL(target, dtype), equal_nan=True)
    sb, ss = sum_scales(*args, g)
    assert_terms_close(got_g[2], want_g[2], sb, **GRAD_SUM_ULPS(target, dtype))
    # ∂/∂log_scale where e = inf: a sum of ±inf terms g·v here (NaN), (Σ g·(x + b))·inf in the reference (±inf);
    # both non-finite, and the same everywhere else
    keep = torch.ones(13, dtype=torch.bool, device=target.dev)
    keep[11] = False
    assert_terms_close(got_g[3][keep], want_g[3][keep], ss[keep], **GRAD_SUM_ULPS(target, dtype))
    assert not torch.isfinite(got_g[3][11]) and not torch.isfinite(want_g[3][11])
    gx = torch.cat(got_g[:2], 1)
    finite_e = torch.isfinite(e)
    assert torch.isfinite(gx[:, finite_e]).all() and (gx[:, ~finite_e].abs() == inf).any()
    assert torch.isfinite(got_g[2][finite_e & ~torch.isnan(bias)]).all()
    assert torch.isnan(got_g[3][[1, 2]]).all() and got_g[3][5] == 0         # NaN in x and in bias; e = 0


def check_empty(target: Target):
    """No rows (the column sums all zeros, not left uninitialised), no columns, either half or output empty:
    outputs and gradients of the right shapes and dtypes, for dense output gradients and for those of ``sum()``
    (empty and broadcast: strides (0, 0), which torch calls contiguous)."""
    for dtype in DTYPES:
        for case in [(0, 3, 4, 2), (0, 0, 5, 0), (0, 5, 0, 5), (4, 0, 0, 0), (0, 0, 0, 0), (3, 0, 6, 6),
                     (3, 6, 0, 0)]:
            N, Da, Db, split = case
            args = inputs(case, dtype, target.dev)
            outs = unit(target, *args, split)
            assert [o.shape for o in outs] == [(N, split), (N, Da + Db - split)]
            assert all(o.dtype == dtype and o.is_contiguous() for o in outs)
            got = unit_grads(target, *args, split, grads_like(case, dtype, target.dev))
            assert [t.shape for t in got] == [(N, Da), (N, Db), (Da + Db,), (Da + Db,)]
            assert all(t.dtype == dtype for t in got)
            if N == 0:
                assert torch.equal(got[2], torch.zeros_like(got[2])) and torch.equal(got[3], torch.zeros_like(got[3]))
            leaves = _leaves(*args[:4])
            v_a, v_b = unit(target, *leaves, args[4], split)
            (v_a.sum() + v_b.sum()).backward()
            assert [t.grad.shape for t in leaves] == [(N, Da), (N, Db), (Da + Db,), (Da + Db,)]
            if N == 0:
                assert not leaves[2].grad.any() and not leaves[3].grad.any()


def check_gradcheck(target: Target, case):
    """float64 finite differences through the op's autograd (the backward op on the compiled backends) in x_a,
    x_b, bias and log_scale together, both outputs; the last case on column windows of one wider matrix and a
    strided bias."""
    x_a, x_b, bias, log_scale, perm = inputs(case, F64, target.dev, seed=11)
    if case == GRADCHECK_CASES[-1]:
        x_a, x_b = layouts(case, F64, target.dev, seed=11)["offset-slices"]
        bias = every_other(bias)
    leaves = _leaves(x_a, x_b, bias, log_scale)
    assert torch.autograd.gradcheck(lambda a, b, c, d: unit(target, a, b, c, d, perm, case[3]), tuple(leaves))


def check_is_actnorm_then_permutation(target: Target):
    """What the flow's modules compute on the concatenated halves, ``Permutation(ActNorm([x_a, x_b]))`` split at
    d (genad_fast.nn.flow.realnvp), in float32: the same outputs bit for bit, and the same gradients of the halves,
    of ActNorm's bias and of its log_scale (the sums to GRAD_SUM_ULPS)."""
    from genad_fast.nn.flow.realnvp import ActNorm, Permutation

    case = (80, 10, 14, 12)
    g = torch.Generator().manual_seed(12)
    actnorm, permutation = ActNorm(24), Permutation(24, generator=g)
    with torch.no_grad():
        actnorm.bias.copy_(torch.randn(24, generator=g))
        actnorm.log_scale.copy_(torch.randn(24, generator=g) * 0.5)
        actnorm.initialized.fill_(True)
    actnorm, permutation = actnorm.to(target.dev), permutation.to(target.dev)
    x_a, x_b = inputs(case, F32, target.dev, seed=13, scale=2.0)[:2]
    grads = grads_like(case, F32, target.dev)
    xm = torch.cat([x_a, x_b], 1).requires_grad_(True)
    y, _ = permutation(actnorm(xm)[0])
    want = (y[:, :12], y[:, 12:])
    torch.autograd.backward(list(want), list(grads))
    want_grads = (xm.grad[:, :10], xm.grad[:, 10:], actnorm.bias.grad.clone(), actnorm.log_scale.grad.clone())
    actnorm.zero_grad()
    leaves = _leaves(x_a, x_b)
    got = unit(target, *leaves, actnorm.bias, actnorm.log_scale, permutation.perm, 12)
    check_outputs(target, got, tuple(w.detach() for w in want), case, F32, target.dev)
    torch.autograd.backward(list(got), list(grads))
    got_grads = (leaves[0].grad, leaves[1].grad, actnorm.bias.grad, actnorm.log_scale.grad)
    params = (x_a, x_b, actnorm.bias.detach(), actnorm.log_scale.detach(), permutation.perm)
    check_grads(target, got_grads, want_grads, *params, grads)


def opcheck_samples(target: Target) -> dict:
    """Both dtypes; contiguous halves and the halves of one matrix (row strides); an empty half and an empty output
    (split 0, split D); one column; no rows; strided bias, log_scale and perm; inputs that require grad (the C++
    autograd registration); dense and row-broadcast (row stride 0) output gradients for the backward."""
    dev = target.dev
    fwd, bwd = [], []
    for dtype in DTYPES:
        for case, layout in (((6, 4, 5, 3), "contiguous"), ((6, 4, 5, 7), "halves-of-one"),
                             ((5, 0, 7, 0), "contiguous"), ((5, 7, 0, 7), "contiguous"), ((3, 1, 0, 1), "contiguous"),
                             ((0, 3, 4, 2), "contiguous")):
            x_a, x_b = layouts(case, dtype, dev, seed=2)[layout]
            _, _, bias, log_scale, perm = inputs(case, dtype, dev, seed=2)
            split, Da = case[3], case[1]
            fwd.append((*_leaves(x_a, x_b, bias, log_scale), perm, split))
            v_a, v_b = ref.permute_affine(x_a, x_b, bias, log_scale, perm, split)
            bwd.append((*grads_like(case, dtype, dev), v_a.contiguous(), v_b.contiguous(), log_scale, perm, Da))
        case = (6, 4, 5, 3)
        x_a, x_b, bias, log_scale, perm = inputs(case, dtype, dev, seed=3)
        fwd.append((x_a, x_b, every_other(bias), every_other(log_scale), every_other(perm), 3))
        v_a, v_b = ref.permute_affine(x_a, x_b, bias, log_scale, perm, 3)
        ga, gb = (t[:1].expand_as(t) for t in grads_like(case, dtype, dev))
        bwd.append((ga, gb, v_a.contiguous(), v_b.contiguous(), log_scale, perm, 4))
    return {"permute_affine": fwd, "permute_affine_backward": bwd}


OPCHECK = ("permute_affine", "permute_affine_backward")


def check_captured_in_a_cuda_graph(target: Target, capture):
    """Forward and backward ops captured once (``capture``: gpu_support.captured) and replayed after the inputs
    changed in place: the replay's outputs are the eager calls' on the new inputs (the kernels run on the current
    stream, and the column sums allocate nothing outside the graph's pool)."""
    _compiled_only(target, "it has no op of its own to capture")
    case = (256, 96, 96, 96)
    x_a, x_b, bias, log_scale, perm = inputs(case, F32, target.dev, seed=13, scale=3.0)
    g_a, g_b = grads_like(case, F32, target.dev)

    def step():
        v_a, v_b = target.ops.permute_affine(x_a, x_b, bias, log_scale, perm, 96)
        return (v_a, v_b, *target.ops.permute_affine_backward(g_a, g_b, v_a, v_b, log_scale, perm, 96))

    replay = capture(step)
    replay()
    new = inputs(case, F32, target.dev, seed=14, scale=3.0)
    for t, n in zip((x_a, x_b, bias, log_scale), new):
        t.copy_(n)
    got = replay()
    for a, b in zip(got, step()):
        close(a, b, EXACT)
    close(got[:2], oracle(x_a, x_b, bias, log_scale, perm, 96), FWD_TOL(target, F32))


def check_other_device_is_refused(target: Target):
    """The ops with an argument on the CPU and x_a on the GPU: the CUDA kernel names the argument and its device
    (the device contract of csrc/include/genad/host/checks.h), rather than reading host memory; the Python layer
    names it too."""
    if not target.is_cuda or target.ops is None:
        pytest.skip("a CUDA kernel's device contract")
    x_a, x_b, bias, log_scale, perm = inputs((4, 2, 3, 2), F32, target.dev)
    with pytest.raises(RuntimeError, match=r"genad_fast::permute_affine: bias must be a CUDA tensor for the CUDA "
                                           r"kernel, got cpu"):
        target.ops.permute_affine(x_a, x_b, bias.cpu(), log_scale, perm, 2)
    with pytest.raises(RuntimeError, match=r"genad_fast::permute_affine: perm must be a CUDA tensor for the CUDA "
                                           r"kernel, got cpu"):
        target.ops.permute_affine(x_a, x_b, bias, log_scale, perm.cpu(), 2)
    v_a, v_b = target.ops.permute_affine(x_a, x_b, bias, log_scale, perm, 2)
    with pytest.raises(RuntimeError, match=r"genad_fast::permute_affine_backward: grad_a must be a CUDA tensor for "
                                           r"the CUDA kernel, got cpu"):
        target.ops.permute_affine_backward(torch.zeros(4, 2), v_b, v_a, v_b, log_scale, perm, 2)
    with pytest.raises(ValueError, match=r"log_scale is on cpu, x_a on cuda:\d: pass tensors on one device"):
        unit(target, x_a, x_b, bias, log_scale.cpu(), perm, 2)
