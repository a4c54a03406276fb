"""Volume Under the Surface, VUS-ROC and VUS-PR (Paparrizos et al., VLDB 2022), as TSB-AD computes them."""
from __future__ import annotations

from typing import Any

import numpy as np

from genad_fast.metrics._checks import _check_binary, _check_pair, anomaly_ranges

#: Thresholds per buffer length on the VUS surfaces (TSB-AD's ``thre=250``).
VUS_THRESHOLDS = 250


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
