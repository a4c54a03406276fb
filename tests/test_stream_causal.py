"""The causal reduction of genad_fast.streaming.causal against its definition, written out as a slow loop.

- causal_to_timestamps equals the definition (every W, S, delay, T on and off the stride grid, per-window and
  per-timestamp scores, mean/max/min) bit for bit: both add a timestamp's windows in window order in float64;
- PendingScores fed the windows in chunks of any sizes (as a stream) equals the one-pass batch form;
- delay = W - 1 is the centred batch reduction (windows_to_timestamps) when S divides T - W; the edges (the
  first W - 1 timestamps, timestamps between window ends with S > 1, the end-aligned window at the end);
- bad arguments are errors that name them.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from genad_fast.series import window_starts, windows_to_timestamps
from genad_fast.streaming.causal import CausalRule, PendingScores, causal_to_timestamps


def definition(scores: np.ndarray, T: int, W: int, S: int, d: int, reduce: str) -> np.ndarray:
    """The module docstring's rule, one timestamp at a time."""
    starts = window_starts(T, W, S).numpy()
    tail = (T - W) % S != 0
    out = np.empty(T)
    for t in range(T):
        covering = [j for j, s in enumerate(starts) if s <= t < s + W]
        grid = [j for j in covering if not (tail and j == len(starts) - 1)]
        first = min(starts[j] + W - 1 for j in grid) if grid else None
        h = max(t + d, first) if first is not None else np.inf
        use = [j for j in grid if starts[j] + W - 1 <= h]
        if h > T - 1 and tail and len(starts) - 1 in covering:  # pending at the end: the end-aligned window too
            use.append(len(starts) - 1)
        vals = [scores[j] if scores.ndim == 1 else scores[j, t - starts[j]] for j in use]
        assert vals, (t, T, W, S, d)
        if reduce == "mean":
            acc = 0.0
            for v in vals:
                acc = acc + v
            out[t] = acc / len(vals)
        else:
            out[t] = max(vals) if reduce == "max" else min(vals)
    return out


GEOMETRIES = [(1, 1, 0, 5), (4, 1, 0, 4), (4, 1, 3, 11), (5, 2, 1, 12), (5, 2, 4, 13), (6, 3, 0, 20),
              (6, 6, 5, 19), (6, 6, 0, 18), (7, 4, 2, 30), (8, 1, 7, 8), (8, 5, 6, 23)]


@pytest.mark.parametrize("W,S,d,T", GEOMETRIES)
@pytest.mark.parametrize("per_timestamp", [False, True])
@pytest.mark.parametrize("reduce", ["mean", "max", "min"])
def test_batch_form_is_the_definition(W, S, d, T, per_timestamp, reduce):
    n = len(window_starts(T, W, S))
    rng = np.random.default_rng(W * 100 + S * 10 + d)
    scores = rng.normal(size=(n, W) if per_timestamp else n)
    got = causal_to_timestamps(scores, T, W, S, d, reduce)
    np.testing.assert_array_equal(got, definition(scores, T, W, S, d, reduce))


@pytest.mark.parametrize("W,S,d,T", GEOMETRIES)
def test_chunked_windows_equal_one_pass(W, S, d, T):
    """A stream's order of events (timestamps arrive, the windows they complete are added, the due ones leave)
    in random chunk sizes gives the batch form's bits."""
    rule = CausalRule(W, S, d)
    n_grid = rule.n_grid(T)
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(n_grid + rule.needs_tail(T), W)).astype(np.float32).astype(np.float64)
    want = causal_to_timestamps(scores, T, W, S, d, "mean")
    for trial in range(5):
        p, seen, j, got = PendingScores(rule, "mean"), 0, 0, []
        while seen < T:
            k = int(rng.integers(1, 6))
            k = min(k, T - seen)
            p.extend(k)
            seen += k
            j1 = rule.n_grid(seen)
            p.add(j, scores[j:j1])
            j = j1
            idx, s = p.pop_due(seen)
            got.append((idx, s))
            assert p.acc.size <= max(d, S - 1, W - 1) + 1  # flat: at most W pending
        if rule.needs_tail(T):
            p.add_tail(scores[n_grid])
        got.append(p.pop_due(None))
        idx = np.concatenate([g[0] for g in got])
        np.testing.assert_array_equal(idx, np.arange(T))
        np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), want)


