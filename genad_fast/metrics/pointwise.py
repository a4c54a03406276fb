"""Point-wise metrics: AUROC, AUPRC (average precision), best F1 and point-adjusted F1 (Xu et al., WWW 2018)."""
from __future__ import annotations

from typing import Any

import numpy as np

from genad_fast.metrics._checks import _check_pair, anomaly_ranges


def _pr_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct score values ``v`` (descending) and, for the rule ``score >= v``, cumulative tp and fp."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order].astype(np.int64)
    # last index of each run of equal scores (compared, not subtracted: inf - inf is NaN, not 0)
    last = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    last = np.concatenate((last, [s_sorted.size - 1]))
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return s_sorted[last], tp, fp


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve: P(score of a random anomaly > score of a random normal point), ties 1/2.

    Computed as the Mann-Whitney statistic with mid-ranks, ``(sum of anomaly ranks - P(P+1)/2) / (P N)``,
    which equals scikit-learn's ``roc_auc_score``. Needs both classes.
    """
    from scipy.stats import rankdata

    y, s = _check_pair(labels, scores, True, "AUROC")
    r = rankdata(s)  # average ranks for ties
    p = float(y.sum())
    n = float(y.size) - p
    return float((r[y == 1].sum() - p * (p + 1.0) / 2.0) / (p * n))


def auprc(labels: Any, scores: Any) -> float:
    """Average precision, as scikit-learn's ``average_precision_score``: ``sum_k (R_k - R_{k-1}) P_k``
    over the distinct score values taken as thresholds (high to low), ``R_{-1} = 0``.

    This is the step-wise area under the precision-recall curve (no linear interpolation, which would be
    optimistic). A random scorer gets about the anomaly fraction. Needs both classes.
    """
    y, s = _check_pair(labels, scores, True, "AUPRC")
    _, tp, fp = _pr_points(y, s)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))


def _threshold_between(v: np.ndarray, k: int) -> float:
    """A finite threshold t with ``score > t`` true for scores >= v[k] and false for the next lower distinct value.

    The midpoint of v[k] and v[k+1] (the widest margin, which matters when the threshold is used on new
    data); just below v[k] when v[k] is the lowest score. When v[k] is +inf there is no midpoint: the
    threshold is v[k+1] itself, the highest score left unflagged (or the largest float when every score
    is +inf), so only what scores above every unflagged score is flagged.
    """
    hi = float(v[k])
    if k + 1 >= v.size:
        return float(np.nextafter(hi, -np.inf))
    lo = float(v[k + 1])
    mid = hi / 2.0 + lo / 2.0
    return mid if lo <= mid < hi else lo


def _best_f1(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    v, tp, fp = _pr_points(y, s)
    p = float(tp[-1])
    f1 = 2.0 * tp / (tp + fp + p)  # = 2 PR / (P + R) = 2 tp / (2 tp + fp + fn)
    k = int(np.argmax(f1))  # first maximum: the highest threshold among equals
    return {"f1": float(f1[k]), "precision": float(tp[k] / (tp[k] + fp[k])), "recall": float(tp[k] / p),
            "threshold": _threshold_between(v, k)}


def best_f1(labels: Any, scores: Any) -> dict[str, float]:
    """Best point-wise F1 over all thresholds: ``{"f1", "precision", "recall", "threshold"}``.

    F1 = 2 tp / (2 tp + fp + fn) for the prediction ``score > threshold``, maximised over every cut
    between distinct score values (exact: no threshold grid). ``threshold`` lies midway between the
    lowest flagged and the highest unflagged score. Chosen on the labels it is scored on, this is an
    oracle figure (an upper bound for a threshold set without them). Needs at least one anomaly.
    """
    y, s = _check_pair(labels, scores, False, "best F1")
    if y.sum() == 0:
        raise ValueError("best F1 needs at least one anomaly (label 1); labels are all 0")
    return _best_f1(y, s)


def point_adjust(labels: Any, scores: Any) -> np.ndarray:
    """Scores after point adjustment: inside each anomaly range every score is raised to the range's maximum.

    Thresholding the adjusted scores gives exactly the point-adjusted predictions of Xu et al. (2018):
    a range counts as wholly detected as soon as one of its points is flagged.
    """
    y, s = _check_pair(labels, scores, False, "point adjustment")
    return _point_adjust(y, s)


def _point_adjust(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    starts, ends = anomaly_ranges(y)
    out = s.copy()
    if starts.size:
        idx = np.empty(2 * starts.size, dtype=np.int64)
        idx[0::2], idx[1::2] = starts, ends + 1
        if idx[-1] == s.size:
            idx = idx[:-1]
        seg_max = np.maximum.reduceat(s, idx)[0::2]
        lengths = ends - starts + 1
        out[y == 1] = np.repeat(seg_max, lengths)
    return out


def point_adjusted_f1(labels: Any, scores: Any) -> dict[str, float]:
    """Best F1 after point adjustment (Xu et al., "Unsupervised Anomaly Detection via Variational
    Auto-Encoder for Seasonal KPIs in Web Applications", WWW 2018): ``{"f1", "precision", "recall", "threshold"}``.

    Point adjustment: if any point of a labelled anomaly range is flagged, every point of that range
    counts as a true positive. Equivalently (used here), each score inside a range is raised to the
    range's maximum, then :func:`best_f1` runs on the adjusted scores.

    It is optimistic, so report it next to plain F1, never instead: one lucky flag inside a long range
    earns credit for the whole range, so on data with long anomaly ranges even random scores reach a
    high PA-F1 (Kim et al., AAAI 2022), and a detector that fires late or once per event looks the same
    as one that tracks the event. It is never below :func:`best_f1` (adjustment only adds true positives).
    """
    y, s = _check_pair(labels, scores, False, "point-adjusted F1")
    if y.sum() == 0:
        raise ValueError("point-adjusted F1 needs at least one anomaly (label 1); labels are all 0")
    return _best_f1(y, _point_adjust(y, s))
