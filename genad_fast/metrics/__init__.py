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

One file per family: :mod:`~genad_fast.metrics.pointwise`, :mod:`~genad_fast.metrics.range_based`,
:mod:`~genad_fast.metrics.volume_under_surface`; the input checks in :mod:`~genad_fast.metrics._checks`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genad_fast.metrics._checks import _check_pair, anomaly_ranges
from genad_fast.metrics.pointwise import _best_f1, _point_adjust, auprc, auroc, best_f1, point_adjust, point_adjusted_f1
from genad_fast.metrics.range_based import BIASES, CARDINALITIES, range_prf
from genad_fast.metrics.volume_under_surface import (VUS_THRESHOLDS, _max_buffer, _vus, default_sliding_window, vus,
                                                     vus_pr, vus_roc)

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
    "VUS_THRESHOLDS",
    "CARDINALITIES",
    "BIASES",
]


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
