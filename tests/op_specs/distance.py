"""Spec of the reference-set scorers: ``kde_logpdf`` (Gaussian KDE log-density, an online log-sum-exp over tiles)
and ``knn_distance`` (the k smallest Euclidean distances, ascending), queries q [*, D] against refs r [M, D],
``exclude_self`` leaving out r[i] for query i. Oracle: :mod:`genad_fast.reference.distance`; the truth is the
oracle in float64.
"""
from __future__ import annotations

import math

import torch

from genad_fast import ops
from genad_fast.reference import distance as ref
from op_specs.compare import EXACT, F32, F64, Tolerances, assert_within_budget, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, on_gpu, sized

OPS = ("kde_logpdf", "knn_distance")
# (n, m, d): empty queries, one point, more refs than queries and fewer, one column, a single ref; tiles of
# queries x refs cut anywhere ((33, 65, 5), (40, 130, 17): several Triton tiles); many CPU blocks; on a GPU,
# 3000 x 4000 x 25 (many tiles of 64 x 64), cut to 600 x 700 where the GPU runner runs on the CPU.
SHAPES = [(0, 5, 3), (1, 1, 1), (7, 13, 3), (13, 7, 1), (5, 1, 2), (33, 65, 5), (40, 33, 17), (40, 130, 17),
          sized((300, 517, 33), MEDIUM), sized((129, 1000, 64), MEDIUM),
          sized(on_gpu((3000, 4000, 25), (600, 700, 25)), LARGE)]
# (n, d) for exclude_self (x against itself).
EXCLUDE_SELF = [(2, 1), (9, 4), (70, 6), sized((200, 33), MEDIUM), sized((611, 8), MEDIUM), sized((1111, 8), LARGE)]

# Against the float64 truth. KDE float32 on the CPU: distances from the expansion |q|²+|r|²−2q·r in float32
# (centred rows; error ~ eps·|q|²) and lane sums in float32 — within scikit-learn's 1e-4 criterion, with room;
# float64: 1e-12 relative, 1e-10 absolute for log-densities of tens of nats.
KDE_TOL = Tolerances({F32: tol(2e-6, 1e-4), F64: tol(1e-12, 1e-10)})
# kNN: the winners' distances are recomputed exactly, so only the final rounding to the dtype remains.
KNN_TOL = Tolerances({F32: tol(2e-6), F64: tol(1e-12)})
# On top of KDE_TOL / KNN_TOL, how many times the eager result's own error (same dtype, against the truth) a
# backend may add (flash-attention's budget). The CPU kernels, the eager oracle and the interpreter (direct
# differences and a float64 log-sum-exp in numpy) are held to the truth alone; on the GPU, CUDA's and Triton's
# float32 sums run in other orders and tiles, with libdevice's exp/log: twice the eager error.
EAGER_FACTOR = {"eager": 0.0, "cpu": 0.0, "interpreter": 0.0, "cuda": 2.0, "triton": 2.0}
# A query 1000 away from every ref: log p ~ −2e6, float32 spacing there is 0.125; 1e-3 absolute after rtol.
FAR_TOL = tol(1e-6, 1e-3)
# Refs and queries offset by 1e4 in float32 (|q|² ~ 1e8 next to distances ~ 1): without centring the expansion
# would lose every digit; centred (or direct differences), the float32 inputs themselves carry 1e4·eps ~ 1e-3.
OFFSET_KDE_TOL, OFFSET_KNN_TOL = tol(0.0, 5e-3), tol(1e-5, 1e-3)
# Bandwidths so large that h² overflows: log p = −(D/2)·(log 2π + 2·log h), to the dtype's rounding of ~700.
HUGE_BANDWIDTH_TOL = tol(1e-6, 0.0)
# CPU runner only. Hypothesis, float64 over random scales and bandwidths: 1e-10 relative (1e-9 absolute for KDE).
HYPOTHESIS_KDE_TOL, HYPOTHESIS_KNN_TOL = tol(1e-10, 1e-9), tol(1e-10)
# scikit-learn's KernelDensity(score_samples) and NearestNeighbors on these data: absolute 1e-4 (float32) / 1e-9
# (float64) for log-densities; 1e-6 for distances (sklearn computes them in float64 by another expansion).
SKLEARN_KDE_TOL = {F32: tol(0.0, 1e-4), F64: tol(0.0, 1e-9)}
SKLEARN_KNN_TOL = tol(1e-6)


