"""Gaussian KDE log-density and k-nearest distances (genad_fast.ops.kde_logpdf, knn_distance) on CPU tensors: the
spec's checks (tests/op_specs/distance.py: float64 truth, exclude_self, strides and layouts, non-finite values,
huge bandwidths, opcheck) on the eager and cpu backends, and what only the CPU runner checks: thread counts,
Hypothesis, scikit-learn, bandwidth rules, torch.compile, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import distance as ref
from op_specs import distance as spec
from op_specs.compare import EXACT, close
from op_specs.targets import CPU_TARGETS, MEDIUM, Target, run_opcheck, upto

BACKENDS = ["eager", "cpu"]
DTYPES = [torch.float32, torch.float64]
_data = spec.data


def _truth_kde(q, r, h, exclude_self=False):
    return ref.kde_logpdf(q.double(), r.double(), h, exclude_self)


def _truth_knn(q, r, k, exclude_self=False):
    return ref.knn_distance(q.double(), r.double(), k, exclude_self)


# ---- the spec's checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", upto(spec.SHAPES, MEDIUM))
def test_kde_matches_float64_reference(target, dtype, n, m, d):
    spec.check_kde_matches_truth(target, dtype, n, m, d)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", upto(spec.SHAPES, MEDIUM))
def test_knn_matches_float64_reference(target, dtype, n, m, d):
    spec.check_knn_matches_truth(target, dtype, n, m, d)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d", upto(spec.EXCLUDE_SELF, MEDIUM))
def test_exclude_self_leaves_each_point_out(target, dtype, n, d):
    spec.check_exclude_self(target, dtype, n, d)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_exclude_self_keeps_duplicates_of_a_point(target, dtype):
    spec.check_exclude_self_keeps_duplicates(target, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_ties_over_many_cuts(target, dtype):
    spec.check_knn_ties_over_many_cuts(target, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_values_by_hand(target):
    spec.check_values_by_hand(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_column_slices_are_read_in_place(target, dtype):
    spec.check_column_slices(target, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_leading_batch_shape(target):
    spec.check_leading_batch_shape(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_far_from_everything(target):
    spec.check_far_from_everything(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_far_queries_and_large_offsets(target, dtype):
    spec.check_far_queries_and_large_offsets(target, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_large_offset_is_cancelled_by_centring(target):
    spec.check_large_offset_in_float32(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_centre_from_a_sample_of_many_refs(target):
    """Over 4,095 finite refs the CPU kernels centre on the median of an evenly spaced sample of them: with an
    offset of 1e4 in float32 that centre must still cancel it (a centre off by the offset would lose every digit),
    with huge rows among the refs (left out of the sample's median by its robustness, taken by the exact path) and,
    for kNN, NaN rows (left out of the sample; a NaN ref makes every KDE density NaN)."""
    q, r = spec.data(50, 6000, 5, torch.float32, target.dev, seed=8, offset=1e4)
    r[::1499, 2] = 1e19
    close(spec.kde(target, q, r, 1.0).double(), ref.kde_logpdf(q.double(), r.double(), 1.0), spec.OFFSET_KDE_TOL)
    r[::997, 1] = math.nan
    close(spec.knn(target, q, r, 3).double(), ref.knn_distance(q.double(), r.double(), 3), spec.OFFSET_KNN_TOL)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_values_follow_the_reference(target, dtype):
    spec.check_nonfinite_values(target, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_reference(target, dtype):
    spec.check_nan_reference(target, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h", [1e23, 1e160, 1e300])
def test_kde_huge_bandwidths_give_the_normaliser(target, dtype, h):
    spec.check_huge_bandwidth(target, dtype, h)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_any_input_layout_equals_the_reference(target):
    spec.check_any_layout(target)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(Target("cpu", "cpu"), spec.opcheck_samples, [name])


# ---- the CPU runner's own checks -------------------------------------------------------------------------------

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
        close(a, b, EXACT)


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
                               _truth_kde(q, r, h, excl), **spec.HYPOTHESIS_KDE_TOL)
    k = max(1, (m - excl) // 2)
    torch.testing.assert_close(ops.knn_distance(q, r, k, excl, backend="cpu"), _truth_knn(q, r, k, excl),
                               **spec.HYPOTHESIS_KNN_TOL)



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
    np.testing.assert_allclose(out.double().numpy(), expected, **spec.SKLEARN_KDE_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_equals_scikit_learn(backend, dtype):
    from sklearn.neighbors import NearestNeighbors

    q, r = _data(150, 400, 12, dtype, seed=10)
    nn = NearestNeighbors(n_neighbors=7).fit(r.double().numpy())
    np.testing.assert_allclose(ops.knn_distance(q, r, 7, backend=backend).double().numpy(),
                               nn.kneighbors(q.double().numpy())[0], **spec.SKLEARN_KNN_TOL)
    # kneighbors() without X: each training point's neighbours among the others.
    np.testing.assert_allclose(ops.knn_distance(r, r, 7, True, backend=backend).double().numpy(),
                               nn.kneighbors()[0], **spec.SKLEARN_KNN_TOL)


@pytest.mark.parametrize("n, d", [(1, 1), (100, 3), (5000, 40)])
def test_bandwidth_rules_are_scikit_learns(n, d):
    from sklearn.neighbors import KernelDensity

    x = np.zeros((n, d))
    assert ops.scott_bandwidth(x) == pytest.approx(KernelDensity(bandwidth="scott").fit(x).bandwidth_, rel=1e-15)
    assert ops.silverman_bandwidth(torch.zeros(n, d)) == pytest.approx(
        KernelDensity(bandwidth="silverman").fit(x).bandwidth_, rel=1e-15)
    assert ops.scott_bandwidth(x) == pytest.approx(n ** (-1 / (d + 4)))
    assert ops.silverman_bandwidth(x) == pytest.approx((n * (d + 2) / 4) ** (-1 / (d + 4)))



# ---- torch.compile ---------------------------------------------------------------------------------------

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


def test_knn_refuses_more_refs_than_int32_positions_hold():
    # The CPU kernel's candidate lists hold int32 positions: M >= 2^31 is refused before anything is allocated
    # (a broadcast of one row: no memory behind the 2^31 rows).
    q = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"at most 2\^31 - 1 refs \(int32 positions\), got M = 2147483648"):
        ops.knn_distance(q, torch.zeros(1, 1).expand(2**31, 1), 1, backend="cpu")


def test_no_grad_scoring_of_tensors_that_require_grad():
    q, r = _data(4, 10, 4, torch.float32, seed=14)
    q.requires_grad_(True)
    with torch.no_grad():
        assert ops.kde_logpdf(q, r, 1.0).shape == (4,)


@pytest.mark.parametrize("bad, match", [(np.zeros(3), "2-D"), (np.zeros((0, 3)), "at least one row")])
def test_bandwidth_rule_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        ops.scott_bandwidth(bad)
