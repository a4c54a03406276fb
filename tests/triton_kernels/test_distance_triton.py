"""The Triton KDE log-density and k-nearest-distance kernels (kernels/distance.py) in the interpreter, against the
eager reference: odd shapes (tiles of 32 queries x 64 references cut anywhere), exclude_self, column slices,
float32/float64, NaN/inf, opcheck. Small shapes: the interpreter runs every tile in numpy."""
from __future__ import annotations

import math

import pytest
import torch

from genad_fast import ops
from genad_fast.reference import distance as ref

pytestmark = pytest.mark.triton

DTYPES = [torch.float32, torch.float64]
# Direct differences in the input dtype, as the reference; the log-sum-exp in float64 — only summation order
# differs from the reference.
KDE_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
KNN_TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-13, atol=1e-13)}
SHAPES = [(0, 5, 3), (1, 1, 1), (7, 13, 3), (33, 65, 5), (40, 130, 17)]


def _data(n, m, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype),
            torch.randn(m, d, generator=g, dtype=torch.float64).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", SHAPES)
def test_kde_matches_reference(dtype, n, m, d):
    q, r = _data(n, m, d, dtype)
    h = 0.6 + 0.05 * d
    out = ops.kde_logpdf(q, r, h, backend="triton")
    assert out.shape == (n,) and out.dtype == dtype
    torch.testing.assert_close(out, ref.kde_logpdf(q, r, h), **KDE_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", SHAPES)
def test_knn_matches_reference(dtype, n, m, d):
    q, r = _data(n, m, d, dtype, seed=1)
    for k in sorted({1, min(m, 5), m if m <= 16 else 16}):
        out = ops.knn_distance(q, r, k, backend="triton")
        assert out.shape == (n, k) and out.dtype == dtype
        torch.testing.assert_close(out, ref.knn_distance(q, r, k), **KNN_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_exclude_self(dtype):
    x, _ = _data(70, 1, 6, dtype, seed=2)
    torch.testing.assert_close(ops.kde_logpdf(x, x, 0.9, exclude_self=True, backend="triton"),
                               ref.kde_logpdf(x, x, 0.9, True), **KDE_TOL[dtype])
    knn = ops.knn_distance(x, x, 3, True, backend="triton")
    torch.testing.assert_close(knn, ref.knn_distance(x, x, 3, True), **KNN_TOL[dtype])
    assert bool((knn[:, 0] > 0).all()), "a point must not be its own nearest neighbour"
    # Only j == i is left out: a duplicate at another index is a neighbour at distance 0.
    dup = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=dtype)
    torch.testing.assert_close(ops.knn_distance(dup, dup, 1, True, backend="triton"),
                               torch.tensor([[0.0], [0.0], [5.0]], dtype=dtype))


def test_values_by_hand():
    q = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    r = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    h = 2.0
    expected = math.log((math.exp(-25 / 8) + math.exp(-1 / 8)) / 2) - math.log(2 * math.pi * h * h)
    torch.testing.assert_close(ops.kde_logpdf(q, r, h, backend="triton"),
                               torch.tensor([expected], dtype=torch.float64))
    torch.testing.assert_close(ops.knn_distance(q, r, 2, backend="triton"),
                               torch.tensor([[1.0, 5.0]], dtype=torch.float64))


def test_column_slices_are_read_in_place():
    qb, rb = _data(20, 70, 30, torch.float32, seed=3)
    q, r = qb[:, 3:14], rb[:, 11:22]
    assert not q.is_contiguous() and not r.is_contiguous()
    torch.testing.assert_close(ops.kde_logpdf(q, r, 1.1, backend="triton"),
                               ref.kde_logpdf(q.contiguous(), r.contiguous(), 1.1), **KDE_TOL[torch.float32])
    torch.testing.assert_close(ops.knn_distance(q, r, 4, backend="triton"),
                               ref.knn_distance(q.contiguous(), r.contiguous(), 4), **KNN_TOL[torch.float32])


def test_far_from_everything():
    # Every kernel term underflows to 0; the online log-sum-exp must still give about −d²/(2h²), not −inf.
    q = torch.tensor([[1000.0, 0.0]])
    r = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    out = ops.kde_logpdf(q, r, 0.5, backend="triton")
    torch.testing.assert_close(out, ref.kde_logpdf(q, r, 0.5), rtol=1e-6, atol=1e-3)
    assert math.isfinite(out.item()) and out.item() < -1e6


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's inf − inf, on purpose
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_values_follow_the_reference(dtype):
    q, r = _data(6, 9, 3, dtype, seed=7)
    q[1, 2] = math.nan         # a NaN query
    q[2, 0] = math.inf         # an infinite query
    r[4, 1] = math.inf         # an infinite reference
    r[5, 0] = -math.inf        # inf − (−inf) = inf against query 2; r[7] gives inf − inf = NaN
    r[7, 0] = math.inf
    kde = ops.kde_logpdf(q, r, 0.9, backend="triton")
    torch.testing.assert_close(kde, ref.kde_logpdf(q, r, 0.9), equal_nan=True, **KDE_TOL[dtype])
    assert math.isnan(kde[1]) and math.isnan(kde[2]) and torch.isfinite(kde[[0, 3, 4, 5]]).all()
    for k in (1, 6, 9):
        torch.testing.assert_close(ops.knn_distance(q, r, k, backend="triton"), ref.knn_distance(q, r, k),
                                   equal_nan=True, **KNN_TOL[dtype])
    knn = ops.knn_distance(q, r, 9, backend="triton")
    assert torch.isnan(knn[1]).all()
    assert torch.isinf(knn[0, -3:]).all() and torch.isfinite(knn[0, :-3]).all()
    assert torch.isnan(knn[2, -1]) and torch.isinf(knn[2, :-1]).all()


def test_nan_reference_ranks_last():
    q, r = _data(5, 8, 4, torch.float32, seed=8)
    r[3, 0] = math.nan
    assert torch.isnan(ops.kde_logpdf(q, r, 1.0, backend="triton")).all()
    knn = ops.knn_distance(q, r, 8, backend="triton")
    assert torch.isnan(knn[:, -1]).all() and torch.isfinite(knn[:, :-1]).all()
    torch.testing.assert_close(knn, ref.knn_distance(q, r, 8), equal_nan=True, **KNN_TOL[torch.float32])


def test_opcheck():
    q, r = _data(11, 17, 5, torch.float32, seed=11)
    torch.library.opcheck(torch.ops.genad_fast_triton.kde_logpdf, (q, r, 0.8, False))
    torch.library.opcheck(torch.ops.genad_fast_triton.kde_logpdf, (r, r, 0.8, True))
    torch.library.opcheck(torch.ops.genad_fast_triton.knn_distance, (q, r, 4, False))
    torch.library.opcheck(torch.ops.genad_fast_triton.knn_distance, (r[:, 1:4], r[:, :3], 3, True))
