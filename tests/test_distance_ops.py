"""Gaussian KDE log-density and k-nearest distances (genad_fast.ops.kde_logpdf, knn_distance) against the eager
reference, float64 ground truth and scikit-learn; non-finite values, strides, opcheck, torch.compile, errors."""
from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import distance as ref

BACKENDS = ["eager", "cpu"]
DTYPES = [torch.float32, torch.float64]
# Against the float64 reference. KDE float32 on the CPU: distances from the expansion |q|²+|r|²−2q·r in float32
# (centred rows; error ~ eps·|q|²) and lane sums in float32 — within scikit-learn's 1e-4 criterion, with room.
# kNN float32: the winners' distances are recomputed exactly, so only the final rounding to float32 remains.
KDE_TOL = {torch.float32: dict(rtol=2e-6, atol=1e-4), torch.float64: dict(rtol=1e-12, atol=1e-10)}
KNN_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}

SHAPES = [(0, 5, 3), (1, 1, 1), (7, 13, 3), (13, 7, 1), (5, 1, 2), (40, 33, 17), (300, 517, 33), (129, 1000, 64)]


def _data(n, m, d, dtype, seed=0, scale=1.0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    r = scale * torch.randn(m, d, generator=g, dtype=torch.float64) + offset
    return q.to(dtype), r.to(dtype)


def _truth_kde(q, r, h, exclude_self=False):
    return ref.kde_logpdf(q.double(), r.double(), h, exclude_self)


def _truth_knn(q, r, k, exclude_self=False):
    return ref.knn_distance(q.double(), r.double(), k, exclude_self)


# ---- agreement with the reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", SHAPES)
def test_kde_matches_float64_reference(backend, dtype, n, m, d):
    q, r = _data(n, m, d, dtype)
    h = 0.6 + 0.05 * d  # keeps log p in a range where every backend's sums matter
    out = ops.kde_logpdf(q, r, h, backend=backend)
    assert out.shape == (n,) and out.dtype == dtype
    torch.testing.assert_close(out.double(), _truth_kde(q, r, h), **KDE_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", SHAPES)
def test_knn_matches_float64_reference(backend, dtype, n, m, d):
    q, r = _data(n, m, d, dtype, seed=1)
    for k in sorted({1, min(m, 4), m}):
        out = ops.knn_distance(q, r, k, backend=backend)
        assert out.shape == (n, k) and out.dtype == dtype
        torch.testing.assert_close(out.double(), _truth_knn(q, r, k), **KNN_TOL[dtype])
        assert bool((out[:, 1:] >= out[:, :-1]).all()), "distances must come out ascending"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d", [(2, 1), (9, 4), (200, 33), (611, 8)])
def test_exclude_self_leaves_each_point_out(backend, dtype, n, d):
    x, _ = _data(n, 1, d, dtype, seed=2)
    kde = ops.kde_logpdf(x, x, 0.9, exclude_self=True, backend=backend)
    torch.testing.assert_close(kde.double(), _truth_kde(x, x, 0.9, exclude_self=True), **KDE_TOL[dtype])
    # By hand: the leave-one-out density is the density under the other n − 1 points.
    i = n // 2
    others = torch.cat([x[:i], x[i + 1:]])
    torch.testing.assert_close(kde[i].double(), _truth_kde(x[i:i + 1], others, 0.9)[0], **KDE_TOL[dtype])
    for k in sorted({1, n - 1}):
        knn = ops.knn_distance(x, x, k, exclude_self=True, backend=backend)
        torch.testing.assert_close(knn.double(), _truth_knn(x, x, k, exclude_self=True), **KNN_TOL[dtype])
        assert bool((knn[:, 0] > 0).all()), "a point must not be its own nearest neighbour"


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclude_self_keeps_duplicates_of_a_point(backend):
    # Only j == i is left out: an identical copy at another index is a neighbour at distance 0.
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    knn = ops.knn_distance(x, x, 1, exclude_self=True, backend=backend)
    torch.testing.assert_close(knn, torch.tensor([[0.0], [0.0], [5.0]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_by_hand(backend):
    q = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    r = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    h = 2.0
    expected = math.log((math.exp(-25 / 8) + math.exp(-1 / 8)) / 2) - math.log(2 * math.pi * h * h)
    torch.testing.assert_close(ops.kde_logpdf(q, r, h, backend=backend), torch.tensor([expected], dtype=torch.float64))
    torch.testing.assert_close(ops.knn_distance(q, r, 2, backend=backend),
                               torch.tensor([[1.0, 5.0]], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_column_slices_are_read_in_place(backend, dtype):
    qb, rb = _data(50, 70, 40, dtype, seed=3)
    q, r = qb[:, 3:20], rb[:, 11:28]
    assert not q.is_contiguous() and not r.is_contiguous()
    torch.testing.assert_close(ops.kde_logpdf(q, r, 1.1, backend=backend),
                               ops.kde_logpdf(q.contiguous(), r.contiguous(), 1.1, backend=backend), rtol=0, atol=0)
    torch.testing.assert_close(ops.knn_distance(q, r, 5, backend=backend),
                               ops.knn_distance(q.contiguous(), r.contiguous(), 5, backend=backend), rtol=0, atol=0)
    torch.testing.assert_close(ops.kde_logpdf(q, r, 1.1, backend=backend).double(), _truth_kde(q, r, 1.1),
                               **KDE_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
def test_leading_batch_shape(backend):
    q, r = _data(24, 30, 6, torch.float32, seed=4)
    qb = q.view(2, 3, 4, 6)
    torch.testing.assert_close(ops.kde_logpdf(qb, r, 0.8, backend=backend), ops.kde_logpdf(q, r, 0.8).view(2, 3, 4))
    torch.testing.assert_close(ops.knn_distance(qb, r, 3, backend=backend),
                               ops.knn_distance(q, r, 3).view(2, 3, 4, 3))
    assert ops.kde_logpdf(q[0], r, 0.8, backend=backend).shape == ()
    assert ops.knn_distance(q[0], r, 3, backend=backend).shape == (3,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_far_from_everything(backend):
    # Every kernel value underflows to 0 in any floating-point type; the log-sum-exp must still give the exact
    # log-density (about −d²/(2h²)), not −inf.
    q = torch.tensor([[1000.0, 0.0]], dtype=torch.float32)
    r = torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float32)
    out = ops.kde_logpdf(q, r, 0.5, backend=backend)
    torch.testing.assert_close(out.double(), _truth_kde(q, r, 0.5), rtol=1e-6, atol=1e-3)
    assert math.isfinite(out.item()) and out.item() < -1e6


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_offset_is_cancelled_by_centring(backend):
    # |q|² ~ 1e8 next to distances ~ 1: the expansion would lose every digit in float32 without centring.
    q, r = _data(60, 80, 5, torch.float32, seed=5, offset=1e4)
    out = ops.kde_logpdf(q, r, 1.0, backend=backend)
    torch.testing.assert_close(out.double(), _truth_kde(q, r, 1.0), rtol=0, atol=5e-3)
    torch.testing.assert_close(ops.knn_distance(q, r, 3, backend=backend).double(), _truth_knn(q, r, 3),
                               rtol=1e-5, atol=1e-3)


def test_thread_count_does_not_change_results():
    q, r = _data(333, 400, 9, torch.float32, seed=6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (ops.kde_logpdf(q, r, 0.7, backend="cpu"), ops.knn_distance(q, r, 6, backend="cpu"))
        torch.set_num_threads(max(2, threads))
        many = (ops.kde_logpdf(q, r, 0.7, backend="cpu"), ops.knn_distance(q, r, 6, backend="cpu"))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), m=st.integers(1, 70), d=st.integers(1, 40), scale=st.floats(0.01, 30.0),
       h=st.floats(0.05, 20.0), seed=st.integers(0, 2**16), excl=st.booleans())
def test_hypothesis_shapes_and_values(n, m, d, scale, h, seed, excl):
    if excl:
        n = m
    q, r = _data(n, m, d, torch.float64, seed=seed, scale=scale)
    if excl:
        q = r
    if excl and m < 2:
        return
    torch.testing.assert_close(ops.kde_logpdf(q, r, h, exclude_self=excl, backend="cpu"),
                               _truth_kde(q, r, h, excl), rtol=1e-10, atol=1e-9)
    k = max(1, (m - excl) // 2)
    torch.testing.assert_close(ops.knn_distance(q, r, k, excl, backend="cpu"), _truth_knn(q, r, k, excl),
                               rtol=1e-10, atol=1e-10)


# ---- non-finite values ------------------------------------------------------------------------------------

def _nonfinite_case(dtype):
    q, r = _data(6, 9, 3, dtype, seed=7)
    q[1, 2] = math.nan         # a NaN query
    q[2, 0] = math.inf         # an infinite query
    # Finite, but |q|² too large for the expansion (the exact path), while d² still fits the dtype.
    q[3, 1] = 1e19 if dtype == torch.float32 else 1e154
    r[4, 1] = math.inf         # an infinite reference
    r[5, 0] = -math.inf        # inf − (−inf) = inf against query 2; r[7] below gives inf − inf = NaN
    r[7, 0] = math.inf
    r[8, 2] = 1e19 if dtype == torch.float32 else 1e154  # a huge finite reference: must not spoil the centre
    return q, r


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_values_follow_the_reference(backend, dtype):
    q, r = _nonfinite_case(dtype)
    kde = ops.kde_logpdf(q, r, 0.9, backend=backend)
    torch.testing.assert_close(kde.double(), _truth_kde(q, r, 0.9), equal_nan=True, **KDE_TOL[dtype])
    assert math.isnan(kde[1]) and math.isnan(kde[2])  # query 2 meets inf − inf against r[7]
    assert torch.isfinite(kde[[0, 3, 4, 5]]).all(), "infinite references add nothing to a finite query's density"
    for k in (1, 5, 6, 9):
        knn = ops.knn_distance(q, r, k, backend=backend)
        torch.testing.assert_close(knn.double(), _truth_knn(q, r, k), equal_nan=True, **KNN_TOL[dtype])
    knn = ops.knn_distance(q, r, 9, backend=backend)
    assert torch.isnan(knn[1]).all()
    assert torch.isinf(knn[0, -3:]).all() and torch.isfinite(knn[0, :-3]).all()
    assert torch.isnan(knn[2, -1]) and torch.isinf(knn[2, :-1]).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_reference(backend, dtype):
    q, r = _data(5, 8, 4, dtype, seed=8)
    r[3, 0] = math.nan
    # A NaN term makes every density NaN ...
    assert torch.isnan(ops.kde_logpdf(q, r, 1.0, backend=backend)).all()
    # ... and ranks after every number among the neighbours.
    knn = ops.knn_distance(q, r, 8, backend=backend)
    assert torch.isnan(knn[:, -1]).all() and torch.isfinite(knn[:, :-1]).all()
    torch.testing.assert_close(knn.double(), _truth_knn(q, r, 8), equal_nan=True, **KNN_TOL[dtype])
    torch.testing.assert_close(ops.knn_distance(q, r, 7, backend=backend).double(), _truth_knn(q, r, 7),
                               **KNN_TOL[dtype])
    x = r.clone()  # exclude_self with a NaN row: its own entry is skipped, the others see a NaN neighbour last
    torch.testing.assert_close(ops.knn_distance(x, x, 7, True, backend=backend).double(),
                               _truth_knn(x, x, 7, True), equal_nan=True, **KNN_TOL[dtype])


# ---- scikit-learn -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
# Not h = 0.3 on these data: there scikit-learn's tree algorithm itself is off the exact sum by up to 0.02 nats
# (kd_tree) and 0.16 (ball_tree) at the lowest densities (log p ~ -32), which the float64 reference confirms.
@pytest.mark.parametrize("bandwidth", [0.5, 1.0, "scott", "silverman"])
def test_kde_equals_scikit_learn(backend, dtype, bandwidth):
    from sklearn.neighbors import KernelDensity

    q, r = _data(200, 300, 6, dtype, seed=9)
    kd = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(r.double().numpy())
    expected = kd.score_samples(q.double().numpy())
    out = ops.kde_logpdf(q, r, bandwidth, backend=backend)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_equals_scikit_learn(backend, dtype):
    from sklearn.neighbors import NearestNeighbors

    q, r = _data(150, 400, 12, dtype, seed=10)
    nn = NearestNeighbors(n_neighbors=7).fit(r.double().numpy())
    np.testing.assert_allclose(ops.knn_distance(q, r, 7, backend=backend).double().numpy(),
                               nn.kneighbors(q.double().numpy())[0], rtol=1e-6, atol=1e-6)
    # kneighbors() without X: each training point's neighbours among the others.
    np.testing.assert_allclose(ops.knn_distance(r, r, 7, True, backend=backend).double().numpy(),
                               nn.kneighbors()[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n, d", [(1, 1), (100, 3), (5000, 40)])
def test_bandwidth_rules_are_scikit_learns(n, d):
    from sklearn.neighbors import KernelDensity

    x = np.zeros((n, d))
    assert ops.scott_bandwidth(x) == pytest.approx(KernelDensity(bandwidth="scott").fit(x).bandwidth_, rel=1e-15)
    assert ops.silverman_bandwidth(torch.zeros(n, d)) == pytest.approx(
        KernelDensity(bandwidth="silverman").fit(x).bandwidth_, rel=1e-15)
    assert ops.scott_bandwidth(x) == pytest.approx(n ** (-1 / (d + 4)))
    assert ops.silverman_bandwidth(x) == pytest.approx((n * (d + 2) / 4) ** (-1 / (d + 4)))


# ---- op registration, compile ----------------------------------------------------------------------------

def test_opcheck():
    q, r = _data(11, 17, 5, torch.float32, seed=11)
    torch.library.opcheck(torch.ops.genad_fast.kde_logpdf, (q, r, 0.8, False))
    torch.library.opcheck(torch.ops.genad_fast.kde_logpdf, (r, r, 0.8, True))
    torch.library.opcheck(torch.ops.genad_fast.kde_logpdf, (q[:, 1:4], r[:, :3], 1.5, False))
    torch.library.opcheck(torch.ops.genad_fast.knn_distance, (q, r, 4, False))
    torch.library.opcheck(torch.ops.genad_fast.knn_distance, (r, r, 16, True))
    torch.library.opcheck(torch.ops.genad_fast.knn_distance, (q[:0], r, 2, False))


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    q, r = _data(40, 64, 7, torch.float32, seed=12)

    def scores(q, r):
        return -ops.kde_logpdf(q, r, 0.9, backend=backend), ops.knn_distance(q, r, 5, backend=backend)[:, -1]

    compiled = torch.compile(scores, fullgraph=True)
    for _ in range(2):
        for a, b in zip(compiled(q, r), scores(q, r)):
            torch.testing.assert_close(a, b)


# ---- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, exc, match", [
    (lambda q, r: ops.kde_logpdf(q, r[:, :3], 1.0), ValueError, "same number of columns D"),
    (lambda q, r: ops.knn_distance(q, r[:, :3], 2), ValueError, "same number of columns D"),
    (lambda q, r: ops.knn_distance(q, r, 11), ValueError, r"k = 11 is larger than the 10 refs"),
    (lambda q, r: ops.knn_distance(r, r, 10, True), ValueError, r"k = 10 is larger than the 9 refs"),
    (lambda q, r: ops.knn_distance(q, r, 0), ValueError, "k must be >= 1"),
    (lambda q, r: ops.knn_distance(q, r, True), TypeError, "k must be an int"),
    (lambda q, r: ops.knn_distance(q, r, 2.0), TypeError, "k must be an int"),
    (lambda q, r: ops.kde_logpdf(q, r, 0.0), ValueError, "bandwidth must be a finite number > 0"),
    (lambda q, r: ops.kde_logpdf(q, r, -1.0), ValueError, "bandwidth must be a finite number > 0"),
    (lambda q, r: ops.kde_logpdf(q, r, math.nan), ValueError, "bandwidth must be a finite number > 0"),
    (lambda q, r: ops.kde_logpdf(q, r, "median"), ValueError, "bandwidth must be a number > 0 or one of"),
    (lambda q, r: ops.kde_logpdf(q, r, None), TypeError, "bandwidth must be a number"),
    (lambda q, r: ops.kde_logpdf(q, r, 1e-30), ValueError, "too small for float32"),
    (lambda q, r: ops.kde_logpdf(q.int(), r, 1.0), TypeError, "queries must have dtype float32, float64"),
    (lambda q, r: ops.knn_distance(q, r.half(), 1), TypeError, "refs must have dtype float32, float64"),
    (lambda q, r: ops.kde_logpdf(q, r.double(), 1.0), TypeError, "must share a dtype"),
    (lambda q, r: ops.kde_logpdf(q, r.unsqueeze(0), 1.0), ValueError, "refs must be 2-D"),
    (lambda q, r: ops.kde_logpdf(q, r[:0], 1.0), ValueError, "refs must have at least one row"),
    (lambda q, r: ops.knn_distance(q[:, :0], r[:, :0], 1), ValueError, "at least one column"),
    (lambda q, r: ops.kde_logpdf(q, r, 1.0, exclude_self=True), ValueError, "as many query rows as refs"),
    (lambda q, r: ops.knn_distance(q, r, 1, exclude_self=1), TypeError, "exclude_self must be True or False"),
    (lambda q, r: ops.kde_logpdf(r[:1], r[:1], 1.0, exclude_self=True), ValueError, "at least 2 refs"),
    (lambda q, r: ops.kde_logpdf(q.requires_grad_(), r, 1.0), RuntimeError, "have no backward"),
    (lambda q, r: ops.kde_logpdf(q, r, 1.0, backend="cuda"), BackendUnavailableError, "cuda"),
    (lambda q, r: ops.knn_distance(q, r, 1, backend="nope"), ValueError, "unknown backend"),
])
def test_bad_input(call, exc, match):
    q, r = _data(4, 10, 4, torch.float32, seed=13)
    with pytest.raises(exc, match=match):
        call(q, r)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("h", [1e23, 1e160, 1e300])
def test_kde_huge_bandwidths_give_the_normaliser(backend, dtype, h):
    # Issue #12: log(2πh²) was taken of h² itself, which overflows for h > 1.3e154: the density was −inf. For
    # data far smaller than h every kernel term is 1, so log p = −(D/2)·(log 2π + 2·log h) exactly.
    q, r = _data(5, 7, 3, dtype, seed=22)
    want = -1.5 * (math.log(2.0 * math.pi) + 2.0 * math.log(h))
    torch.testing.assert_close(ops.kde_logpdf(q, r, h, backend=backend),
                               torch.full((5,), want, dtype=dtype), rtol=1e-6, atol=0)


def test_knn_refuses_more_refs_than_int32_positions_hold():
    # The CPU kernel's candidate lists hold int32 positions: M >= 2^31 is refused before anything is allocated
    # (a broadcast of one row: no memory behind the 2^31 rows).
    q = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"at most 2\^31 - 1 refs \(int32 positions\), got M = 2147483648"):
        ops.knn_distance(q, torch.zeros(1, 1).expand(2**31, 1), 1, backend="cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_any_input_layout_equals_the_reference(backend):
    # Issue #12: queries and refs of any layout are accepted (a view where the kernels can read it, else one
    # copy); a non-unit last stride used to be an error. Broadcast rows (row stride 0) are read in place.
    q, r = _data(6, 9, 5, torch.float64, seed=21)
    layouts = [(q.t().contiguous().t(), r.t().contiguous().t()),
               (torch.stack([q, q], -1)[..., 0], torch.stack([r, r], -1)[..., 0]),
               (q.reshape(2, 3, 5).transpose(0, 1), r),
               (q[:1].expand(6, 5), r[:1].expand(4, 5))]
    for qs, rs in layouts:
        torch.testing.assert_close(ops.kde_logpdf(qs, rs, 0.7, backend=backend),
                                   ref.kde_logpdf(qs.contiguous(), rs.contiguous(), 0.7))
        torch.testing.assert_close(ops.knn_distance(qs, rs, 3, backend=backend),
                                   ref.knn_distance(qs.contiguous(), rs.contiguous(), 3))


def test_no_grad_scoring_of_tensors_that_require_grad():
    q, r = _data(4, 10, 4, torch.float32, seed=14)
    q.requires_grad_(True)
    with torch.no_grad():
        assert ops.kde_logpdf(q, r, 1.0).shape == (4,)


@pytest.mark.parametrize("bad, match", [(np.zeros(3), "2-D"), (np.zeros((0, 3)), "at least one row")])
def test_bandwidth_rule_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        ops.scott_bandwidth(bad)


# ---- the Triton kernels compile for the GPU (frontend to cubin; no GPU needed) --------------------------------

@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
                    reason="kernels are interpreted in this process; tests/triton_kernels covers them")
@pytest.mark.parametrize("kernel_name", ["_kde_kernel", "_knn_kernel"])
@pytest.mark.parametrize("ptr,ints", [("*fp32", "i32"), ("*fp64", "i64")])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_triton_kernels_compile_for_sm90(kernel_name, ptr, ints, exclude_self):
    """Catches what the interpreter cannot: type errors of the compiled kernels (float32 and float64 data, int32
    and int64 sizes) — the interpreter runs float64 through float32-only intrinsics without complaint."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from genad_fast.kernels import distance as kernel

    fn = getattr(kernel, kernel_name)
    constexprs = {"EXCLUDE_SELF": exclude_self, "K_PAD": 16, "BLOCK_N": kernel.BLOCK_N, "BLOCK_M": kernel.BLOCK_M}
    signature = {name: ("constexpr" if name in constexprs else ptr if name.endswith("_ptr") else
                        "fp64" if name in ("neg_inv_2h2", "log_norm") else ints) for name in fn.arg_names}
    src = ASTSource(fn=fn, signature=signature,
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items() if k in fn.arg_names})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32))
    assert len(compiled.asm["cubin"]) > 0


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kde_scalars_are_float64():
    # Rounded to float32 on the GPU, 1/(2h²) and the normalisation would put a relative error of ~6e-8 on every
    # exponent: ~1e-5 in a float64 log-density of D = 64 (seen on an H200). The interpreter does not round them.
    from genad_fast.kernels import distance as kernel

    types = {p.name: p.annotation_type for p in kernel._kde_kernel.params}
    assert types["neg_inv_2h2"] == "fp64" and types["log_norm"] == "fp64"
