"""Range-based precision, recall and F1 of 0/1 predictions (Tatbul et al., NeurIPS 2018)."""
from __future__ import annotations

from typing import Any

import numpy as np

from genad_fast.metrics._checks import _check_pair, anomaly_ranges

CARDINALITIES = ("one", "reciprocal")
BIASES = ("flat", "front", "back", "middle")


def _positional_sums(c0: np.ndarray, c1: np.ndarray, s: np.ndarray, e: np.ndarray, bias: str) -> np.ndarray:
    """``sum_{t=s..e} b[t] * delta(t - s + 1, e - s + 1)`` per range, from prefix sums of b and t*b.

    ``c0[i] = sum_{t<i} b[t]``, ``c1[i] = sum_{t<i} t b[t]``. Tatbul et al.'s positional biases delta(i, l):
    flat 1, front-end l - i + 1, back-end i, middle i for i <= l/2 else l - i + 1.
    """
    length = e - s + 1

    def cnt(a, z):  # sum of b over [a, z] (0 when a > z)
        return c0[z + 1] - c0[a]

    def pos(a, z):  # sum of b[t] * (t - s + 1) over [a, z]
        return (c1[z + 1] - c1[a]) - (s - 1) * cnt(a, z)

    if bias == "flat":
        return cnt(s, e).astype(np.float64)
    if bias == "back":
        return pos(s, e).astype(np.float64)
    if bias == "front":
        return ((length + 1) * cnt(s, e) - pos(s, e)).astype(np.float64)
    m = length // 2  # middle: positions 1..m weigh i, m+1..l weigh l - i + 1
    first = pos(s, s + m - 1)
    second = (length + 1) * cnt(s + m, e) - pos(s + m, e)
    return (first + second).astype(np.float64)


def _range_side(target: np.ndarray, other: np.ndarray, alpha: float, cardinality: str, bias: str) -> float:
    """Mean over the ranges R_i of ``target`` of alpha Existence + (1 - alpha) gamma omega (against ``other``)."""
    ts, te = anomaly_ranges(target)
    os_, oe = anomaly_ranges(other)
    n = target.size
    b = other.astype(np.int64)
    t = np.arange(n, dtype=np.int64)
    c0 = np.concatenate(([0], np.cumsum(b)))
    c1 = np.concatenate(([0], np.cumsum(t * b)))
    ones = np.ones(n, dtype=np.int64)
    c0_full = np.concatenate(([0], np.cumsum(ones)))
    c1_full = np.concatenate(([0], np.cumsum(t)))
    omega = _positional_sums(c0, c1, ts, te, bias) / _positional_sums(c0_full, c1_full, ts, te, bias)
    # ranges of `other` overlapping [s, e]: those starting at or before e, minus those ending before s
    x = np.searchsorted(os_, te, side="right") - np.searchsorted(oe, ts, side="left")
    gamma = np.ones(ts.size) if cardinality == "one" else 1.0 / np.maximum(x, 1)
    existence = (x >= 1).astype(np.float64)
    return float(np.mean(alpha * existence + (1.0 - alpha) * gamma * omega))


def range_prf(labels: Any, predictions: Any, alpha: float = 0.0, cardinality: str = "one",
              bias: str = "flat") -> dict[str, float]:
    """Range-based precision, recall and F1 (Tatbul et al., "Precision and Recall for Time Series",
    NeurIPS 2018) of 0/1 ``predictions``: ``{"precision", "recall", "f1"}``.

    With real ranges R_1..R_Nr (runs of 1 in ``labels``) and predicted ranges P_1..P_Np::

        Recall    = 1/Nr sum_i [ alpha Existence(R_i) + (1 - alpha) gamma(R_i) omega(R_i) ]
        Precision = 1/Np sum_j gamma(P_j) omega(P_j)
        F1        = 2 Precision Recall / (Precision + Recall)

    Existence(R_i) = 1 when any predicted range overlaps R_i; omega(R_i) = sum of the positional bias
    delta over the points of R_i covered by predictions / sum of delta over all of R_i (and the same for
    P_j against the real ranges); gamma = 1 when a range overlaps at most one range of the other side,
    else 1 (``cardinality="one"``) or 1/x for x overlapping ranges (``"reciprocal"``). ``bias``:
    ``"flat"`` (delta = 1), ``"front"`` (l - i + 1: early detection counts more), ``"back"`` (i) or
    ``"middle"``; the same bias serves precision and recall. With ``alpha=0``, flat bias, ``"one"`` and
    single-point ranges this is classical precision and recall.

    Needs at least one anomaly range. No predicted range gives precision 0 (and recall 0).
    """
    y, p = _check_pair(labels, predictions, False, "range-based precision/recall", "predictions",
                       binary_scores=True)
    if y.sum() == 0:
        raise ValueError("range-based recall needs at least one anomaly range (label 1); labels are all 0")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if cardinality not in CARDINALITIES:
        raise ValueError(f"cardinality must be one of {', '.join(CARDINALITIES)}, got {cardinality!r}")
    if bias not in BIASES:
        raise ValueError(f"bias must be one of {', '.join(BIASES)}, got {bias!r}")
    recall = _range_side(y, p, float(alpha), cardinality, bias)
    precision = _range_side(p, y, 0.0, cardinality, bias) if p.any() else 0.0
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
