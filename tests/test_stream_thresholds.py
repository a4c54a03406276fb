"""Live thresholds in det.stream() (issue #15, point 3): SPOT/DSPOT run on the scores as they come out.

- ``threshold="dspot"``/``"spot"`` in a stream in chunks gives exactly the thresholds and alarms of the rule
  calibrated on the same scores and run over the whole score sequence at once (its state carries over between
  updates), and that of Siffer et al.'s rules: alarms stay out of the peaks (SPOT) and out of DSPOT's mean;
- a fitted rule object continues from its state (the caller's object is left alone); other rules and numbers
  give a fixed threshold; bad values are errors;
- drift: a series whose level rises slowly, scored by a detector whose score follows the level: DSPOT follows
  it (few false alarms after the change), a fixed threshold flags nearly everything after it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genad_fast.detectors import BaseDetector
from genad_fast.thresholds import DSPOTThreshold, POTThreshold, SPOTThreshold
from tiny_detectors import make_detector

pytestmark = pytest.mark.usefixtures("one_thread")


class LevelDetector(BaseDetector):
    """Test-only: a window's score is the mean of its first channel (normalize=False), so a level change of the
    series is the same level change of the scores, with the same noise."""

    def _fit_model(self, data: torch.Tensor) -> None:
        self.fitted_ = True

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[:, :, 0].mean(dim=1)

    def _get_state(self) -> dict:
        return {}

    def _set_state(self, state: dict) -> None:
        self.fitted_ = True


def noise(T: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_exponential(size=(T, 1))


def stream_all(s, x, chunk):
    outs = [s.update(x[i:i + chunk]) for i in range(0, len(x), chunk)] + [s.flush()]
    return {f: np.concatenate([getattr(o, f) for o in outs]) for f in ("index", "scores", "alarms", "thresholds")}


@pytest.fixture(scope="module")
def knn():
    t = np.arange(1500)[:, None]
    x = np.sin(2 * np.pi * t / 25 + np.arange(2)) + 0.3 * np.random.default_rng(0).normal(size=(1500, 2))
    return make_detector("knn", "series", window=16, stride=1, device="cpu").fit(x), x


@pytest.mark.parametrize("rule", ["spot", "dspot", DSPOTThreshold(depth=30, q=1e-3)])
def test_live_rule_equals_the_rule_run_over_the_scores(knn, rule):
    det, train = knn
    x = train[::-1].copy() + 0.05
    x[700:705] += 4.0
    got = stream_all(det.stream(threshold=rule, delay=2), x, chunk=37)
    ref = SPOTThreshold() if rule == "spot" else DSPOTThreshold() if rule == "dspot" else \
        DSPOTThreshold(depth=30, q=1e-3)
    ref.fit(det.decision_scores_)
    want = ref.run(got["scores"])
    np.testing.assert_array_equal(got["thresholds"], want.thresholds)
    np.testing.assert_array_equal(got["alarms"], want.alarms)
    assert got["alarms"][700:720].any() and got["thresholds"].std() > 0  # the spike is found; the threshold moves
    one = stream_all(det.stream(threshold=rule, delay=2), x, chunk=1)
    np.testing.assert_array_equal(one["thresholds"], got["thresholds"])


def test_spot_keeps_alarms_out_of_its_peaks(knn):
    det, _ = knn
    s = det.stream(threshold="spot")
    peaks = s._threshold.rule.n_peaks_
    huge = np.full((40, 2), 50.0)  # far out: every window holding it is an alarm, not a peak
    s.update(np.random.default_rng(1).normal(size=(16, 2)))
    out = s.update(huge)
    assert out.alarms.all() and s._threshold.rule.n_peaks_ == peaks


def test_fitted_rule_objects_continue_and_are_left_alone(knn):
    det, x = knn
    cal = det.causal_decision_function(x[:800])
    spot = SPOTThreshold(q=1e-3).fit(cal)
    state = (spot.threshold_, spot.n_, spot.n_peaks_)
    got = stream_all(det.stream(threshold=spot), x[800:], chunk=50)
    assert (spot.threshold_, spot.n_, spot.n_peaks_) == state  # the caller's object did not move
    want = SPOTThreshold(q=1e-3).fit(cal).run(got["scores"])
    np.testing.assert_array_equal(got["thresholds"], want.thresholds)


def test_fixed_thresholds(knn):
    det, x = knn
    y = x[:200]
    pot = POTThreshold().fit(det.decision_scores_).threshold_
    for spec, value in ((None, det.threshold_), (1.5, 1.5), ("pot", pot),
                        ("contamination", np.quantile(det.decision_scores_, 1 - det.contamination))):
        got = stream_all(det.stream(threshold=spec), y, chunk=9)
        np.testing.assert_array_equal(got["thresholds"], np.full(200, value))
        np.testing.assert_array_equal(got["alarms"], got["scores"] > value)
    cal = np.linspace(0.0, 1.0, 101)
    assert det.stream(threshold="contamination", calibration=cal).threshold_ == np.quantile(cal, 0.9)


def test_threshold_errors(knn):
    det, _ = knn
    with pytest.raises(ValueError, match="needs labels"):
        det.stream(threshold="best_f1")
    with pytest.raises(ValueError, match="must be finite"):
        det.stream(threshold=float("inf"))
    with pytest.raises(ValueError, match="threshold must be None, a number"):
        det.stream(threshold=True)
    with pytest.raises(ValueError, match="calibration= calibrates a threshold rule"):
        det.stream(calibration=det.decision_scores_)
    with pytest.raises(ValueError, match="threshold must be None, a number, one of"):
        det.stream(threshold="spott")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dspot_follows_a_slow_level_change_and_a_fixed_threshold_does_not(seed):
    """Scores: exponential noise, then a ramp of 6 (about 6 noise std) over 3000 points, then the new level.
    The fixed threshold is POT's (the extreme-value quantile of the calibration scores, risk 1e-4)."""
    det = LevelDetector(window=8, normalize=False, verbose=False, device="cpu").fit(noise(3000, 0))
    level = np.concatenate([np.zeros(1000), np.linspace(0.0, 6.0, 3000), np.full(2000, 6.0)])[:, None]
    x = noise(len(level), 1 + seed) + level
    calibration = det.causal_decision_function(noise(3000, 20 + seed))  # fresh normal scores, causal like the stream
    fixed = stream_all(det.stream(threshold="pot", calibration=calibration), x, chunk=25)
    live = stream_all(det.stream(threshold="dspot", calibration=calibration), x, chunk=25)
    before, ramp, after = slice(0, 1000), slice(1000, 4000), slice(4000, None)
    assert fixed["alarms"][before].sum() <= 3 and live["alarms"][before].sum() <= 3
    # the fixed threshold flags most of the ramp and every point after it
    assert fixed["alarms"][ramp].mean() > 0.5 and fixed["alarms"][after].mean() > 0.99
    # DSPOT's threshold M + z_q rose with the level, and its false alarms stay rare
    assert live["alarms"][ramp].mean() < 0.005 and live["alarms"][after].mean() < 0.005
    assert live["thresholds"][after].min() > fixed["thresholds"][0] + 4.0
