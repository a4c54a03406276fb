"""Sliding windows (views), window scores back to timestamps, the per-channel Normalizer."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genad_fast.series import (
    Normalizer,
    WindowGrid,
    iter_window_batches,
    n_window_batches,
    n_windows,
    sliding_windows,
    window_starts,
    windows_to_timestamps,
)


def _loop_reference(scores: torch.Tensor, T: int, W: int, S: int, reduce: str) -> torch.Tensor:
    """Slow obvious twin: collect every covering window's score per timestamp."""
    starts = window_starts(T, W, S).tolist()
    per_t: list[list[float]] = [[] for _ in range(T)]
    for i, s in enumerate(starts):
        for k in range(W):
            v = scores[i] if scores.dim() == 1 else scores[i, k]
            per_t[s + k].append(float(v))
    agg = {"mean": lambda v: sum(v) / len(v), "max": max, "min": min}[reduce]
    return torch.tensor([agg(v) for v in per_t], dtype=torch.float64)


# ------------------------------------------------------------------ starts and views
def test_window_starts_grid_and_tail():
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]          # 6 + 4 = 10: on the grid
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]       # tail window aligned to the end
    assert window_starts(4, 4, 1).tolist() == [0]                 # exactly one window
    assert window_starts(5, 4, 4).tolist() == [0, 1]              # stride = window, tail overlaps
    assert n_windows(11, 4, 3) == 4 and n_windows(10, 4, 1) == 7


def test_sliding_windows_is_a_view_with_the_right_values():
    x = torch.randn(11, 3)
    w = sliding_windows(x, 4, 3)
    assert w.shape == (3, 4, 3)
    assert w.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    for i, s in enumerate([0, 3, 6]):
        assert torch.equal(w[i], x[s:s + 4])
    x[4, 1] = 123.0  # a write through the series shows in every window holding it
    assert w[1, 1, 1] == 123.0


def test_sliding_windows_of_a_column_slice_and_1d():
    big = torch.randn(20, 6)
    cols = big[:, 1:4]
    w = sliding_windows(cols, 5, 2)
    assert w.untyped_storage().data_ptr() == big.untyped_storage().data_ptr()
    assert torch.equal(w[2], cols[4:9])
    v = torch.arange(7.0)
    w1 = sliding_windows(v, 3, 1)
    assert w1.shape == (5, 3) and torch.equal(w1[4], v[4:7])


def test_iter_window_batches_covers_every_start_with_views():
    x = torch.randn(23, 2)
    W, S = 5, 4
    batches = list(iter_window_batches(x, W, S, batch_size=2))
    assert len(batches) == n_window_batches(23, W, S, 2)
    got = torch.cat([b.clone() for b in batches])
    starts = window_starts(23, W, S)
    assert torch.equal(got, torch.stack([x[s:s + W] for s in starts.tolist()]))
    for b in batches:
        assert b.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert batches[-1].shape[0] == 1 and torch.equal(batches[-1][0], x[-W:])


@pytest.mark.parametrize("T, W, S", [(10, 4, 3), (11, 4, 3), (4, 4, 1), (5, 4, 4), (23, 5, 4), (100, 7, 1)])
def test_window_grid_is_the_functions_in_one_object(T, W, S):
    grid = WindowGrid(T, W, S)
    starts = window_starts(T, W, S)
    assert torch.equal(grid.starts(), starts) and grid.n_windows == n_windows(T, W, S) == starts.numel()
    assert grid.n_grid == sliding_windows(torch.zeros(T, 1), W, S).shape[0]
    assert grid.has_tail == (grid.n_windows > grid.n_grid) and (not grid.has_tail or starts[-1] == T - W)
    assert grid.n_batches(2) == n_window_batches(T, W, S, 2) == len(list(grid.batches(torch.zeros(T, 2), 2)))
    scores = torch.rand(grid.n_windows, dtype=torch.float64)
    assert torch.equal(grid.to_timestamps(scores, "max"), windows_to_timestamps(scores, T, W, S, reduce="max"))
    x = torch.randn(T, 2)
    assert torch.equal(grid.windows(x), sliding_windows(x, W, S))
    with pytest.raises(AttributeError):
        grid.T = 3  # frozen


def test_window_grid_counts_by_hand():
    g = WindowGrid(11, 4, 3)  # grid starts 0, 3, 6; the end window starts at 7
    assert (g.n_grid, g.has_tail, g.n_windows, g.starts().tolist()) == (3, True, 4, [0, 3, 6, 7])
    assert g.n_batches(2) == 3  # [0, 3], [6], [7]
    assert not WindowGrid(10, 4, 3).has_tail and WindowGrid(10, 4, 3).n_windows == 3
    with pytest.raises(ValueError, match="longer than window"):
        WindowGrid(10, 4, 5)


@pytest.mark.parametrize("T, W, S", [(3, 4, 1), (10, 0, 1), (10, 4, 0), (10, 4, 5)])
def test_bad_geometry(T, W, S):
    with pytest.raises(ValueError, match="shorter than window|window must be|stride must be|longer than window"):
        window_starts(T, W, S)


