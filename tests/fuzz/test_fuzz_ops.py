"""Property-based fuzzing of the fused ops against their eager twins (``genad_fast.reference``).

Random shapes (empty, one row, odd widths), layouts (row strides, column slices, batch views), float32 and
float64, constant and near-constant columns, magnitudes from 1e-30 to 1e30, and NaN/±inf at random places.
Invariants: the cpu backend equals eager within the op tests' error budget, scaled to the data's magnitude;
NaN appears exactly where the reference has it; nothing crashes. Budgets follow the Hypothesis profile
(``ci`` by default; ``--hypothesis-profile long`` for an hour-long run).
"""
from __future__ import annotations

import math
import numpy as np
import pytest
import torch
from fuzz_strategies import DTYPES, MAGNITUDES, assert_nan_where, examples, layouts, matrices
from hypothesis import given
from hypothesis import strategies as st

import genad_fast
from genad_fast import ops
from genad_fast.reference import anogan as ref_anogan
from genad_fast.reference import conv as ref_conv
from genad_fast.reference import coupling as ref_coupling
from genad_fast.reference import diffusion as ref_diffusion
from genad_fast.reference import distance as ref_distance
from genad_fast.reference import linear as ref_linear
from op_specs import bias_gelu as gelu_spec
from op_specs import gated_tanh as gated_spec
from op_specs import permute_affine as permute_spec
from op_specs.compare import assert_terms_close
from op_specs.targets import Target

_CPU = next((b for b in genad_fast.backends() if b.name == "cpu"), None)
pytestmark = [pytest.mark.fuzz,
              pytest.mark.skipif(_CPU is None or not _CPU.available,
                                 reason=f"the cpu backend is not available ({getattr(_CPU, 'reason', 'unknown')})")]


#: Relative error budget of a fused float32/float64 result against the eager one (the op tests' values).
RTOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def _matches(a: torch.Tensor, b: torch.Tensor, atol: float, r: float) -> torch.Tensor:
    """Elementwise: both NaN, equal (infinities included), or finite and within ``atol + r |b|``."""
    both = torch.isfinite(a) & torch.isfinite(b)
    near = torch.zeros_like(both)
    near[both] = (a[both] - b[both]).abs() <= atol + r * b[both].abs()
    return (torch.isnan(a) & torch.isnan(b)) | (a == b) | near


