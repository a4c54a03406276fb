"""Anomaly-detection metrics: numpy in, float out.

``labels`` are 0/1 per row or timestamp (1 = anomalous), ``scores`` are real numbers, higher = more
anomalous, ``predictions`` are 0/1. Every function checks its input and raises a ValueError that
names the problem: different lengths, empty arrays, NaN or -inf scores, labels other than 0/1, or a
class missing where the metric needs both. A score of +inf is valid (a detector's verdict on a value far
outside its training range): it ranks above every finite score, ties with the other +inf scores, and
never turns into NaN inside a metric.

Threshold convention (as :meth:`genad_fast.detectors.BaseDetector.predict`): a point is flagged when
``score > threshold``.

What each number says, and its known biases:

- :func:`auroc`, :func:`auprc` -- threshold-free, point-wise. AUROC is dominated by the many easy
  normal points when anomalies are rare; AUPRC (average precision) is the one to read then.
- :func:`vus_roc`, :func:`vus_pr` -- Volume Under the Surface (Paparrizos et al., VLDB 2022), the
  range-aware versions of both, robust to a score that lags the label by up to a buffer.
- :func:`best_f1` -- F1 at the best threshold *chosen on the labels being scored*: an upper bound of
  what a threshold chosen without those labels reaches.
- :func:`point_adjusted_f1` -- the same after point adjustment (Xu et al., WWW 2018): optimistic,
  always report it next to :func:`best_f1`.
- :func:`range_prf` -- range-based precision/recall/F1 (Tatbul et al., NeurIPS 2018) of 0/1 predictions.
- :func:`evaluate` -- all of them in one dict.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "auroc",
    "auprc",
    "vus_roc",
    "vus_pr",
    "best_f1",
    "point_adjusted_f1",
    "range_prf",
    "evaluate",
    "vus",
    "point_adjust",
    "default_sliding_window",
    "anomaly_ranges",
]

#: Thresholds per buffer length on the VUS surfaces (TSB-AD's ``thre=250``).
VUS_THRESHOLDS = 250
CARDINALITIES = ("one", "reciprocal")
BIASES = ("flat", "front", "back", "middle")


# ---------------------------------------------------------------------------------------------- validation
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


# ---------------------------------------------------------------------------------------------- point-wise
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


# ---------------------------------------------------------------------------------------------- range-based
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


# ---------------------------------------------------------------------------------------------- VUS
def default_sliding_window(labels: Any) -> int:
    """Default VUS window: the median length of the labelled anomaly ranges (at least 1).

    TSB-AD sets it to a periodicity estimate of the data (autocorrelation of the first channel), which
    a metric that sees only labels and scores cannot compute, and which is ill-defined for a
    multivariate series whose channels have different periods. The VUS package of the same authors
    falls back on the median anomaly length (``get_sliding_window``), which needs no data, has the same
    meaning for any number of channels, and scales the tolerance with the events being scored: a buffer
    of up to one event length on each side credits a score that lags or leads an event by about its own
    length, and not much more. Callers who know the lag of their detector (e.g. its window length)
    should pass ``sliding_window`` explicitly.
    """
    y = _check_binary(labels, "labels")
    starts, ends = anomaly_ranges(y)
    if starts.size == 0:
        raise ValueError("the default VUS window needs at least one anomaly (label 1); labels are all 0")
    return max(1, int(np.median(ends - starts + 1)))


def _vus(y: np.ndarray, s: np.ndarray, max_buffer: int, n_thresholds: int) -> tuple[float, float]:
    """VUS-ROC and VUS-PR exactly as TSB-AD's ``RangeAUC_volume_opt`` with ``windowSize = max_buffer``.

    For each buffer length w = 0..W (W = ``max_buffer``) the labels are extended by soft margins
    ``sqrt(1 - d/w)`` at distance d = 1..w//2 before and after each range (capped at 1), and the merged
    buffered ranges form the segments of the existence ratio. At each of ``n_thresholds`` thresholds
    tau_k (scores at ranks ``linspace(0, n - 1, K)`` of the descending sort, prediction ``score >= tau_k``)::

        TP  = sum_t labels_w[t] pred[t]         (labels_w: 1 on ranges, soft margin off them)
        P'  = (P + sum_t max(y, labels_w pred)) / 2
        TPR = min(TP / P', 1) * (buffered segments hit) / (buffered segments)
        FPR = (N_pred - TP) / (n - P'),  Precision = TP / N_pred

    AUC-ROC: trapezoids through (0,0), the K points and (1,1); AP: sum_k (TPR_k - TPR_{k-1}) Precision_k.
    VUS = the mean of each over the W + 1 buffer lengths.

    This implementation is vectorised: each point is reduced to the first threshold index that flags
    it, so each buffer length costs O(ranges * w + K) instead of O(n K).
    """
    n = y.size
    K = int(n_thresholds)
    W = int(max_buffer)
    P = float(y.sum())
    desc = -np.sort(-s)
    tau = desc[np.linspace(0, n - 1, K).astype(np.int64)]  # non-increasing in k
    asc = tau[::-1]

    def first_k(values: np.ndarray) -> np.ndarray:  # smallest k with values >= tau_k
        return K - np.searchsorted(asc, values, side="right")

    k0 = first_k(s)
    n_pred = np.cumsum(np.bincount(k0, minlength=K + 1)[:K]).astype(np.float64)
    a_tp = np.cumsum(np.bincount(k0[y == 1], minlength=K + 1)[:K]).astype(np.float64)

    starts, ends = anomaly_ranges(y)
    R = starts.size
    # maxima of the ranges, then of their buffers grown one step at a time
    idx = np.empty(2 * R, dtype=np.int64)
    idx[0::2], idx[1::2] = starts, ends + 1
    seg_max = np.maximum.reduceat(s, idx[:-1] if idx[-1] == n else idx)[0::2]
    buf_max = seg_max.copy()
    normal = y == 0

    auc = np.empty(W + 1)
    ap = np.empty(W + 1)
    h_done = 0
    for w in range(W + 1):
        h = w // 2
        while h_done < h:  # extend the buffered maxima to half-width h
            h_done += 1
            left, right = starts - h_done, ends + h_done
            ok = left >= 0
            buf_max[ok] = np.maximum(buf_max[ok], s[left[ok]])
            ok = right < n
            buf_max[ok] = np.maximum(buf_max[ok], s[right[ok]])
        # soft margins on normal points, summed where two buffers meet, capped at 1
        if h > 0:
            d = np.arange(1, h + 1, dtype=np.int64)
            val = np.sqrt(1.0 - d / w)
            pos = np.concatenate(((ends[:, None] + d).ravel(), (starts[:, None] - d).ravel()))
            vals = np.concatenate((np.tile(val, R), np.tile(val, R)))
            keep = (pos >= 0) & (pos < n)
            pos, vals = pos[keep], vals[keep]
            keep = normal[pos]
            pos, vals = pos[keep], vals[keep]
            upos, inv = np.unique(pos, return_inverse=True)
            margin = np.minimum(np.bincount(inv, weights=vals), 1.0)
            b = np.cumsum(np.bincount(k0[upos], weights=margin, minlength=K + 1)[:K])
        else:
            b = np.zeros(K)
        # buffered ranges merge when e_i + h >= s_{i+1} - h (TSB-AD's new_sequence)
        new_group = np.concatenate(([True], ends[:-1] + h < starts[1:] - h))
        group_max = np.maximum.reduceat(buf_max, np.flatnonzero(new_group))
        n_groups = group_max.size
        exist = np.cumsum(np.bincount(first_k(group_max), minlength=K + 1)[:K])

        tp = a_tp + b
        p_new = P + b / 2.0  # (P + N_labels) / 2 with N_labels = P + b
        tpr = np.minimum(tp / p_new, 1.0) * exist / n_groups
        fpr = (n_pred - tp) / (n - p_new)
        prec = tp / n_pred
        x = np.concatenate(([0.0], fpr, [1.0]))
        yy = np.concatenate(([0.0], tpr, [1.0]))
        auc[w] = np.dot(np.diff(x), (yy[1:] + yy[:-1]) / 2.0)
        ap[w] = np.dot(np.diff(np.concatenate(([0.0], tpr))), prec)
    return float(auc.mean()), float(ap.mean())


def _check_window(sliding_window: Any, y: np.ndarray) -> int:
    if sliding_window is None:
        return default_sliding_window(y)
    if isinstance(sliding_window, bool) or not isinstance(sliding_window, (int, np.integer)) or sliding_window < 0:
        raise ValueError(f"sliding_window must be an int >= 0 or None, got {sliding_window!r}")
    return int(sliding_window)


def _check_thresholds(n_thresholds: Any) -> int:
    if isinstance(n_thresholds, bool) or not isinstance(n_thresholds, (int, np.integer)) or n_thresholds < 1:
        raise ValueError(f"n_thresholds must be an int >= 1, got {n_thresholds!r}")
    return int(n_thresholds)


def _max_buffer(sliding_window: Any, max_buffer: Any, y: np.ndarray) -> int:
    """The largest buffer length W of the surfaces: ``max_buffer`` as given, else 2 ``sliding_window``."""
    if max_buffer is None:
        return 2 * _check_window(sliding_window, y)
    if sliding_window is not None:
        raise ValueError("give sliding_window or max_buffer, not both: max_buffer replaces 2 * sliding_window")
    if isinstance(max_buffer, bool) or not isinstance(max_buffer, (int, np.integer)) or max_buffer < 0:
        raise ValueError(f"max_buffer must be an int >= 0 or None, got {max_buffer!r}")
    return int(max_buffer)


def vus(labels: Any, scores: Any, sliding_window: int | None = None, *,
        n_thresholds: int = VUS_THRESHOLDS, max_buffer: int | None = None) -> dict[str, float]:
    """``{"vus_roc", "vus_pr"}`` in one pass (see :func:`vus_roc`).

    ``max_buffer`` W (instead of ``sliding_window``): average over buffer lengths w = 0..W. TSB-AD's
    ``get_metrics`` since its second release passes its ``slidingWindow`` (``find_length_rank`` of the data, see
    :func:`genad_fast.periodicity.dominant_period`) as W itself; its first release and the VUS package passed
    2 ``slidingWindow``, which ``sliding_window`` reproduces.
    """
    y, s = _check_pair(labels, scores, True, "VUS")
    W = _max_buffer(sliding_window, max_buffer, y)
    roc, pr = _vus(y, s, W, _check_thresholds(n_thresholds))
    return {"vus_roc": roc, "vus_pr": pr}


def vus_roc(labels: Any, scores: Any, sliding_window: int | None = None, *,
            n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Volume under the range-AUC-ROC surface (Paparrizos, Boniol, Palpanas, Tsay, Elmore, Franklin,
    "Volume Under the Surface: a new accuracy evaluation measure for time-series anomaly detection",
    PVLDB 15(11), 2022), as TSB-AD computes it.

    The range-ROC curve softens the labels with a buffer of length w around each anomaly range (a score
    that rises shortly before or after the labelled range earns partial credit, decaying as
    ``sqrt(1 - d/w)`` with the distance d) and weighs recall by the fraction of (buffered) ranges hit at
    all; VUS averages its area over the buffer lengths w = 0, 1, ..., 2 ``sliding_window`` (TSB-AD's first
    release passed ``2 * slidingWindow``; its later ``get_metrics`` averages over w = 0..``slidingWindow``, which
    ``max_buffer`` of :func:`vus` reproduces), so no single buffer has to be chosen. The curves are
    sampled at ``n_thresholds`` = 250 score ranks, as TSB-AD. The formula is in :func:`_vus`.

    ``sliding_window`` None: :func:`default_sliding_window` (the median anomaly length). 0 gives the
    plain range-free curve at w = 0 only. Known behaviour: perfect scores give 1; constant scores give
    0.5 at w = 0 but slightly more for w > 0 (the buffer shrinks the negatives' count), so compare
    detectors at the same ``sliding_window``. Needs both classes.
    """
    return vus(labels, scores, sliding_window, n_thresholds=n_thresholds)["vus_roc"]


def vus_pr(labels: Any, scores: Any, sliding_window: int | None = None, *,
           n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Volume under the range-precision-recall surface (Paparrizos et al., PVLDB 2022), as TSB-AD.

    Same surfaces as :func:`vus_roc`, with the range average precision
    ``sum_k (TPR_k - TPR_{k-1}) Precision_k`` per buffer length, averaged over w = 0..2 ``sliding_window``.
    TSB-AD's study found it the most reliable single figure for time-series anomaly detection. A
    random or constant scorer gets about the (buffered) anomaly fraction. Needs both classes.
    """
    return vus(labels, scores, sliding_window, n_thresholds=n_thresholds)["vus_pr"]


# ---------------------------------------------------------------------------------------------- all
def evaluate(labels: Any, scores: Any, threshold: float | None = None,
             sliding_window: int | None = None, *, series: bool = True,
             max_buffer: int | None = None) -> dict[str, float]:
    """Every metric in one dict of floats.

    Always: ``auroc``, ``auprc``, ``vus_roc``, ``vus_pr``, ``f1_best`` (oracle threshold) and
    ``f1_pa_best`` (point-adjusted, optimistic; see :func:`point_adjusted_f1`). With ``threshold``
    (e.g. a detector's ``threshold_``; flagged = ``score > threshold``) also ``precision``, ``recall``,
    ``f1`` (point-wise) and ``range_precision``, ``range_recall``, ``range_f1`` (Tatbul et al. with
    alpha=0, flat bias, cardinality "one"). Needs both classes.

    ``sliding_window`` / ``max_buffer``: the VUS surfaces' buffers, as :func:`vus`.

    ``series=False`` (tabular rows, whose order means nothing): the range-based figures (``vus_*``,
    ``f1_pa_best``, ``range_*``) are NaN, since runs of consecutive anomalous rows are not events.
    """
    y, s = _check_pair(labels, scores, True, "evaluate")
    if not isinstance(series, (bool, np.bool_)):
        raise ValueError(f"series must be True or False, got {series!r}")
    nan = float("nan")
    if series:
        roc, pr = _vus(y, s, _max_buffer(sliding_window, max_buffer, y), VUS_THRESHOLDS)
    else:
        roc = pr = nan
    out = {
        "auroc": auroc(y, s),
        "auprc": auprc(y, s),
        "vus_roc": roc,
        "vus_pr": pr,
        "f1_best": _best_f1(y, s)["f1"],
        "f1_pa_best": _best_f1(y, _point_adjust(y, s))["f1"] if series else nan,
    }
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
                or not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number or None, got {threshold!r}")
        pred = (s > float(threshold)).astype(np.int8)
        tp = float(np.sum(pred * y))
        n_pred, p = float(pred.sum()), float(y.sum())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / p
        out["precision"] = precision
        out["recall"] = recall
        out["f1"] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        r = range_prf(y, pred) if series else {"precision": nan, "recall": nan, "f1": nan}
        out["range_precision"], out["range_recall"], out["range_f1"] = r["precision"], r["recall"], r["f1"]
    return out