@pytest.mark.parametrize("W,S,T", [(5, 1, 17), (6, 2, 20), (6, 3, 21), (8, 8, 32), (4, 1, 4)])
@pytest.mark.parametrize("reduce", ["mean", "max", "min"])
@pytest.mark.parametrize("per_timestamp", [False, True])
def test_delay_w_minus_1_is_the_centred_reduction(W, S, T, reduce, per_timestamp):
    assert (T - W) % S == 0
    n = len(window_starts(T, W, S))
    scores = np.random.default_rng(3).normal(size=(n, W) if per_timestamp else n)
    got = causal_to_timestamps(scores, T, W, S, W - 1, reduce)
    want = windows_to_timestamps(torch.from_numpy(scores), T, W, S, reduce).numpy()
    if reduce == "mean":
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)  # another summation order
    else:
        np.testing.assert_array_equal(got, want)


def test_off_grid_end_differs_from_the_centred_reduction_at_one_timestamp_only():
    W, S, T = 6, 4, 21  # (21 - 6) % 4 = 3: the end-aligned window starts at 15, off the grid
    n = len(window_starts(T, W, S))
    scores = np.arange(1.0, n + 1.0) ** 2
    got = causal_to_timestamps(scores, T, W, S, W - 1, "mean")
    want = windows_to_timestamps(torch.from_numpy(scores), T, W, S, "mean").numpy()
    differ = np.nonzero(~np.isclose(got, want, rtol=1e-14))[0]
    np.testing.assert_array_equal(differ, [T - W])


def test_edges_of_the_rule():
    W, S = 5, 1
    rule = CausalRule(W, S, 0)
    t = np.arange(12)
    # the first W - 1 timestamps are due with the first window; later ones with the window ending at them
    np.testing.assert_array_equal(rule.horizon(t), np.maximum(t, W - 1))
    # with S = 3 a timestamp between window ends waits for the next one
    rule = CausalRule(5, 3, 0)
    np.testing.assert_array_equal(rule.first_end(np.arange(4, 12)), [4, 7, 7, 7, 10, 10, 10, 13])
    # d = 0, S = 1, per-window scores: after the first window, t takes exactly the window ending at t
    scores = np.arange(10.0)
    got = causal_to_timestamps(scores, 14, 5, 1, 0, "mean")
    np.testing.assert_array_equal(got[4:], scores)
    np.testing.assert_array_equal(got[:4], [0.0] * 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="delay must be in"):
        CausalRule(5, 1, 5)
    with pytest.raises(ValueError, match="delay must be in"):
        CausalRule(5, 1, -1)
    with pytest.raises(ValueError, match="stride"):
        CausalRule(5, 6, 0)
    with pytest.raises(TypeError, match="delay must be an int"):
        CausalRule(5, 1, 1.5)
    with pytest.raises(ValueError, match="reduce must be one of"):
        PendingScores(CausalRule(5), "median")
    with pytest.raises(ValueError, match="shorter than window"):
        causal_to_timestamps(np.zeros(1), 3, 5)
    with pytest.raises(ValueError, match=r"scores must be \[3\] or \[3, 5\]"):
        causal_to_timestamps(np.zeros(4), 7, 5)


def test_every_geometry_small():
    """Every W <= 5, S <= W, d < W, T in [W, 3W]: the batch form is the definition."""
    rng = np.random.default_rng(11)
    for W, S, d in itertools.product(range(1, 6), range(1, 6), range(5)):
        if S > W or d >= W:
            continue
        for T in range(W, 3 * W + 1):
            n = len(window_starts(T, W, S))
            scores = rng.normal(size=(n, W))
            np.testing.assert_array_equal(causal_to_timestamps(scores, T, W, S, d, "mean"),
                                          definition(scores, T, W, S, d, "mean"), err_msg=f"{W} {S} {d} {T}")