def assert_budget(got: torch.Tensor, want: torch.Tensor, scale: float, what: str,
                  truth: torch.Tensor | None = None, atol_floor: float = 0.0) -> None:
    """Equal to eager within RTOL relative to each value and to ``scale`` (the size of the terms that were
    summed), infinities and NaN in the same places. Where they differ, ``truth`` (the reference on the
    float64-upcast inputs) decides, as in flash-attention's tests: the fused value is fine when it is within
    the budget of the float64 value, or at most twice as far from it as the eager one (the eager float32
    reference underflows or overflows in places where a fused kernel, accumulating wider, does not)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    r = RTOL[want.dtype]
    atol = max(r * max(scale, 1e-30), atol_floor)
    ok = _matches(got, want, atol, r)
    if truth is not None and not bool(ok.all()):
        g, w, t = got.double(), want.double(), truth.double()
        ok |= _matches(g, t, atol, 4 * r) | ((g - t).abs() <= 2 * (w - t).abs() + atol)
    else:
        assert_nan_where(got, want, what)
    if not bool(ok.all()):
        i = tuple((~ok).nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int((~ok).sum())} values beyond the budget (rtol {r:g}, atol {atol:.3g}); "
                             f"the first at {list(i)}: fused {got[i].item()!r}, eager {want[i].item()!r}"
                             + (f", float64 {truth[i].item()!r}" if truth is not None else ""))


def finite_max(*ts: torch.Tensor) -> float:
    vals = [t[torch.isfinite(t)].abs().max().item() for t in ts if torch.isfinite(t).any()]
    return max(vals, default=0.0)


# ---------------------------------------------------------------------------------------------- coupling
@examples(200)
@given(xs=matrices(), clamp=st.sampled_from([0.0, 0.5, 2.0, 5.0]), h_mag=st.sampled_from([-3, 0, 0, 1, 2]),
       inverse=st.booleans(), data=st.data())
def test_coupling_cpu_equals_eager(xs, clamp, h_mag, inverse, data):
    x, _ = xs
    n, d = x.reshape(-1, x.shape[-1]).shape
    h_dense = torch.randn(n, 2 * d, generator=torch.Generator().manual_seed(n * 31 + d), dtype=torch.float64)
    h = data.draw(layouts((h_dense * 10.0 ** h_mag).to(x.dtype))).reshape(*x.shape[:-1], 2 * d)
    fn = (ops.coupling_inverse, ref_coupling.coupling_inverse) if inverse else \
        (ops.coupling_forward, ref_coupling.coupling_forward)
    y, logdet = fn[0](x, h, clamp, backend="cpu")
    y_ref, logdet_ref = fn[1](x, h, clamp)
    assert_budget(y, y_ref, finite_max(y_ref), "y")
    assert_budget(logdet, logdet_ref, d * finite_max(h[..., :d]), "logdet")


# ---------------------------------------------------------------------------------------------- diffusion
def _coefficients(n: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(n, generator=g, dtype=torch.float64).to(dtype) * 2 - 0.5 for _ in range(3))


@examples(200)
@given(xs=matrices(), seed=st.integers(0, 2**63 - 1), offset=st.integers(0, 2**40), explicit=st.booleans(),
       step=st.booleans(), data=st.data())
def test_diffusion_ops_cpu_equal_eager(xs, seed, offset, explicit, step, data):
    x, dense = xs
    b = x.shape[0]
    a, bb, c = _coefficients(b, x.dtype, seed % 1000)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed % 1000), dtype=x.dtype) \
        if explicit else None
    if step:
        eps = data.draw(layouts((dense * 0.5 + 1.0).reshape(dense.shape)))
        if x.dim() != eps.dim():  # a batch view: each sample's elements must be contiguous (the op's contract)
            eps = eps.contiguous().reshape(x.shape)
        got = ops.diffusion_step(x, eps, a, bb, c, seed, offset, noise, backend="cpu")
        want = ref_diffusion.diffusion_step(x, eps, a, bb, c, seed, offset, noise)
    else:
        got = ops.add_noise(x, a, bb, seed, offset, noise, backend="cpu")
        want = ref_diffusion.add_noise(x, a, bb, seed, offset, noise)
    # drawn noise: Box-Muller in float32 vs the reference's, as the op tests' NOISE_TOL (4e-6 absolute)
    scale = finite_max(want) + (0.0 if explicit else 4e-6 / RTOL[x.dtype] * 4)
    assert_budget(got, want, scale, "diffusion_step" if step else "add_noise")


# ---------------------------------------------------------------------------------------------- kde / knn
@examples(150)
@given(qs=matrices(rows=st.integers(0, 20), cols=st.integers(1, 9), magnitude=st.just(0)),
       m=st.integers(1, 25), mag=MAGNITUDES, bandwidth=st.sampled_from([0.3, 1.0, 5.0, "scott", "silverman"]),
       k_frac=st.floats(0.0, 1.0))
def test_kde_knn_cpu_equal_eager(qs, m, mag, bandwidth, k_frac):
    q, _ = qs
    d = q.shape[-1]
    scale = 10.0 ** mag
    refs = (torch.randn(m, d, generator=torch.Generator().manual_seed(m * 7 + d), dtype=torch.float64)).to(q.dtype)
    q, refs = q * scale, refs * scale
    h = bandwidth if isinstance(bandwidth, str) else bandwidth * scale
    try:
        got = ops.kde_logpdf(q, refs, h, backend="cpu")
    except ValueError as exc:  # e.g. a data-driven bandwidth of a constant reference set
        assert "bandwidth" in str(exc), exc
    else:
        h_val = h if not isinstance(h, str) else getattr(ops, f"{h}_bandwidth")(refs)
        want = ref_distance.kde_logpdf(q, refs, h_val)
        truth = ref_distance.kde_logpdf(q.double(), refs.double(), h_val)
        # the documented error of the cpu kernels' |q|² + |r|² − 2 q·r expansion (genad_fast.ops.distance)
        expansion = 2 * torch.finfo(q.dtype).eps * _max_sq_norm(q, refs) / (2 * h_val ** 2)
        assert_budget(got, want, finite_max(want) + 10.0, "kde_logpdf", truth, atol_floor=expansion)
    k = 1 + int(k_frac * (m - 1))
    got = ops.knn_distance(q, refs, k, backend="cpu")
    want = ref_distance.knn_distance(q, refs, k)
    # A distance comes from its square: below sqrt(smallest normal) (1.1e-19 in float32) the square underflows
    # and neither the fused nor the eager result can resolve it.
    floor = max(math.sqrt(torch.finfo(q.dtype).tiny), math.sqrt(2 * torch.finfo(q.dtype).eps * _max_sq_norm(q, refs)))
    assert_budget(got, want, finite_max(want), "knn_distance", ref_distance.knn_distance(q.double(), refs.double(), k),
                  atol_floor=floor)


def _max_sq_norm(q: torch.Tensor, refs: torch.Tensor) -> float:
    """max |q|² + max |r|² over the finite rows (the size of the terms the distance expansion cancels)."""
    sq = [t.double().square().sum(-1) for t in (q, refs)]
    return sum(float(s[torch.isfinite(s)].max()) if bool(torch.isfinite(s).any()) else 0.0 for s in sq)


# ---------------------------------------------------------------------------------------------- anogan / linear
@examples(150)
@given(xs=matrices(), f=st.integers(0, 17), lam=st.floats(0.0, 1.0), data=st.data())
def test_anogan_residual_cpu_equals_eager(xs, f, lam, data):
    x, dense = xs
    gx = data.draw(layouts((dense * 0.75 + 0.25).to(dense.dtype))).reshape(x.shape)
    rows = dense.shape[0]
    feats = torch.randn(rows, f, generator=torch.Generator().manual_seed(rows + 13 * f), dtype=dense.dtype)
    fx, fgx = feats.reshape(*x.shape[:-1], f), (feats * 1.5).reshape(*x.shape[:-1], f)
    got = ops.anogan_residual(x, gx, fx, fgx, lam, backend="cpu")
    want = ref_anogan.anogan_residual(x, gx, fx, fgx, lam)
    sums = x.shape[-1] * finite_max(x, gx) + f * finite_max(fx, fgx)
    assert_budget(got[0], want[0], sums, "loss")
    for i, name in ((1, "grad_gx"), (2, "grad_fgx")):
        assert_budget(got[i], want[i], finite_max(want[i]), name)


def test_regression_zero_features_of_zero_rows_in_a_batch():
    """Found by the long profile: x [2, 0, 1] with f = 0 features, whose [2, 0, 0] feature tensors have no rows
    and no columns — a [-1, 0] view of them is ambiguous."""
    x = torch.empty(2, 0, 1)
    fx = torch.empty(2, 0, 0)
    got = ops.anogan_residual(x, x.clone(), fx, fx.clone(), 0.0, backend="cpu")
    want = ref_anogan.anogan_residual(x, x.clone(), fx, fx.clone(), 0.0)
    for g, w in zip(got, want):
        assert g.shape == w.shape


@examples(120)
@given(xs=matrices(dtype=st.just(torch.float32), bad_values=False, magnitude=st.sampled_from([-3, 0, 1, 3])),
       n=st.integers(1, 40), bias=st.booleans(), slope=st.sampled_from([None, 0.0, 0.2]))
def test_linear_act_cpu_equals_eager(xs, n, bias, slope):
    x, _ = xs
    if x.dim() != 2:
        x = x.reshape(-1, x.shape[-1])
    k = x.shape[1]
    g = torch.Generator().manual_seed(n * 101 + k)
    w = torch.randn(n, k, generator=g)
    b = torch.randn(n, generator=g) if bias else None
    got = ops.linear_act(x, w, b, slope=slope, backend="cpu")
    want = ref_linear.linear_act(x, w, b, slope=slope)
    assert_budget(got, want, k * finite_max(x) * finite_max(w) + 1.0, "linear_act")


# ---------------------------------------------------------------------------------------------- conv1d_act
@st.composite
def conv_inputs(draw):
    """x [N, C_in, L_in] in a layout a caller hands over (contiguous, a transpose of [N, L, C] windows, every other
    timestep, one sample broadcast over the batch), any magnitude, NaN/±inf at random places; weight and bias."""
    n, c_in, l_in = draw(st.integers(0, 9)), draw(st.integers(1, 20)), draw(st.integers(1, 40))
    dtype, mag, seed = draw(DTYPES), draw(MAGNITUDES), draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, c_in, l_in)) * 10.0 ** mag
    if n and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            dense[rng.integers(n), rng.integers(c_in), rng.integers(l_in)] = draw(st.sampled_from([np.nan, np.inf,
                                                                                                   -np.inf]))
    x = torch.tensor(dense, dtype=dtype).reshape(n, c_in, l_in)
    kind = draw(st.sampled_from(["contiguous", "transposed", "every_other_timestep", "broadcast_batch"]))
    if kind == "transposed":
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    elif kind == "every_other_timestep":
        big = torch.full((n, c_in, 2 * l_in), 7.0, dtype=dtype)
        big[:, :, ::2] = x
        x = big[:, :, ::2]
    elif kind == "broadcast_batch" and n:
        x = x[:1].expand(n, c_in, l_in)
    c_out, k = draw(st.integers(1, 20)), draw(st.integers(1, 7))
    g = torch.Generator().manual_seed(seed % 100_000)
    w = (torch.randn(c_out, c_in, k, generator=g, dtype=torch.float64) * 10.0 ** draw(st.sampled_from([-3, 0, 1])))
    b = torch.randn(c_out, generator=g, dtype=torch.float64) if draw(st.booleans()) else None
    return x, w.to(dtype), None if b is None else b.to(dtype)


@examples(150)
@given(inp=conv_inputs(), up=st.sampled_from([None, 1, 2, 2.2, 0.5]), slope=st.sampled_from([None, 0.0, 0.1]),
       pool=st.booleans())
def test_conv1d_act_cpu_equals_eager(inp, up, slope, pool):
    x, w, b = inp
    length = None if up is None else max(1, int(x.shape[2] * up))
    got = ops.conv1d_act(x, w, b, length=length, slope=slope, pool=pool, backend="cpu")
    want = ref_conv.conv1d_act(x.contiguous(), w, b, length, slope, pool)
    truth = ref_conv.conv1d_act(x.double(), w.double(), None if b is None else b.double(), length, slope, pool)
    terms = w.shape[1] * w.shape[2] * finite_max(x) * finite_max(w) + (finite_max(b) if b is not None else 0.0)
    assert_budget(got, want, terms, "conv1d_act", truth)
    assert_nan_where(got, want, "conv1d_act")  # conv, LeakyReLU, max pooling: NaN exactly where eager has it


# ---------------------------------------------------------------------------------------------- gated_tanh
@st.composite
def gated_inputs(draw):
    """(x, dim): rank 1 to 4, sizes 0 to 9 (the split dim 0 to 18, even), float32, float64 or bfloat16, any
    magnitude, NaN/±inf at random places, in a layout a caller hands over (contiguous, dims permuted, every other
    element of a dim, one slice broadcast over a dim of size > 1)."""
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(0, 9)) for _ in range(rank)]
    dim = draw(st.integers(-rank, rank - 1))
    shape[dim] = 2 * draw(st.integers(0, 9))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=shape) * 10.0 ** draw(MAGNITUDES)
    if dense.size and draw(st.booleans()):
        flat = dense.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[rng.integers(flat.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    x = torch.tensor(dense, dtype=torch.float64).to(dtype)
    kind = draw(st.sampled_from(["contiguous", "permuted", "every_other", "broadcast"]))
    if kind == "permuted":
        order = draw(st.permutations(range(rank)))
        x = x.permute(*order).contiguous().permute(*np.argsort(order).tolist())
    elif kind == "every_other":
        d = draw(st.integers(0, rank - 1))
        big = torch.full([2 * s if i == d else s for i, s in enumerate(shape)], 7.0, dtype=dtype)
        index = [slice(None)] * rank
        index[d] = slice(None, None, 2)
        big[tuple(index)] = x
        x = big[tuple(index)]
    elif kind == "broadcast":
        d = draw(st.integers(0, rank - 1))
        if shape[d] > 1:   # the split dim too: then a and b are one element
            x = x.narrow(d, 0, 1).expand(shape)
    assert list(x.shape) == shape
    return x, dim


@examples(200)
@given(inp=gated_inputs())
def test_gated_tanh_cpu_equals_eager(inp):
    """Forward and backward (through autograd) against the reference's, with the op tests' tolerances (bfloat16:
    the float32 reference rounded); NaN exactly where the reference has it, and finite wherever the input is."""
    x, dim = inp
    got = ops.gated_tanh(x, dim, backend="cpu")
    want = gated_spec.oracle(x.contiguous(), dim)
    assert got.shape == want.shape and got.dtype == x.dtype and got.is_contiguous()
    torch.testing.assert_close(got.double(), want.double(), equal_nan=True,
                               **gated_spec.FWD_TOL("cpu", x.dtype))
    assert_nan_where(got, want, "gated_tanh")
    g = torch.randn(got.shape, generator=torch.Generator().manual_seed(got.numel()), dtype=torch.float64)
    g = g.to(x.dtype)
    leaf = x.detach().clone().requires_grad_(True)
    ops.gated_tanh(leaf, dim, backend="cpu").backward(g)
    want_grad = gated_spec.oracle_grad(x.contiguous(), dim, g)
    torch.testing.assert_close(leaf.grad.double(), want_grad.double(), equal_nan=True,
                               **gated_spec.BWD_TOL("cpu", x.dtype))
    assert_nan_where(leaf.grad, want_grad, "gated_tanh_backward")
    if bool(torch.isfinite(x).all()):
        assert bool(torch.isfinite(got).all()) and bool(torch.isfinite(leaf.grad).all())


# ---------------------------------------------------------------------------------------------- bias_gelu
_GELU_CPU = Target("cpu", "cpu")


@st.composite
def gelu_inputs(draw):
    """(z, bias): z [0..33, 1..33] from :func:`matrices` (any magnitude, NaN/±inf at random places) in a 2-D layout
    (contiguous, a column slice, every other row, transposed); bias of its own magnitude, maybe with a NaN or ±inf,
    contiguous, every other element, or one value broadcast over N."""
    z, dense = draw(matrices())
    if z.dim() != 2:   # matrices' batch view is 3-D: bias_gelu takes [M, N] only, so a transposed copy instead
        z = dense.t().contiguous().t()
    n = z.shape[1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = rng.normal(size=n) * 10.0 ** draw(MAGNITUDES)
    if draw(st.booleans()):
        b[rng.integers(n)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    bias = torch.tensor(b, dtype=torch.float64).to(z.dtype)
    kind = draw(st.sampled_from(["contiguous", "every_other", "broadcast"]))
    if kind == "every_other":
        wide = torch.full((2 * n,), 7.0, dtype=z.dtype)
        wide[::2] = bias
        bias = wide[::2]
    elif kind == "broadcast":
        bias = bias[:1].expand(n)
    return z, bias


@examples(200)
@given(inp=gelu_inputs())
def test_bias_gelu_cpu_equals_eager(inp):
    """Forward and both gradients (through autograd) against the reference's, with the op tests' tolerances where
    u = z + bias is finite; there the output and ∂/∂z are finite too, even where ATen's float32 gelu overflows. NaN and
    -inf in u give NaN, +inf gives +inf; ∂/∂z NaN exactly where the reference's is, ∂/∂bias NaN exactly in the columns of a NaN
    ∂/∂z and else the reference's."""
    z, bias = inp
    dtype = z.dtype
    zc, bc = z.contiguous(), bias.contiguous()
    u = zc + bc
    got = ops.bias_gelu(z, bias, backend="cpu")
    want = gelu_spec.oracle(zc, bc)
    assert got.shape == z.shape and got.dtype == dtype and got.is_contiguous()
    finite = torch.isfinite(u)
    assert bool(torch.isfinite(got[finite]).all())
    ok = finite & torch.isfinite(want)
    torch.testing.assert_close(got[ok], want[ok], **gelu_spec.FWD_TOL("cpu", dtype))
    assert bool(torch.isnan(got[torch.isnan(u) | (u == -math.inf)]).all())
    plus = got[u == math.inf]
    assert bool((plus == math.inf).all()), plus
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(z.numel()), dtype=torch.float64).to(dtype)
    zl, bl = z.detach().clone().requires_grad_(True), bias.detach().clone().requires_grad_(True)
    ops.bias_gelu(zl, bl, backend="cpu").backward(g)
    want_z, want_b = gelu_spec.oracle_grads(zc, bc, g)
    assert_nan_where(zl.grad, want_z, "bias_gelu_backward")
    assert bool(torch.isfinite(zl.grad[finite]).all())
    torch.testing.assert_close(zl.grad[finite], want_z[finite], **gelu_spec.GRAD_TOL("cpu", dtype))
    nan_cols = torch.isnan(zl.grad).any(0)
    assert torch.equal(torch.isnan(bl.grad), nan_cols)
    clean = ~nan_cols
    gelu_spec.check_bias_grad(_GELU_CPU, bl.grad[clean], want_b[clean], zc[:, clean],
                              bc[clean], g[:, clean])


