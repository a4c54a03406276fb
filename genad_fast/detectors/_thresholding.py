"""How ``threshold_`` is set: from the training scores at fit (the ``threshold`` parameter's rule), or refitted on
the scores of held-out data by :meth:`ThresholdingMixin.set_threshold` (:mod:`genad_fast.thresholds`)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ThresholdingMixin"]


class ThresholdingMixin:
    """``set_threshold`` and the rule that turns scores (and labels) into ``threshold_``."""

    def set_threshold(self, X: Any, y: Any = None, method: Any = None, *, by: Any = None) -> "ThresholdingMixin":
        """Refit ``threshold_`` on the scores of held-out data ``X``; returns self.

        ``method``: anything the ``threshold`` parameter accepts, or ``"best_f1"`` /
        :class:`~genad_fast.thresholds.BestF1Threshold` (needs the 0/1 labels ``y`` of ``X``). None: best
        F1 when ``y`` is given, else the detector's own ``threshold`` rule. Held-out scores avoid the
        optimism of training scores (a model that overfits scores its training data lower than new
        normal data). Use a validation split, never the test labels you report on. For a collection ``X`` the
        scores of all parts count, and ``y`` is laid out as the scores are, or flat in the order of the
        concatenated parts (one per frame row for ``by=``; :mod:`genad_fast.detectors._collection`).
        """
        self._check_fitted()
        if method is None:
            method = "best_f1" if y is not None else getattr(self, "threshold", None)
        scores, data = self._scores(X, by)
        y = data.labels(y)
        if y is not None:
            n_y = len(y)
            if n_y != scores.shape[0]:
                raise ValueError(f"y has {n_y} labels but X gives {scores.shape[0]} scores "
                                 f"(one per {'timestamp' if self.is_series else 'row'})")
        self.threshold_ = self._fit_threshold(method, scores, y)
        return self

    def _fit_threshold(self, spec: Any, scores: np.ndarray, labels: Any) -> float:
        from genad_fast.thresholds import make_threshold

        rule = make_threshold(spec, float(self.contamination))
        value = rule.fit(scores, labels).threshold_
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not np.isfinite(value):
            raise ValueError(f"the threshold rule {rule!r} gave threshold_={value!r}; a finite number is needed")
        return float(value)
