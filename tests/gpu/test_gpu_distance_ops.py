"""KDE log-density and k-nearest distances (kde_logpdf, knn_distance) on the device: against a float64 truth
computed by the eager reference on the same device, within the error budget of the eager float32 result (at most
2x its error, plus the tolerances of tests/test_distance_ops.py); exclude_self, column slices, batch shapes,
non-finite values, opcheck. Shapes up to 3000 x 4000 x 25 (many tiles of 64 queries x 64 references)."""
from __future__ import annotations

import math

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from genad_fast.reference import distance as ref

KDE_TOL = {torch.float32: dict(rtol=2e-6, atol=1e-4), torch.float64: dict(rtol=1e-12, atol=1e-10)}
KNN_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
SHAPES = [(0, 5, 3), (1, 1, 1), (7, 13, 3), (13, 7, 1), (40, 33, 17), (300, 517, 33), (129, 1000, 64),
          (3000, 4000, 25) if gs.HAS_CUDA else (600, 700, 25)]


def _data(n, m, d, dtype, device, seed=0, scale=1.0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    r = scale * torch.randn(m, d, generator=g, dtype=torch.float64) + offset
    return q.to(dtype).to(device), r.to(dtype).to(device)


def _check_kde(pair, q, r, h, exclude_self=False, what=""):
    out = ops.kde_logpdf(q, r, h, exclude_self=exclude_self, backend=pair.backend)
    assert out.shape == q.shape[:-1] and out.dtype == q.dtype and out.device == q.device
    eager = ref.kde_logpdf(q, r, h, exclude_self)
    truth = ref.kde_logpdf(q.double(), r.double(), h, exclude_self)
    gs.assert_within_budget(out, eager, truth, what=what, **KDE_TOL[q.dtype])
    return out


def _check_knn(pair, q, r, k, exclude_self=False, what=""):
    out = ops.knn_distance(q, r, k, exclude_self, backend=pair.backend)
    assert out.shape == (*q.shape[:-1], k) and out.dtype == q.dtype and out.device == q.device
    eager = ref.knn_distance(q, r, k, exclude_self)
    truth = ref.knn_distance(q.double(), r.double(), k, exclude_self)
    gs.assert_within_budget(out, eager, truth, what=what, **KNN_TOL[q.dtype])
    return out


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("n, m, d", SHAPES)
def test_kde_matches_float64_truth(pair, dtype, n, m, d):
    q, r = _data(n, m, d, dtype, pair.dev)
    h = 0.6 + 0.05 * d  # keeps log p in a range where every backend's sums matter
    _check_kde(pair, q, r, h, what=f"kde[{pair}] {str(dtype)[6:]} {n}x{m}x{d}" if n >= 1000 else "")


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("n, m, d", SHAPES)
def test_knn_matches_float64_truth(pair, dtype, n, m, d):
    q, r = _data(n, m, d, dtype, pair.dev, seed=1)
    for k in sorted({1, min(m, 5), min(m, 33)}):
        out = _check_knn(pair, q, r, k, what=f"knn[{pair}] {str(dtype)[6:]} {n}x{m}x{d} k={k}" if n >= 1000 else "")
        assert bool((out[:, 1:] >= out[:, :-1]).all()), "distances must come out ascending"


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("n, d", [(2, 1), (9, 4), (200, 33), (1111, 8)])
def test_exclude_self_leaves_each_point_out(pair, dtype, n, d):
    x, _ = _data(n, 1, d, dtype, pair.dev, seed=2)
    kde = _check_kde(pair, x, x, 0.9, exclude_self=True)
    i = n // 2  # by hand: the leave-one-out density is the density under the other n − 1 points
    others = torch.cat([x[:i], x[i + 1:]])
    torch.testing.assert_close(kde[i].double(), ref.kde_logpdf(x[i:i + 1].double(), others.double(), 0.9)[0],
                               rtol=KDE_TOL[dtype]["rtol"], atol=KDE_TOL[dtype]["atol"] + 1e-5)
    for k in sorted({1, min(n - 1, 7)}):
        knn = _check_knn(pair, x, x, k, exclude_self=True)
        assert bool((knn[:, 0] > 0).all()), "a point must not be its own nearest neighbour"


def test_exclude_self_keeps_duplicates_of_a_point(pair):
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], device=pair.dev)
    knn = ops.knn_distance(x, x, 1, exclude_self=True, backend=pair.backend)
    torch.testing.assert_close(knn.cpu(), torch.tensor([[0.0], [0.0], [5.0]]))


def test_values_by_hand(pair):
    q = torch.tensor([[0.0, 0.0]], dtype=torch.float64, device=pair.dev)
    r = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64, device=pair.dev)
    h = 2.0
    expected = math.log((math.exp(-25 / 8) + math.exp(-1 / 8)) / 2) - math.log(2 * math.pi * h * h)
    torch.testing.assert_close(ops.kde_logpdf(q, r, h, backend=pair.backend).cpu(),
                               torch.tensor([expected], dtype=torch.float64))
    torch.testing.assert_close(ops.knn_distance(q, r, 2, backend=pair.backend).cpu(),
                               torch.tensor([[1.0, 5.0]], dtype=torch.float64))


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_column_slices_are_read_in_place(pair, dtype):
    qb, rb = _data(500, 700, 40, dtype, pair.dev, seed=3)
    q, r = qb[:, 3:20], rb[:, 11:28]
    assert not q.is_contiguous() and not r.is_contiguous()
    torch.testing.assert_close(ops.kde_logpdf(q, r, 1.1, backend=pair.backend),
                               ops.kde_logpdf(q.contiguous(), r.contiguous(), 1.1, backend=pair.backend), rtol=0, atol=0)
    torch.testing.assert_close(ops.knn_distance(q, r, 6, backend=pair.backend),
                               ops.knn_distance(q.contiguous(), r.contiguous(), 6, backend=pair.backend), rtol=0,
                               atol=0)