@pytest.mark.parametrize("reduce", ["mean", "max", "min"])
@pytest.mark.parametrize("W,S,T", [(5, 1, 30), (6, 2, 30), (6, 4, 31)])
def test_extreme_flags_reach_the_timestamps_as_in_batch(reduce, W, S, T):
    """Windows holding an extreme value: at d = W - 1 the +inf timestamps are infinite_timestamps' (on the grid);
    at every delay a chunked stream gives the batch form's +inf, and the other scores are the plain reduction."""
    from genad_fast.detectors._extremes import infinite_timestamps
    from genad_fast.series import WindowGrid

    rows = np.zeros(T, dtype=bool)
    rows[[3, 17]] = True
    starts = window_starts(T, W, S).numpy()
    holds = np.array([rows[s:s + W].any() for s in starts])
    scores = np.random.default_rng(0).normal(size=starts.size)
    for d in range(W):
        got = causal_to_timestamps(scores, T, W, S, d, reduce, holds)
        plain = causal_to_timestamps(scores, T, W, S, d, reduce)
        inf = np.isposinf(got)
        np.testing.assert_array_equal(got[~inf], plain[~inf])
        flags = causal_to_timestamps(np.where(holds, np.inf, 0.0), T, W, S, d, reduce)
        np.testing.assert_array_equal(inf, np.isposinf(flags))
        if d == W - 1 and (T - W) % S == 0:
            np.testing.assert_array_equal(inf, infinite_timestamps(torch.from_numpy(rows), WindowGrid(T, W, S),
                                                                   reduce).numpy())
        rule, p, got_s, seen, j = CausalRule(W, S, d), None, [], 0, 0
        p = PendingScores(rule, reduce)
        for k in [1, 2, 7, 3, 100]:
            k = min(k, T - seen)
            if not k:
                break
            p.extend(k)
            seen += k
            j1 = rule.n_grid(seen)
            p.add(j, scores[j:j1], holds[j:j1])
            j = j1
            got_s.append(p.pop_due(seen)[1])
        if rule.needs_tail(T):
            p.add_tail(scores[-1:], bool(holds[-1]))
        got_s.append(p.pop_due(None)[1])
        np.testing.assert_array_equal(np.concatenate(got_s), got)


@pytest.mark.parametrize("reduce", ["mean", "max", "min"])
@pytest.mark.parametrize("per_timestamp", [False, True])
def test_few_windows_path_and_due_count_equal_the_vectorised_rule(reduce, per_timestamp, monkeypatch):
    """PendingScores adds a few windows (a stream's update) one slice each and counts the due timestamps in
    closed form; both equal the vectorised pass and the horizon h(t) <= arrived - 1, update by update, bitwise."""
    import genad_fast.streaming.causal as causal

    rng = np.random.default_rng(3)
    for W, S, d, T in [(1, 1, 0, 9), (5, 1, 0, 40), (5, 1, 4, 40), (6, 2, 1, 41), (6, 3, 5, 47), (8, 8, 3, 50),
                       (16, 4, 7, 97), (16, 1, 15, 70)]:
        rule = CausalRule(W, S, d)
        n = rule.n_grid(T)
        scores = rng.normal(size=(n, W) if per_timestamp else n)
        chunks = [int(c) for c in rng.integers(1, 12, size=T)]
        runs = []
        for few in (causal._FEW_WINDOWS, 0):  # the slice path for small updates, then the vectorised one only
            monkeypatch.setattr(causal, "_FEW_WINDOWS", few)
            p, seen, j, out = PendingScores(rule, reduce), 0, 0, []
            for k in chunks:
                k = min(k, T - seen)
                if k == 0:
                    break
                p.extend(k)
                seen += k
                t = np.arange(p.start, p.end)
                assert p.n_due(seen) == int((rule.horizon(t) <= seen - 1).sum())
                p.add(j, scores[j:rule.n_grid(seen)])
                j = rule.n_grid(seen)
                out.append(p.pop_due(seen))
            runs.append(out)
        for (i0, s0), (i1, s1) in zip(*runs, strict=True):
            np.testing.assert_array_equal(i0, i1)
            np.testing.assert_array_equal(s0, s1)