# ------------------------------------------------------------------ aggregation
def test_hand_worked_mean_and_max_with_tail():
    # T=11, W=4, S=3: starts 0, 3, 6, 7; window scores 0, 1, 2, 3.
    s = torch.tensor([0.0, 1.0, 2.0, 3.0])
    mean = windows_to_timestamps(s, 11, 4, 3, "mean")
    assert mean.tolist() == [0, 0, 0, 0.5, 1, 1, 1.5, 2.5, 2.5, 2.5, 3]
    mx = windows_to_timestamps(s, 11, 4, 3, "max")
    assert mx.tolist() == [0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 3]
    mn = windows_to_timestamps(s, 11, 4, 3, "min")
    assert mn.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


def test_min_keeps_a_window_score_on_the_timestamps_every_covering_window_shares():
    # T=9, W=3, S=1: only the windows at starts 3, 4, 5 contain t=5, and only t=5 lies in all of them.
    s = torch.zeros(7)
    s[3:6] = 10.0
    assert windows_to_timestamps(s, 9, 3, 1, "min").tolist() == [0, 0, 0, 0, 0, 10, 0, 0, 0]
    assert windows_to_timestamps(s, 9, 3, 1, "max").tolist() == [0, 0, 0, 10, 10, 10, 10, 10, 0]


def test_hand_worked_per_timestamp_scores():
    # T=5, W=3, S=1: starts 0, 1, 2; t=2 is covered by all three windows at offsets 2, 1, 0.
    s = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [100.0, 200.0, 300.0]])
    mean = windows_to_timestamps(s, 5, 3, 1, "mean")
    assert mean.tolist() == [1.0, (2 + 10) / 2, (3 + 20 + 100) / 3, (30 + 200) / 2, 300.0]
    assert windows_to_timestamps(s, 5, 3, 1, "max").tolist() == [1, 10, 100, 200, 300]


def test_exactly_one_window():
    s = torch.tensor([2.5])
    assert windows_to_timestamps(s, 4, 4, 1).tolist() == [2.5] * 4
    per_t = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert windows_to_timestamps(per_t, 4, 4, 4, "max").tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("per_t", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("reduce", ["mean", "max", "min"])
def test_nan_and_inf_stay_local(per_t, stride, reduce):
    T, W = 12, 3
    n = n_windows(T, W, stride)
    s = torch.arange(float(n)) if not per_t else torch.arange(float(n)).unsqueeze(1).repeat(1, W)
    s[1] = float("nan")  # window 1 covers stride .. stride + 2
    s[n - 1] = float("inf")  # the last window covers T-3 .. T-1
    out = windows_to_timestamps(s, T, W, stride, reduce)
    covered = set(range(stride, stride + W))
    assert all(torch.isnan(out[t]) == (t in covered) for t in range(T))
    assert torch.isposinf(out[T - 1]) and out[0] == 0.0


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 40), W=st.integers(1, 12), S=st.integers(1, 15), per_t=st.booleans(),
       reduce=st.sampled_from(["mean", "max", "min"]), seed=st.integers(0, 2**16))
def test_matches_loop_reference(T, W, S, per_t, reduce, seed):
    W = min(W, T)
    S = min(S, W)
    n = n_windows(T, W, S)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn((n, W) if per_t else (n,), generator=g, dtype=torch.float64)
    out = windows_to_timestamps(scores, T, W, S, reduce)
    assert out.shape == (T,)
    torch.testing.assert_close(out, _loop_reference(scores, T, W, S, reduce))


def test_aggregation_shape_errors():
    with pytest.raises(ValueError, match="gives 4"):
        windows_to_timestamps(torch.zeros(3), 11, 4, 3)
    with pytest.raises(ValueError, match=r"\[4, 4\]"):
        windows_to_timestamps(torch.zeros(4, 3), 11, 4, 3)
    with pytest.raises(ValueError, match="reduce"):
        windows_to_timestamps(torch.zeros(4), 11, 4, 3, "median")


# ------------------------------------------------------------------ normaliser
def test_normalizer_fit_transform_and_constant_channel():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5, 0.0]) + \
        torch.tensor([1.0, -3.0, 7.0])
    norm = Normalizer.fit(x)
    torch.testing.assert_close(norm.mean, x.mean(0))
    assert norm.scale[2] == 1.0  # constant channel: centred, not divided by ~0
    torch.testing.assert_close(norm.scale[:2], x[:, :2].std(0, unbiased=False))
    z = norm.transform(x)
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z[:, :2].std(0, unbiased=False), torch.ones(2, dtype=torch.float64))
    assert torch.equal(z[:, 2], torch.zeros(500, dtype=torch.float64))
    torch.testing.assert_close(norm.inverse_transform(z), x)
    z32 = norm.transform(x.float())
    assert z32.dtype == torch.float32
    back = Normalizer.from_state_dict(norm.state_dict())
    assert torch.equal(back.mean, norm.mean) and torch.equal(back.scale, norm.scale)
    with pytest.raises(ValueError, match="2 channels"):
        norm.transform(torch.zeros(4, 2))


def test_normalizer_large_offset_constant_channel():
    x = torch.full((10, 1), 1e9, dtype=torch.float64)
    assert Normalizer.fit(x).scale.item() == 1.0
    y = torch.tensor([[1e9], [1e9 + 1]], dtype=torch.float64)
    assert math.isclose(Normalizer.fit(y).scale.item(), 0.5)