def data(n, m, d, dtype, device="cpu", seed=0, scale=1.0, offset=0.0):
    """Queries [n, d] and refs [m, d], standard normal (times ``scale``, plus ``offset``), drawn in float64."""
    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(n, d, generator=g, dtype=F64) + offset
    r = scale * torch.randn(m, d, generator=g, dtype=F64) + offset
    return q.to(dtype).to(device), r.to(dtype).to(device)


def kde(target: Target, q, r, h, exclude_self=False):
    return ops.kde_logpdf(q, r, h, exclude_self=exclude_self, backend=target.backend)


def knn(target: Target, q, r, k, exclude_self=False):
    return ops.knn_distance(q, r, k, exclude_self, backend=target.backend)


def ks(target: Target, m: int) -> list[int]:
    """k = 1, a few, and many (m itself on the CPU; the interpreter merges a tile in k rounds, so at most 16)."""
    return sorted({1, min(m, 4), min(m, 5), min(m, target.pick(16, m, 33))})


def check_kde(target: Target, q, r, h, exclude_self=False) -> tuple[float, float]:
    """The fused log-density within the budget of the float64 truth; returns (its error, eager's error)."""
    out = kde(target, q, r, h, exclude_self)
    assert out.shape == q.shape[:-1] and out.dtype == q.dtype and out.device == q.device
    eager = ref.kde_logpdf(q, r, h, exclude_self)
    truth = ref.kde_logpdf(q.double(), r.double(), h, exclude_self)
    return assert_within_budget(out, eager, truth, factor=EAGER_FACTOR[target.kind], **KDE_TOL(target, q.dtype))


def check_knn(target: Target, q, r, k, exclude_self=False) -> tuple[float, float]:
    """The fused distances ascending and within the budget of the float64 truth; returns the errors."""
    out = knn(target, q, r, k, exclude_self)
    assert out.shape == (*q.shape[:-1], k) and out.dtype == q.dtype and out.device == q.device
    assert bool((out[..., 1:] >= out[..., :-1]).all()), "distances must come out ascending"
    eager = ref.knn_distance(q, r, k, exclude_self)
    truth = ref.knn_distance(q.double(), r.double(), k, exclude_self)
    return assert_within_budget(out, eager, truth, factor=EAGER_FACTOR[target.kind], **KNN_TOL(target, q.dtype))


def check_kde_matches_truth(target: Target, dtype, n, m, d):
    q, r = data(n, m, d, dtype, target.dev)
    return check_kde(target, q, r, 0.6 + 0.05 * d)  # h keeps log p in a range where every backend's sums matter


def check_knn_matches_truth(target: Target, dtype, n, m, d) -> dict:
    q, r = data(n, m, d, dtype, target.dev, seed=1)
    return {k: check_knn(target, q, r, k) for k in ks(target, m)}


def check_exclude_self(target: Target, dtype, n, d):
    x, _ = data(n, 1, d, dtype, target.dev, seed=2)
    out = kde(target, x, x, 0.9, True)
    check_kde(target, x, x, 0.9, exclude_self=True)
    i = n // 2  # by hand: the leave-one-out density is the density under the other n − 1 points
    others = torch.cat([x[:i], x[i + 1:]])
    assert_within_budget(out[i:i + 1], ref.kde_logpdf(x[i:i + 1], others, 0.9),
                         ref.kde_logpdf(x[i:i + 1].double(), others.double(), 0.9),
                         factor=EAGER_FACTOR[target.kind], **KDE_TOL(target, dtype))
    for k in sorted({1, min(n - 1, 3), min(n - 1, 7), target.pick(min(n - 1, 7), n - 1, min(n - 1, 7))}):
        check_knn(target, x, x, k, exclude_self=True)
        assert bool((knn(target, x, x, k, True)[:, 0] > 0).all()), "a point must not be its own nearest neighbour"


def check_exclude_self_keeps_duplicates(target: Target, dtype):
    """Only j == i is left out: an identical copy at another index is a neighbour at distance 0."""
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=dtype, device=target.dev)
    torch.testing.assert_close(knn(target, x, x, 1, True).cpu(), torch.tensor([[0.0], [0.0], [5.0]], dtype=dtype))


def check_knn_ties_over_many_cuts(target: Target, dtype):
    """Refs on a coarse integer grid, each row four times (exact ties in every distance), many more than k: the
    candidate lists are cut back to k again and again during a search (on the CPU by insertion up to k = 32 and by
    selection above), and the distances still come out as the reference's, with and without exclude_self."""
    g = torch.Generator().manual_seed(31)
    grid = torch.randint(-3, 4, (1500, 6), generator=g).to(F64)
    r = grid.repeat(4, 1)[torch.randperm(6000, generator=g)].to(dtype).to(target.dev)
    q = torch.randint(-3, 4, (37, 6), generator=g).to(F64).add_(0.25).to(dtype).to(target.dev)
    for k in (1, 10, 32, 33, 80):
        close(knn(target, q, r, k).double(), ref.knn_distance(q.double(), r.double(), k), KNN_TOL(target, dtype))
        x = r[:700]
        close(knn(target, x, x, k, True).double(), ref.knn_distance(x.double(), x.double(), k, True),
              KNN_TOL(target, dtype))


