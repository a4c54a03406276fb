"""Alarms as the scores come out: a fixed threshold, or SPOT / DSPOT adapting as they go (Siffer et al., KDD 2017).

``threshold=`` of :meth:`~genad_fast.detectors.base.BaseDetector.stream`:

- None: the detector's fitted ``threshold_``, fixed (alarm = ``score > threshold_``, as ``predict``);
- a number: that threshold, fixed;
- ``"spot"``, ``"dspot"`` or a :class:`~genad_fast.thresholds.SPOTThreshold` / ``DSPOTThreshold`` object: a live
  threshold, calibrated on ``calibration`` scores (default: the training scores ``decision_scores_``, in time
  order) unless the object is already fitted (then a copy continues from its state), and run on every score as
  it is due (:meth:`~genad_fast.thresholds.SPOTThreshold.run`, which carries its state over): SPOT compares a
  score with z_q; a score above the initial level t but not above z_q is a new peak, refits the generalised
  Pareto tail and moves z_q; an alarm (above z_q) is kept out of the peaks. DSPOT runs the same on the
  deviation from the mean of the last ``depth`` normal scores, so its threshold ``M + z_q`` follows a drifting
  baseline; alarms do not enter that mean;
- any other rule (``"contamination"``, ``"pot"``, an object with ``fit``): fitted once on ``calibration``, then
  fixed.

Memory: a fixed threshold keeps nothing; SPOT and DSPOT keep their peaks, as the paper's algorithm does (about
``1 - level`` = 2 % of the normal scores, 8 bytes each), and DSPOT its ``depth`` scores; a refit costs
O(peaks) (:mod:`genad_fast.thresholds.gpd`).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from genad_fast.thresholds import SPOTThreshold, make_threshold

__all__ = ["LiveThreshold", "live_threshold"]


class LiveThreshold:
    """``run(scores) -> (thresholds, alarms)``: per score the threshold it met (float64) and the alarm (bool)."""

    def __init__(self, value: float | None = None, rule: SPOTThreshold | None = None) -> None:
        self.value, self.rule = value, rule

    @property
    def threshold_(self) -> float:
        """The threshold the next score meets."""
        return float(self.rule.threshold_) if self.rule is not None else float(self.value)

    def run(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.rule is None:
            return np.full(scores.shape, self.value), scores > self.value
        if scores.size == 0:
            return np.empty(0), np.zeros(0, dtype=bool)
        out = self.rule.run(scores)
        return out.thresholds, out.alarms


def live_threshold(det: Any, spec: Any, calibration: Any) -> LiveThreshold:
    """The stream's threshold from the ``threshold=`` and ``calibration=`` arguments (module docstring)."""
    if spec is None:
        if calibration is not None:
            raise ValueError("calibration= calibrates a threshold rule; with threshold=None the stream uses the "
                             "fitted threshold_ (pass threshold='dspot', 'spot', a rule or a number)")
        return LiveThreshold(value=float(det.threshold_))
    if isinstance(spec, (bool, np.bool_)):
        raise ValueError(f"threshold must be None, a number, a rule name or a threshold object, got {spec!r}")
    if isinstance(spec, (int, float, np.integer, np.floating)):
        if not np.isfinite(spec):
            raise ValueError(f"a fixed threshold must be finite, got {spec!r}")
        return LiveThreshold(value=float(spec))
    if isinstance(spec, str) and spec == "best_f1":
        raise ValueError("threshold='best_f1' needs labels; fit it with det.set_threshold(X_val, y_val) and stream "
                         "with the fitted threshold_ (threshold=None)")
    if isinstance(spec, SPOTThreshold) and hasattr(spec, "threshold_"):
        return LiveThreshold(rule=copy.deepcopy(spec))  # fitted: continue from its state, leave the caller's alone
    rule = make_threshold(spec, float(det.contamination))
    scores = det.decision_scores_ if calibration is None else np.asarray(calibration, dtype=np.float64)
    rule.fit(scores)
    if isinstance(rule, SPOTThreshold):
        return LiveThreshold(rule=rule)
    value = rule.threshold_
    if not np.isfinite(value):
        raise ValueError(f"the threshold rule {rule!r} gave threshold_={value!r}; a finite number is needed")
    return LiveThreshold(value=float(value))