def test_leading_batch_shape(pair):
    q, r = _data(24, 50, 6, torch.float64, pair.dev, seed=4)
    kde = ops.kde_logpdf(q.view(2, 3, 4, 6), r, 0.8, backend=pair.backend)
    knn = ops.knn_distance(q.view(2, 3, 4, 6), r, 3, backend=pair.backend)
    assert kde.shape == (2, 3, 4) and knn.shape == (2, 3, 4, 3)
    torch.testing.assert_close(kde.reshape(-1), ops.kde_logpdf(q, r, 0.8, backend=pair.backend), rtol=0, atol=0)
    torch.testing.assert_close(knn.reshape(-1, 3), ops.knn_distance(q, r, 3, backend=pair.backend), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_far_queries_and_a_large_offset(pair, dtype):
    # Far from every reference: tiny densities are summed in log space, not underflowed to -inf.
    q, r = _data(70, 90, 5, dtype, pair.dev, seed=5)
    far = q + 40.0
    out = _check_kde(pair, far, r, 0.7)
    assert torch.isfinite(out).all()
    _check_knn(pair, far, r, 4)
    q, r = _data(70, 90, 5, dtype, pair.dev, seed=6, offset=1000.0)  # shared offset, unit spread
    _check_kde(pair, q, r, 0.7)
    _check_knn(pair, q, r, 4)


def _nonfinite_case(dtype, device):
    """As tests/test_distance_ops.py: NaN and infinite queries and references, and huge finite values."""
    q, r = _data(6, 9, 3, dtype, "cpu", seed=7)
    q[1, 2] = math.nan         # a NaN query
    q[2, 0] = math.inf         # an infinite query
    q[3, 1] = 1e19 if dtype == torch.float32 else 1e154   # finite, d² still fits the dtype
    r[4, 1] = math.inf         # an infinite reference
    r[5, 0] = -math.inf        # inf − (−inf) = inf against query 2; r[7] below gives inf − inf = NaN
    r[7, 0] = math.inf
    r[8, 2] = 1e19 if dtype == torch.float32 else 1e154
    return q.to(device), r.to(device)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_nonfinite_values_follow_the_reference(pair, dtype):
    q, r = _nonfinite_case(dtype, pair.dev)
    kde = ops.kde_logpdf(q, r, 0.9, backend=pair.backend)
    torch.testing.assert_close(kde.double(), ref.kde_logpdf(q.double(), r.double(), 0.9), equal_nan=True,
                               **KDE_TOL[dtype])
    kde = kde.cpu()
    assert math.isnan(kde[1]) and math.isnan(kde[2])
    assert torch.isfinite(kde[[0, 3, 4, 5]]).all(), "infinite references add nothing to a finite query's density"
    for k in (1, 5, 6, 9):
        knn = ops.knn_distance(q, r, k, backend=pair.backend)
        torch.testing.assert_close(knn.double(), ref.knn_distance(q.double(), r.double(), k), equal_nan=True,
                                   **KNN_TOL[dtype])
    knn = ops.knn_distance(q, r, 9, backend=pair.backend).cpu()
    assert torch.isnan(knn[1]).all()
    assert torch.isinf(knn[0, -3:]).all() and torch.isfinite(knn[0, :-3]).all()
    assert torch.isnan(knn[2, -1]) and torch.isinf(knn[2, :-1]).all()


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_nan_reference(pair, dtype):
    q, r = _data(5, 8, 4, dtype, pair.dev, seed=8)
    r[3, 0] = math.nan
    assert torch.isnan(ops.kde_logpdf(q, r, 1.0, backend=pair.backend)).all()  # a NaN term makes every density NaN
    knn = ops.knn_distance(q, r, 8, backend=pair.backend)                       # ... and ranks last among neighbours
    assert torch.isnan(knn[:, -1]).all() and torch.isfinite(knn[:, :-1]).all()
    torch.testing.assert_close(knn.double(), ref.knn_distance(q.double(), r.double(), 8), equal_nan=True,
                               **KNN_TOL[dtype])
    x = r.clone()
    torch.testing.assert_close(ops.knn_distance(x, x, 7, True, backend=pair.backend).double(),
                               ref.knn_distance(x.double(), x.double(), 7, True), equal_nan=True, **KNN_TOL[dtype])


def test_opcheck(pair):
    ns = gs.need_ops(pair)
    q, r = _data(11, 17, 5, torch.float32, pair.dev, seed=11)
    torch.library.opcheck(ns.kde_logpdf, (q, r, 0.8, False))
    torch.library.opcheck(ns.kde_logpdf, (r, r, 0.8, True))
    torch.library.opcheck(ns.kde_logpdf, (q[:, 1:4], r[:, :3], 1.5, False))
    torch.library.opcheck(ns.knn_distance, (q, r, 4, False))
    torch.library.opcheck(ns.knn_distance, (r, r, 16, True))
    torch.library.opcheck(ns.knn_distance, (q[:0], r, 2, False))
