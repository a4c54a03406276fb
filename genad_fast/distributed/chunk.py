"""Scoring a chunk of series with one fitted detector: the one function every engine runs per task, and the
pandas entry point for Spark's ``groupBy(...).applyInPandas(...)``.

:func:`score_chunk` is the single place that turns several series into their scores; the local, Ray and Dask
workers call it for each task, and :func:`score_frame` (one or many series in a long pandas DataFrame) calls it
too, so every route gives the same numbers as ``det.decision_function(series)`` in this process.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

__all__ = ["score_chunk", "score_one", "score_frame", "scores_table", "cached_model"]


def score_chunk(det, series: list) -> list[np.ndarray]:
    """The scores of each series of ``series`` (arrays, frames or tensors), float64, one array per series.

    One call of the detector's collection API (:mod:`genad_fast.detectors._collection`): the windows of all the
    series are packed into the same kernel calls, and the scores equal, bit for bit,
    ``[det.decision_function(s) for s in series]``. A bad series fails the whole call (the error names it as
    ``X[i]``); the engines then score the chunk's series one by one to report each failure by its own id.
    """
    if not series:
        return []
    return det.decision_function(list(series))


def score_one(det, series) -> np.ndarray:
    """One series alone: what the engines fall back to when a chunk's packed call fails, to say which series
    failed and why (in the single-series words: ``X contains ...``, not ``X[3] ...`` of the chunk). The
    collection API gives the same numbers for a series alone as within a chunk (tests/test_many_series.py)."""
    return det.decision_function(series)


def scores_table(scores: np.ndarray, threshold: float, time=None, time_column: str | None = None):
    """The result table of one series: ``[time column,] score, is_anomaly`` (the CLI's ``score --out`` format)."""
    import pandas as pd

    out = pd.DataFrame({"score": scores, "is_anomaly": (scores > threshold).astype(np.int64)})
    if time is not None:
        out.insert(0, time_column, np.asarray(time))
    return out


_CACHE_LOCK = threading.Lock()
_CACHE: dict[tuple, Any] = {}


def cached_model(path: str | os.PathLike, map_location: str = "cpu"):
    """The detector of the model file ``path``, loaded once per process (and again if the file changes).

    What makes :func:`score_frame` cheap to call once per group: a Spark or Dask worker process loads the model
    at its first group and reuses it for the next ones. Keeps only the latest model, so a long-lived worker
    scoring with one model after another holds one at a time.
    """
    from genad_fast.detectors import load

    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size, str(map_location))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = load(path, map_location=map_location)
        return _CACHE[key]


def score_frame(model, frame, *, id_column: str | None = "series_id", columns: list[str] | None = None,
                time_column: str | None = None):
    """Score a pandas DataFrame holding one or many series (long format) with one fitted detector.

    ``model``: a fitted detector, or the path of a model file written by ``det.save`` (loaded once per
    process, :func:`cached_model`). ``frame``: one row per timestamp; ``id_column`` names the series each row
    belongs to (None: the whole frame is one series). The data columns are ``columns``, else the columns the
    model was fitted on by name (``feature_names_in_``), else every column but the id and time columns.
    With ``time_column`` each series' rows are taken in time order (a stable sort: Spark keeps no row order
    within a group), else in frame order.

    Returns a DataFrame with ``[id_column,] [time_column,] score, is_anomaly`` (float64 score, int64 0/1 by
    ``threshold_``), the series in order of first appearance, each in the order it was scored. The scores equal
    ``det.decision_function(rows of that series)`` bit for bit: the function is :func:`score_chunk`, the one
    the local, Ray and Dask engines run per task.

    Spark (schema: the id's and time's types, ``score double, is_anomaly long``)::

        scored = df.groupBy("series_id").applyInPandas(
            functools.partial(score_frame, "model.pt", id_column="series_id", time_column="t"),
            schema="series_id string, t timestamp, score double, is_anomaly long")
    """
    import pandas as pd

    det = cached_model(model) if isinstance(model, (str, os.PathLike)) else model
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    names = [str(c) for c in frame.columns]
    for col, what in ((id_column, "id column"), (time_column, "time column")):
        if col is not None and col not in names:
            raise ValueError(f"{what} {col!r} is not in the frame (columns: {', '.join(names)})")
    if columns is None:
        fitted = getattr(det, "feature_names_in_", None)
        columns = list(fitted) if fitted is not None else \
            [c for c in frame.columns if c not in (id_column, time_column)]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in the "
                         f"frame (columns: {', '.join(names)})")
    if id_column is None:
        parts = [(None, frame)]
    else:
        parts = list(frame.groupby(id_column, sort=False))
    if time_column is not None:
        parts = [(key, part.sort_values(time_column, kind="stable")) for key, part in parts]
    scores = score_chunk(det, [part[columns] for _, part in parts])
    outs = []
    for (key, part), s in zip(parts, scores):
        out = scores_table(s, det.threshold_, part[time_column] if time_column is not None else None, time_column)
        if id_column is not None:
            out.insert(0, id_column, part[id_column].to_numpy())
        outs.append(out)
    return pd.concat(outs, ignore_index=True)