def check_values_by_hand(target: Target):
    q = torch.tensor([[0.0, 0.0]], dtype=F64, device=target.dev)
    r = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=F64, device=target.dev)
    h = 2.0
    expected = math.log((math.exp(-25 / 8) + math.exp(-1 / 8)) / 2) - math.log(2 * math.pi * h * h)
    torch.testing.assert_close(kde(target, q, r, h).cpu(), torch.tensor([expected], dtype=F64))
    torch.testing.assert_close(knn(target, q, r, 2).cpu(), torch.tensor([[1.0, 5.0]], dtype=F64))


def check_column_slices(target: Target, dtype):
    """Column slices of bigger matrices are read in place: the same numbers as their contiguous copies."""
    qb, rb = data(target.pick(20, 50, 500), target.pick(70, 70, 700), 40, dtype, target.dev, seed=3)
    q, r = qb[:, 3:20], rb[:, 11:28]
    assert not q.is_contiguous() and not r.is_contiguous()
    close(kde(target, q, r, 1.1), kde(target, q.contiguous(), r.contiguous(), 1.1), EXACT)
    close(knn(target, q, r, 5), knn(target, q.contiguous(), r.contiguous(), 5), EXACT)
    check_kde(target, q, r, 1.1)
    check_knn(target, q, r, 5)


def check_leading_batch_shape(target: Target):
    q, r = data(24, 50, 6, F64, target.dev, seed=4)
    batched_kde, batched_knn = kde(target, q.view(2, 3, 4, 6), r, 0.8), knn(target, q.view(2, 3, 4, 6), r, 3)
    assert batched_kde.shape == (2, 3, 4) and batched_knn.shape == (2, 3, 4, 3)
    close(batched_kde.reshape(-1), kde(target, q, r, 0.8), EXACT)
    close(batched_knn.reshape(-1, 3), knn(target, q, r, 3), EXACT)
    assert kde(target, q[0], r, 0.8).shape == () and knn(target, q[0], r, 3).shape == (3,)


def check_far_from_everything(target: Target):
    """Every kernel value underflows to 0 in any floating-point type; the log-sum-exp must still give the exact
    log-density (about −d²/(2h²)), not −inf."""
    q = torch.tensor([[1000.0, 0.0]], device=target.dev)
    r = torch.tensor([[0.0, 0.0], [0.0, 1.0]], device=target.dev)
    out = kde(target, q, r, 0.5)
    close(out.double(), ref.kde_logpdf(q.double(), r.double(), 0.5), FAR_TOL)
    assert math.isfinite(out.item()) and out.item() < -1e6


def check_far_queries_and_large_offsets(target: Target, dtype):
    """Queries 40 away from every ref (tiny densities summed in log space), then refs and queries sharing an
    offset of 1000 (unit spread): within the budget of the truth."""
    q, r = data(70, 90, 5, dtype, target.dev, seed=5)
    assert torch.isfinite(kde(target, q + 40.0, r, 0.7)).all()
    check_kde(target, q + 40.0, r, 0.7)
    check_knn(target, q + 40.0, r, 4)
    q, r = data(70, 90, 5, dtype, target.dev, seed=6, offset=1000.0)
    check_kde(target, q, r, 0.7)
    check_knn(target, q, r, 4)


def check_large_offset_in_float32(target: Target):
    """|q|² ~ 1e8 next to distances ~ 1: the expansion would lose every digit in float32 without centring."""
    q, r = data(60, 80, 5, F32, target.dev, seed=5, offset=1e4)
    close(kde(target, q, r, 1.0).double(), ref.kde_logpdf(q.double(), r.double(), 1.0), OFFSET_KDE_TOL)
    close(knn(target, q, r, 3).double(), ref.knn_distance(q.double(), r.double(), 3), OFFSET_KNN_TOL)


