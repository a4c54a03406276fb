"""Thresholds on anomaly scores: contamination quantile, POT, streaming SPOT / DSPOT, best F1 on labels.

Every rule is a small object with ``fit(scores, labels=None) -> self`` and the fitted ``threshold_``;
a point is an anomaly when ``score > threshold_`` (as :meth:`BaseDetector.predict`)::

    ContaminationThreshold(0.01).fit(train_scores).threshold_
    POTThreshold(q=1e-3, level=0.98).fit(train_scores).threshold_
    spot = SPOTThreshold(q=1e-4).fit(calibration_scores); out = spot.run(stream)  # out.thresholds, out.alarms
    DSPOTThreshold(depth=10).fit(calibration_scores).run(stream)
    BestF1Threshold().fit(val_scores, val_labels).threshold_

Detectors take any of them as ``threshold=`` (or a float, or the names "contamination", "pot",
"spot", "dspot"; see :func:`make_threshold`).

The tail rules (POT, SPOT, DSPOT) extrapolate from a generalised Pareto tail of the scores (Siffer et
al., KDD 2017); the extreme value theory and the tail fit are in :mod:`genad_fast.thresholds.gpd`.

Scores of +inf (a detector's verdict on a value far outside its training range) are valid input: they lie
above every finite threshold, so every rule flags them, and every rule still returns a finite
``threshold_`` (see :func:`finite_quantile`; the tail models POT/SPOT/DSPOT leave them out of the fit,
as SPOT leaves its alarms out). NaN and -inf scores are an error.
"""
from __future__ import annotations

import copy
from typing import Any, NamedTuple

import numpy as np

from genad_fast._params import Param, Parametrized
from genad_fast.metrics._checks import _check_scores as _metrics_check_scores
from genad_fast.metrics import best_f1
from genad_fast.thresholds.gpd import MIN_PEAKS, fit_gpd, pot_quantile

__all__ = [
    "BaseThreshold",
    "FixedThreshold",
    "ContaminationThreshold",
    "POTThreshold",
    "SPOTThreshold",
    "DSPOTThreshold",
    "BestF1Threshold",
    "StreamResult",
    "fit_gpd",
    "pot_quantile",
    "finite_quantile",
    "make_threshold",
    "THRESHOLD_NAMES",
]

