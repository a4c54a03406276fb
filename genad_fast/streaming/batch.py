"""The batch counterpart of a stream: ``det.causal_decision_function(X, delay=d)``.

One pass over a whole series (or each series of a collection), with the stream's causal reduction
(:mod:`genad_fast.streaming.causal`) instead of the centred one: the windows of the stride grid (plus the
end-aligned one if off the grid) scored in batches of ``score_batch_size`` by the same window scorer a stream
uses (:mod:`genad_fast.streaming.windows`), then :func:`~genad_fast.streaming.causal.causal_to_timestamps`. A
stream fed the series in chunks of any sizes and flushed gives the same scores.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genad_fast.series import WindowGrid
from genad_fast.streaming.causal import causal_to_timestamps
from genad_fast.streaming.scope import HeldScope
from genad_fast.streaming.scorer import stream_rule
from genad_fast.streaming.windows import WindowScorer

__all__ = ["causal_scores"]


def _holds(extreme: np.ndarray | None, starts: np.ndarray, W: int) -> np.ndarray:
    if extreme is None or not extreme.any():
        return np.zeros(starts.size, dtype=bool)
    csum = np.concatenate([[0], np.cumsum(extreme)])
    return (csum[starts + W] - csum[starts]) > 0


def causal_scores(det: Any, X: Any, *, by: Any = None, delay: int = 0, reduce: str | None = None,
                  stride: int | None = None) -> np.ndarray | list | dict:
    """float64 scores ``[T]`` of series ``X`` (one array per part for a collection) with the causal rule."""
    det._check_fitted()
    det._check_params(scoring=True)
    if not det.is_series:
        raise ValueError(f"{type(det).__name__} was fitted on tabular rows (window=None): causal scores are for "
                         f"series models")
    rule = stream_rule(det, delay, stride)
    reduce = det.reduce if reduce is None else reduce
    data = det._read(X, by, fitting=False)
    z_all = det._apply_normalizer(data.x)
    extreme_all = None if data.extreme_rows is None else data.extreme_rows.cpu().numpy()
    scope = HeldScope(det, z_all.dtype)
    scorer = WindowScorer(det, scope, exact=True)  # the batch pads short batches (min_score_rows), as ever
    out, a = [], 0
    try:
        for T in data.lengths:
            z = z_all[a:a + T]
            extreme = None if extreme_all is None else extreme_all[a:a + T]
            grid = WindowGrid(T, rule.W, rule.S)
            starts = grid.starts().numpy()
            holds = _holds(extreme, starts, rule.W)
            windows = grid.windows(z)  # the grid windows, a view; the end-aligned one apart
            bs = int(det.score_batch_size)
            parts = [scorer(windows[i:i + bs]) for i in range(0, grid.n_grid, bs)]
            if grid.has_tail:
                parts.append(scorer(z[T - rule.W:].unsqueeze(0)))
            out.append(causal_to_timestamps(np.concatenate(parts), T, rule.W, rule.S, rule.delay, reduce, holds))
            a += T
    finally:
        # what the call held (kNN's packed reference set) goes with the call, not when the cyclic GC runs
        scope.values.clear()
    scores = np.concatenate(out)
    det._check_scores(scores)
    return data.unpack(scores)