def nonfinite_case(dtype, device="cpu"):
    """NaN and infinite queries and refs, and huge finite values."""
    q, r = data(6, 9, 3, dtype, seed=7)
    q[1, 2] = math.nan         # a NaN query
    q[2, 0] = math.inf         # an infinite query
    # Finite, but |q|² too large for the expansion (the CPU kernel's exact path), while d² still fits the dtype.
    q[3, 1] = 1e19 if dtype == F32 else 1e154
    r[4, 1] = math.inf         # an infinite ref
    r[5, 0] = -math.inf        # inf − (−inf) = inf against query 2; r[7] below gives inf − inf = NaN
    r[7, 0] = math.inf
    r[8, 2] = 1e19 if dtype == F32 else 1e154  # a huge finite ref: must not spoil the centre
    return q.to(device), r.to(device)


def check_nonfinite_values(target: Target, dtype):
    q, r = nonfinite_case(dtype, target.dev)
    out = kde(target, q, r, 0.9)
    close(out.double(), ref.kde_logpdf(q.double(), r.double(), 0.9), KDE_TOL(target, dtype), equal_nan=True)
    out = out.cpu()
    assert math.isnan(out[1]) and math.isnan(out[2])  # query 2 meets inf − inf against r[7]
    assert torch.isfinite(out[[0, 3, 4, 5]]).all(), "infinite refs add nothing to a finite query's density"
    for k in (1, 5, 6, 9):
        close(knn(target, q, r, k).double(), ref.knn_distance(q.double(), r.double(), k), KNN_TOL(target, dtype),
              equal_nan=True)
    out = knn(target, q, r, 9).cpu()
    assert torch.isnan(out[1]).all()
    assert torch.isinf(out[0, -3:]).all() and torch.isfinite(out[0, :-3]).all()
    assert torch.isnan(out[2, -1]) and torch.isinf(out[2, :-1]).all()


def check_nan_reference(target: Target, dtype):
    q, r = data(5, 8, 4, dtype, target.dev, seed=8)
    r[3, 0] = math.nan
    assert torch.isnan(kde(target, q, r, 1.0)).all()  # a NaN term makes every density NaN ...
    out = knn(target, q, r, 8)                         # ... and ranks after every number among the neighbours
    assert torch.isnan(out[:, -1]).all() and torch.isfinite(out[:, :-1]).all()
    tolerance = KNN_TOL(target, dtype)
    close(out.double(), ref.knn_distance(q.double(), r.double(), 8), tolerance, equal_nan=True)
    close(knn(target, q, r, 7).double(), ref.knn_distance(q.double(), r.double(), 7), tolerance)
    x = r.clone()  # exclude_self with a NaN row: its own entry is skipped, the others see a NaN neighbour last
    close(knn(target, x, x, 7, True).double(), ref.knn_distance(x.double(), x.double(), 7, True), tolerance,
          equal_nan=True)


def check_huge_bandwidth(target: Target, dtype, h):
    """Issue #12: log(2πh²) was taken of h² itself, which overflows for h > 1.3e154: the density was −inf. For
    data far smaller than h every kernel term is 1, so log p = −(D/2)·(log 2π + 2·log h) exactly."""
    q, r = data(5, 7, 3, dtype, target.dev, seed=22)
    want = -1.5 * (math.log(2.0 * math.pi) + 2.0 * math.log(h))
    close(kde(target, q, r, h).cpu(), torch.full((5,), want, dtype=dtype), HUGE_BANDWIDTH_TOL)


def check_any_layout(target: Target):
    """Issue #12: queries and refs of any layout are accepted (a view where the kernels can read it, else one
    copy); broadcast rows (row stride 0) are read in place."""
    q, r = data(6, 9, 5, F64, target.dev, seed=21)
    layouts = [(q.t().contiguous().t(), r.t().contiguous().t()),
               (torch.stack([q, q], -1)[..., 0], torch.stack([r, r], -1)[..., 0]),
               (q.reshape(2, 3, 5).transpose(0, 1), r),
               (q[:1].expand(6, 5), r[:1].expand(4, 5))]
    for qs, rs in layouts:
        close(kde(target, qs, rs, 0.7), ref.kde_logpdf(qs.contiguous(), rs.contiguous(), 0.7), KDE_TOL(target, F64))
        close(knn(target, qs, rs, 3), ref.knn_distance(qs.contiguous(), rs.contiguous(), 3), KNN_TOL(target, F64))


def opcheck_samples(target: Target) -> dict:
    q, r = data(11, 17, 5, F32, target.dev, seed=11)
    return {
        "kde_logpdf": [(q, r, 0.8, False), (r, r, 0.8, True), (q[:, 1:4], r[:, :3], 1.5, False)],
        "knn_distance": [(q, r, 4, False), (r, r, 16, True), (q[:0], r, 2, False), (r[:, 1:4], r[:, :3], 3, True)],
    }


OPCHECK = ("kde_logpdf", "knn_distance")