#: Names a detector's ``threshold=`` accepts.
THRESHOLD_NAMES = ("contamination", "pot", "spot", "dspot")


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Float64 scores; NaN and -inf raise, +inf is kept (see the module docstring)."""
    return _metrics_check_scores(scores, name, "thresholds")


def finite_quantile(scores: np.ndarray, level: float) -> float:
    """``np.quantile(scores, level)`` (linear interpolation) made finite when +inf scores are present.

    Where the interpolation involves a +inf neighbour -- numpy would give +inf, or NaN from
    ``inf - inf`` / ``0 * inf`` -- the result is the largest finite score instead: ``score > threshold``
    then flags exactly the +inf scores, the closest a finite threshold gets to "the quantile is +inf"
    (a threshold of +inf would flag nothing, not even the +inf scores). All scores +inf: a ValueError (no
    finite score to place a threshold at).
    """
    finite = scores[np.isfinite(scores)]
    if finite.size == scores.size:
        return float(np.quantile(scores, level))
    if finite.size == 0:
        raise ValueError(f"all {scores.size} scores are +inf; a threshold needs at least one finite score")
    # numpy's "linear" method interpolates between sorted positions floor(p) and floor(p) + 1 (p = level (n-1));
    # +inf sorts last, so both are finite exactly when floor(p) + 1 < (number of finite scores).
    p = level * (scores.size - 1)
    nxt = min(int(np.floor(p)) + 1, scores.size - 1)
    if nxt < finite.size:  # the +inf scores lie beyond both neighbours: capping them changes nothing
        return float(np.quantile(np.minimum(scores, finite.max()), level))
    return float(finite.max())


# ---------------------------------------------------------------------------------------------- objects
class BaseThreshold(Parametrized):
    """Base of the threshold rules: scikit-learn style parameters declared as specs (:mod:`genad_fast._params`:
    ``get_params``/``set_params``, so a detector's ``threshold=`` object clones with it; the checks; the docs),
    ``fit(scores, labels=None) -> self``, ``threshold_``. The repr shows every parameter."""

    _repr_changed_only = False

    def fit(self, scores: Any, labels: Any = None) -> "BaseThreshold":  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(scores) first")


class FixedThreshold(BaseThreshold):
    """A fixed score threshold ``value`` (``fit`` only checks the scores)."""

    _param_specs = (Param("value", "number", "The threshold.", finite=True),)

    def __init__(self, value: float = 0.0):
        self.value = value

    def fit(self, scores: Any, labels: Any = None) -> "FixedThreshold":
        self._check_params()
        _check_scores(scores)
        self.threshold_ = float(self.value)
        return self


class ContaminationThreshold(BaseThreshold):
    """``threshold_ = quantile(scores, 1 - contamination)`` (linear interpolation, numpy's default).

    On clean training scores this flags about a ``contamination`` fraction of normal data: a false
    alarm rate chosen by hand, with no model of the tail. ``labels`` are ignored. When the quantile
    reaches the +inf scores it is the largest finite score (:func:`finite_quantile`).
    """

    _param_specs = (Param("contamination", "number", "The expected fraction of anomalies.", low=0.0, high=0.5,
                          low_open=True),)

    def __init__(self, contamination: float = 0.1):
        self.contamination = contamination

    def fit(self, scores: Any, labels: Any = None) -> "ContaminationThreshold":
        self._check_params()
        s = _check_scores(scores)
        self.threshold_ = finite_quantile(s, 1.0 - float(self.contamination))
        return self


class POTThreshold(BaseThreshold):
    """Peaks over threshold (Siffer et al., KDD 2017, Alg. 1): the score exceeded with probability ``q``,
    extrapolated from a generalised Pareto tail fitted above the ``level`` quantile.

    Parameters
    ----------

    Fitted: ``threshold_`` (= z_q), ``t_``, ``gamma_``, ``sigma_``, ``n_`` (scores), ``n_peaks_``.
    ``labels`` are ignored. Needs at least ``MIN_PEAKS`` = 10 scores above t.

    +inf scores are left out of the calibration (out of n and of the peaks; ``n_inf_`` counts them): an
    excess of +inf has no GPD likelihood, and a point beyond every finite threshold is an alarm, which
    SPOT keeps out of its model too.
    """

    _param_specs = (
        Param("q", "number", "Risk: the false-alarm probability per point the threshold is meant to have (the "
              "paper's value). It must be below the fraction of scores above the initial level (1 - level).",
              low=0.0, high=1.0, low_open=True, high_open=True),
        Param("level", "number", "Quantile of the scores used as the initial level t (the paper's 98%).",
              low=0.0, high=1.0, low_open=True, high_open=True),
    )

    def __init__(self, q: float = 1e-4, level: float = 0.98):
        self.q = q
        self.level = level

    def _calibrate(self, s: np.ndarray) -> np.ndarray:
        self._check_params()
        q, level = float(self.q), float(self.level)
        finite = np.isfinite(s)
        self.n_inf_ = int(s.size - np.count_nonzero(finite))
        s = s[finite]
        if s.size == 0:
            raise ValueError(f"{type(self).__name__}: all {self.n_inf_} scores are +inf; a tail fit needs "
                             f"finite scores")
        t = float(np.quantile(s, level))
        peaks = s[s > t] - t
        if peaks.size < MIN_PEAKS:
            raise ValueError(f"{type(self).__name__}: only {peaks.size} of {s.size} scores lie above the initial "
                             f"level (the {level:g} quantile, {t:.6g}); a tail fit needs at least {MIN_PEAKS}: "
                             f"give more scores or lower level")
        if q >= peaks.size / s.size:
            raise ValueError(f"{type(self).__name__}: q={q:g} must be below the fraction of scores above the "
                             f"initial level ({peaks.size}/{s.size} = {peaks.size / s.size:.3g}); lower q or level")
        self.q_, self.t_, self.n_, self.n_peaks_ = q, t, int(s.size), int(peaks.size)
        self.gamma_, self.sigma_ = fit_gpd(peaks)
        self.threshold_ = pot_quantile(t, self.gamma_, self.sigma_, q, self.n_, self.n_peaks_)
        return peaks

    def fit(self, scores: Any, labels: Any = None) -> "POTThreshold":
        self._calibrate(_check_scores(scores))
        return self


class StreamResult(NamedTuple):
    """What :meth:`SPOTThreshold.run` returns: per stream point, the threshold it was compared with
    (float64) and whether it raised an alarm (bool, ``x > threshold``)."""

    thresholds: np.ndarray
    alarms: np.ndarray


class SPOTThreshold(POTThreshold):
    """Streaming POT (Siffer et al., KDD 2017, Alg. 2 "SPOT"): ``fit`` calibrates as :class:`POTThreshold`
    on an initial batch; :meth:`run` then walks a stream, and for each point x:

    - x > z_q: an alarm; the point is not used to update the model;
    - t < x <= z_q: a new peak x - t; the GPD is refitted and z_q updated;
    - otherwise: only the count n grows (so z_q drifts up slowly as q n / N_t grows).

    ``threshold_`` is the current z_q (after fit, then after each run). Parameters as POTThreshold.

    Known bias: keeping alarms out of the fit (so anomalies cannot inflate the tail) truncates the
    tail at z_q, which pulls the refitted z_q down; on stationary exponential streams with q = 1e-3
    the alarm rate measured 1.7 to 3.1 times q (four seeds, 30 000 points), where refitting with
    every exceedance gave 0.8 to 1.3 times q. The smaller q is against 1 - level, the smaller the bias.
    """

    def fit(self, scores: Any, labels: Any = None) -> "SPOTThreshold":
        self.peaks_ = self._calibrate(_check_scores(scores))
        return self

    def _step(self, x: float) -> tuple[float, bool]:
        z = self.threshold_
        if x > z:
            return z, True
        if x > self.t_:
            self.peaks_ = np.append(self.peaks_, x - self.t_)
            self.n_peaks_ += 1
            self.n_ += 1
            self.gamma_, self.sigma_ = fit_gpd(self.peaks_)
            self.threshold_ = pot_quantile(self.t_, self.gamma_, self.sigma_, self.q_, self.n_, self.n_peaks_)
        else:
            self.n_ += 1  # z_q is recomputed at the next peak only (Alg. 2)
        return z, False

    def run(self, stream: Any) -> StreamResult:
        """Walk ``stream`` (1-D scores) point by point; the state carries over to the next ``run``."""
        self._check_fitted()
        s = _check_scores(stream, "stream")
        thr = np.empty(s.size)
        alarms = np.zeros(s.size, dtype=bool)
        for i, x in enumerate(s):
            thr[i], alarms[i] = self._step(float(x))
        return StreamResult(thr, alarms)


class DSPOTThreshold(SPOTThreshold):
    """SPOT with drift (Siffer et al., KDD 2017, Alg. 3 "DSPOT"): SPOT runs on ``x - M``, where M is the
    mean of the last ``depth`` normal points, so the threshold ``M + z_q`` follows a drifting baseline.

    ``fit``: the first ``depth`` scores fill the window, the rest are calibrated as POT on their local
    deviations (the window sliding over them). +inf scores are alarms at any threshold: as in
    :meth:`run`, they never enter the window (nor the tail fit). :meth:`run`: an alarm (x > M + z_q) leaves the window
    unchanged; any other point enters it (and a peak refits the tail, as SPOT).

    Parameters
    ----------

    ``threshold_`` is the absolute threshold for the next point, ``M + z_q``; ``z_`` the relative one.
    """

    _param_specs = (Param("depth", "int", "Length of the moving average. Short enough to follow drift within "
                          "about ``depth`` steps; the paper leaves it to the user (it depends on how fast the "
                          "baseline moves).", low=1),)

    def __init__(self, depth: int = 10, q: float = 1e-4, level: float = 0.98):
        super().__init__(q=q, level=level)
        self.depth = depth

    def fit(self, scores: Any, labels: Any = None) -> "DSPOTThreshold":
        self._check_params()
        d = int(self.depth)
        s = _check_scores(scores)
        n_inf = int(s.size - np.count_nonzero(np.isfinite(s)))
        s = s[np.isfinite(s)]  # +inf: alarms, kept out of the moving window (inf - inf would poison it)
        if s.size <= d:
            raise ValueError(f"DSPOTThreshold needs more than depth={d} finite scores to calibrate, got {s.size}")
        csum = np.concatenate(([0.0], np.cumsum(s)))
        local = (csum[d:-1] - csum[:-d - 1]) / d  # mean of the d points before each of s[d:]
        self.peaks_ = self._calibrate(s[d:] - local)
        self.n_inf_ = n_inf
        self.z_ = self.threshold_
        self.window_ = s[-d:].copy()
        self.threshold_ = float(self.window_.mean() + self.z_)
        return self

    def run(self, stream: Any) -> StreamResult:
        """Walk ``stream`` point by point; the window and tail carry over to the next ``run``."""
        self._check_fitted()
        s = _check_scores(stream, "stream")
        thr = np.empty(s.size)
        alarms = np.zeros(s.size, dtype=bool)
        window = list(self.window_)
        total = float(sum(window))
        d = len(window)
        for i, x in enumerate(s):
            m = total / d
            self.threshold_ = self.z_
            z, alarm = self._step(float(x) - m)  # SPOT on the local deviation
            self.z_ = self.threshold_
            thr[i], alarms[i] = m + z, alarm
            if not alarm:
                total += float(x) - window.pop(0)
                window.append(float(x))
        self.window_ = np.asarray(window)
        self.threshold_ = float(total / d + self.z_)
        return StreamResult(thr, alarms)


class BestF1Threshold(BaseThreshold):
    """The threshold of best point-wise F1 on labelled scores (:func:`genad_fast.metrics.best_f1`).

    Fit it on a labelled *validation* split, never on the test labels the detector is judged on (that
    is an oracle). Fitted: ``threshold_``, ``f1_``, ``precision_``, ``recall_`` (on the fitting data).
    """

    def fit(self, scores: Any, labels: Any = None) -> "BestF1Threshold":
        if labels is None:
            raise ValueError("BestF1Threshold needs labels: fit(scores, labels) on a labelled validation split")
        r = best_f1(labels, scores)
        self.threshold_, self.f1_, self.precision_, self.recall_ = r["threshold"], r["f1"], r["precision"], r["recall"]
        return self


# ---------------------------------------------------------------------------------------------- resolution
_CLASSES = {c.__name__: c for c in (FixedThreshold, ContaminationThreshold, POTThreshold, SPOTThreshold,
                                    DSPOTThreshold, BestF1Threshold)}


def make_threshold(spec: Any, contamination: float = 0.1) -> BaseThreshold:
    """A fresh, unfitted threshold object for a detector's ``threshold=`` value.

    None or "contamination": :class:`ContaminationThreshold` (``contamination``); a number:
    :class:`FixedThreshold`; "pot", "spot", "dspot": those rules with their paper defaults;
    "best_f1": :class:`BestF1Threshold` (needs labels); a threshold object: an unfitted copy of it
    (the caller's object is never fitted in place).
    """
    if spec is None or (isinstance(spec, str) and spec == "contamination"):
        return ContaminationThreshold(contamination)
    if isinstance(spec, str):
        named = {"pot": POTThreshold, "spot": SPOTThreshold, "dspot": DSPOTThreshold, "best_f1": BestF1Threshold}
        if spec not in named:
            raise ValueError(f"threshold must be None, a number, one of {', '.join(THRESHOLD_NAMES + ('best_f1',))} "
                             f"or a threshold object, got {spec!r}")
        return named[spec]()
    if isinstance(spec, (bool, np.bool_)):
        raise ValueError(f"threshold must be None, a number, a name or a threshold object, got {spec!r}")
    if isinstance(spec, (int, float, np.floating, np.integer)):
        if not np.isfinite(spec):
            raise ValueError(f"a fixed threshold must be finite, got {spec!r}")
        return FixedThreshold(float(spec))
    if isinstance(spec, BaseThreshold):
        return type(spec)(**spec.get_params())
    if callable(getattr(spec, "fit", None)):
        return copy.deepcopy(spec)
    raise ValueError(f"threshold must be None, a number, one of {', '.join(THRESHOLD_NAMES)} or an object with "
                     f"fit(scores, labels=None) and threshold_, got {type(spec).__name__}")


def check_threshold_spec(spec: Any) -> None:
    """ValueError unless ``spec`` is a valid ``threshold=`` value (checked before any work at fit)."""
    make_threshold(spec)


def threshold_to_spec(obj: BaseThreshold) -> dict:
    """A threshold object as plain data for a model file: ``{"threshold_class": name, "params": {...}}``."""
    name = type(obj).__name__
    if _CLASSES.get(name) is not type(obj):
        raise TypeError(f"threshold object {name} cannot be stored in a model file (only the classes of "
                        f"genad_fast.thresholds can); store a float or a name instead")
    return {"threshold_class": name, "params": obj.get_params()}


def threshold_from_spec(spec: Any) -> Any:
    """Inverse of :func:`threshold_to_spec`; any other value is returned unchanged."""
    if isinstance(spec, dict) and "threshold_class" in spec:
        cls = _CLASSES.get(spec["threshold_class"])
        if cls is None:
            raise ValueError(f"unknown threshold class {spec['threshold_class']!r} in a model file")
        return cls(**spec.get("params", {}))
    return spec
