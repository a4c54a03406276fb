"""Input checks shared by the metrics (one ValueError naming the problem), and the runs of 1s in a 0/1 array."""
from __future__ import annotations

from typing import Any

import numpy as np


def _as_1d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per row or timestamp), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


def _check_binary(x: Any, name: str) -> np.ndarray:
    a = _as_1d(x, name)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf (at index {int(np.argmax(~np.isfinite(a)))}); it must be 0/1")
    bad = (a != 0) & (a != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must hold only 0 and 1, got {a[i]!r} at index {i}")
    return a.astype(np.int8)


def _check_scores(x: Any, name: str = "scores", who: str = "metrics") -> np.ndarray:
    """``x`` as float64 scores: NaN and -inf are errors, +inf is kept.

    +inf is a valid score (the detectors' rule for a value far outside the training range: maximally
    anomalous); it ranks above every finite score and ties with the other +inf. NaN has no rank, and
    -inf ("infinitely normal") is what no detector returns, so both point at a bug upstream.
    """
    a = _as_1d(x, name)
    if a.dtype.kind == "b":
        a = a.astype(np.float64)
    a = a.astype(np.float64, copy=False)
    for bad, what in ((np.isnan(a), "NaN"), (a == -np.inf, "-inf")):
        if bad.any():
            raise ValueError(f"{name} hold {int(bad.sum())} {what} value(s) (the first at index "
                             f"{int(np.argmax(bad))}); {who} need scores that are numbers or +inf")
    return a


def _check_pair(labels: Any, scores: Any, need_both: bool, what: str, scores_name: str = "scores",
                binary_scores: bool = False) -> tuple[np.ndarray, np.ndarray]:
    y = _check_binary(labels, "labels")
    s = _check_binary(scores, scores_name) if binary_scores else _check_scores(scores, scores_name)
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} values but {scores_name} has {s.shape[0]}; they must "
                         f"have the same length")
    if need_both:
        p = int(y.sum())
        if p == 0:
            raise ValueError(f"{what} needs at least one anomaly (label 1); labels are all 0")
        if p == y.shape[0]:
            raise ValueError(f"{what} needs at least one normal point (label 0); labels are all 1")
    return y, s


def anomaly_ranges(binary: Any) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of 1s in a 0/1 array: ``(starts, ends)``, both inclusive, sorted (int64)."""
    b = np.asarray(binary).astype(np.int8).reshape(-1)
    d = np.diff(np.concatenate(([0], b, [0])))
    return np.flatnonzero(d == 1).astype(np.int64), (np.flatnonzero(d == -1) - 1).astype(np.int64)