# ---------------------------------------------------------------------------------------------- permute_affine
_PERMUTE_CPU = Target("cpu", "cpu")


@st.composite
def permute_inputs(draw):
    """(x_a, x_b, bias, log_scale, perm, split): the columns of a [0..33, 1..33] matrix from :func:`matrices` (any
    magnitude, NaN/±inf at random places, row strides; a batch view taken as its dense copy) cut at a random column
    into two halves, either possibly empty; bias of its own magnitude, maybe with a NaN or ±inf; log_scale within
    ±5, maybe -inf (e = 0); bias, log_scale and perm contiguous or every other element; split anywhere in [0, D]."""
    x, dense = draw(matrices())
    if x.dim() != 2:
        x = dense
    d = x.shape[1]
    da = draw(st.integers(0, d))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = rng.normal(size=d) * 10.0 ** draw(MAGNITUDES)
    if draw(st.booleans()):
        b[rng.integers(d)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    ls = rng.uniform(-5.0, 5.0, size=d)
    if draw(st.booleans()):
        ls[rng.integers(d)] = -np.inf
    bias, log_scale = (torch.tensor(v, dtype=torch.float64).to(x.dtype) for v in (b, ls))
    perm = torch.from_numpy(rng.permutation(d))
    if draw(st.booleans()):
        bias, log_scale, perm = (permute_spec.every_other(t) for t in (bias, log_scale, perm))
    return x[:, :da], x[:, da:], bias, log_scale, perm, draw(st.integers(0, d))


@examples(150)
@given(inp=permute_inputs())
def test_permute_affine_cpu_equals_eager(inp):
    """Forward bit for bit the reference's (NaN and ±inf where it has them: no clamping); through autograd with
    output gradients ~N(0, 1), ∂/∂x bit for bit and the column sums within the op tests' budget, NaN and ±inf in the
    reference's places. (log_scale = +inf is left out: there the reference's ∂/∂log_scale, (Σ g·(x + b))·inf, is ±inf
    where the kernel's sum of ±inf terms g·v is NaN: tests/op_specs/permute_affine.py, check_nan_and_inf_propagate.)"""
    x_a, x_b, bias, log_scale, perm, split = inp
    dtype = x_a.dtype
    dense = (x_a.contiguous(), x_b.contiguous(), bias.contiguous(), log_scale.contiguous(), perm.contiguous())
    got = ops.permute_affine(x_a, x_b, bias, log_scale, perm, split, backend="cpu")
    want = permute_spec.oracle(*dense, split)
    for o, w in zip(got, want):
        assert o.is_contiguous()
        torch.testing.assert_close(o, w, equal_nan=True, **permute_spec.FWD_TOL("cpu", dtype))
    n, d = x_a.shape[0], x_a.shape[1] + x_b.shape[1]
    g = torch.randn(n, d, generator=torch.Generator().manual_seed(n * 37 + d), dtype=torch.float64).to(dtype)
    grads = (g[:, :split], g[:, split:])
    got_g = permute_spec.unit_grads(_PERMUTE_CPU, x_a, x_b, bias, log_scale, perm, split, grads)
    want_g = permute_spec.oracle_grads(*dense, split, grads)
    for a, b, what in zip(got_g[:2], want_g[:2], ("x_a", "x_b")):
        torch.testing.assert_close(a, b, equal_nan=True, **permute_spec.GRAD_X_TOL("cpu", dtype))
        assert_nan_where(a, b, f"permute_affine_backward: {what}")
    scales = permute_spec.sum_scales(*dense, grads)
    for a, b, s in zip(got_g[2:], want_g[2:], scales):
        assert_terms_close(a, b, s, **permute_spec.GRAD_SUM_ULPS(_PERMUTE_CPU, dtype))


# ---------------------------------------------------------------------------------------------- found defects
EMPTY_FROM_NUMPY = {
    "coupling_forward": lambda x: ops.coupling_forward(x, torch.zeros(0, 4, dtype=x.dtype), 0.0, backend="cpu")[0],
    "add_noise": lambda x: ops.add_noise(x, torch.zeros(0, dtype=x.dtype), torch.zeros(0, dtype=x.dtype), 0, 0,
                                         backend="cpu"),
    "kde_logpdf": lambda x: ops.kde_logpdf(x, torch.ones(3, 2, dtype=x.dtype), 1.0, backend="cpu"),
    "knn_distance": lambda x: ops.knn_distance(x, torch.ones(3, 2, dtype=x.dtype), 1, backend="cpu"),
    "anogan_residual": lambda x: ops.anogan_residual(x, x, x, x, 0.1, backend="cpu")[0],
    "conv1d_act": lambda x: ops.conv1d_act(x[:, :, None], torch.ones(3, 2, 1, dtype=x.dtype), backend="cpu"),
    "gated_tanh": lambda x: ops.gated_tanh(x, 1, backend="cpu"),
    "bias_gelu": lambda x: ops.bias_gelu(x, torch.zeros(2, dtype=x.dtype), backend="cpu"),
    "permute_affine": lambda x: ops.permute_affine(x, x, torch.zeros(4, dtype=x.dtype), torch.zeros(4, dtype=x.dtype),
                                                   torch.arange(4), 3, backend="cpu")[1],
}


@pytest.mark.parametrize("op", sorted(EMPTY_FROM_NUMPY))
def test_empty_batch_from_numpy(op):
    """Found by the fuzzing: ``torch.from_numpy(np.zeros((0, D)))`` is contiguous with strides (0, 0), and the
    ops' unit-last-stride check refuses it, where the contract says empty batches return empty outputs."""
    x = torch.from_numpy(np.zeros((0, 2)))
    assert x.is_contiguous() and x.stride() == (0, 0)
    assert EMPTY_FROM_NUMPY[op](x).shape[0] == 0
