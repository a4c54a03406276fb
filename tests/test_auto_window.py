"""window="auto" (issue #17, point 2): the dominant period (genad_fast.periodicity) and the window it gives.

- dominant_period: TSB-AD's ACF rule; sines of known period, clean and noisy, one and many channels, within 5 %;
  rank 2; the FFT cross-check; the ACF against a direct sum; constant and too-short series fall back to 125;
  NaN, inf, empty and 3-D input are ValueErrors naming the problem.
- auto_window: one period clipped to [8, min(512, T // 2)].
- Every registered series detector fits and scores with window="auto" (window_ = the period) and with window=8;
  the resolved window survives save/load, streams, collections; an unfitted "auto" has no window.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genad_fast
from genad_fast.detectors import get_detector
from genad_fast.detectors._validation import NotFittedError
from genad_fast.periodicity import (FALLBACK_PERIOD, acf, auto_window, dominant_period, spectral_period,
                                    window_from_period)
from tiny_detectors import TINY, cases, make_detector

pytestmark = pytest.mark.usefixtures("one_thread")

SERIES = sorted(name for name, mode in cases() if mode == "series")


def sine(T: int, period: float, C: int = 1, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    x = np.sin(2 * np.pi * t / period + np.arange(C)) + noise * rng.standard_normal((T, C))
    return x[:, 0] if C == 1 else x


# ------------------------------------------------------------------ the period
@pytest.mark.parametrize("period", [12, 24, 50, 100, 200])
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_sine_period_within_5_percent(period, noise):
    got = dominant_period(sine(4000, period, noise=noise, seed=period))
    assert abs(got - period) <= 0.05 * period, (period, noise, got)


@pytest.mark.parametrize("period", [23.2, 37.3])
def test_non_integer_period_within_5_percent(period):
    assert abs(dominant_period(sine(5000, period, noise=0.2)) - period) <= 0.05 * period


def test_half_integer_period_gives_its_first_integer_multiple():
    # TSB-AD's rule reads integer lags: at 17 and 18 a 17.5 sine is half a step out of phase, at 35 in phase, so
    # the highest ACF peak is two periods (a window of two periods still holds the pattern)
    assert dominant_period(sine(5000, 17.5, noise=0.2)) == 35


def test_multichannel_median_and_first():
    # channels with periods 20, 30, 40: "first" reads channel 0 only (TSB-AD), "median" the middle one
    t = np.arange(3000)[:, None]
    x = np.sin(2 * np.pi * t / np.array([20.0, 30.0, 40.0]))
    assert dominant_period(x) == 20
    assert dominant_period(x, channels="median") == 30
    # a constant channel has no peak and is left out of the median
    y = np.column_stack([sine(3000, 48, noise=0.3), np.full(3000, 2.0), sine(3000, 48, noise=0.3, seed=1)])
    assert abs(dominant_period(y, channels="median") - 48) <= 0.05 * 48
    assert auto_window(y) == dominant_period(y, channels="median")


def test_rank_two_is_the_next_peak_at_a_longer_lag():
    x = sine(4000, 25)
    assert dominant_period(x, rank=1) == 25
    assert dominant_period(x, rank=2) == 50
    assert dominant_period(x, rank=0) == 1  # TSB-AD's rank 0


@pytest.mark.parametrize("period", [16, 40, 100])
def test_fft_cross_check_agrees(period):
    x = sine(4000, period, noise=0.2)
    assert abs(spectral_period(x) - dominant_period(x)) <= 0.05 * period


def test_acf_equals_the_direct_sum():
    x = np.random.default_rng(3).standard_normal(257).cumsum()
    d = x - x.mean()
    direct = np.array([np.dot(d[: len(d) - k], d[k:]) for k in range(101)]) / np.dot(d, d)
    np.testing.assert_allclose(acf(x, 100), direct, rtol=1e-10, atol=1e-12)


def test_only_the_first_20000_samples_are_read():
    x = np.concatenate([sine(20000, 30), sine(20000, 90)])
    assert dominant_period(x) == 30


def test_fallbacks_never_raise():
    assert dominant_period(np.full(500, 3.0)) == FALLBACK_PERIOD       # constant: no ACF
    assert dominant_period(np.arange(5.0)) == FALLBACK_PERIOD          # too short for a peak
    assert dominant_period(np.linspace(0, 1, 1000)) == FALLBACK_PERIOD  # a ramp: a monotone ACF, no peak
    assert dominant_period(sine(4000, 400)) == FALLBACK_PERIOD         # period beyond TSB-AD's range (303)
    assert dominant_period(np.full(500, 3.0), fallback=64) == 64
    assert auto_window(np.full(1000, 3.0)) == FALLBACK_PERIOD
    assert auto_window(np.full(100, 3.0)) == 50                         # clipped to T // 2
    assert auto_window(np.arange(5.0)) == 8                             # shorter than the minimum: the minimum


@pytest.mark.parametrize("x, match", [
    (np.array([1.0, np.nan, 2.0] * 20), "NaN"),
    (np.array([1.0, np.inf, 2.0] * 20), "inf"),
    (np.zeros(0), "empty"),
    (np.zeros((0, 3)), "empty"),
    (np.zeros((4, 4, 4)), r"\[T\] or \[T, C\]"),
])
def test_invalid_series_raise(x, match):
    with pytest.raises(ValueError, match=match):
        dominant_period(x)
    with pytest.raises(ValueError, match=match):
        auto_window(x)


def test_invalid_types_and_arguments():
    with pytest.raises(TypeError, match="real numbers"):
        dominant_period(np.array(["a", "b"] * 10))
    with pytest.raises(ValueError, match="channels must be"):
        dominant_period(sine(100, 10), channels="mean")
    with pytest.raises(ValueError, match="rank must be"):
        dominant_period(sine(100, 10), rank=-1)
    with pytest.raises(ValueError, match="maximum=4 is below minimum=8"):
        auto_window(sine(100, 10), maximum=4)


def test_torch_input_and_window_rule():
    x = torch.from_numpy(sine(2000, 36, C=2, noise=0.1))
    assert dominant_period(x, channels="median") == auto_window(x) == 36
    assert auto_window(sine(2000, 36), maximum=30) == 30
    assert auto_window(sine(2000, 36), minimum=40) == 40
    assert window_from_period(36, 50) == 25 and window_from_period(3, 1000) == 8


# ------------------------------------------------------------------ detectors
PERIOD = 20


def train_series(T: int = 400, seed: int = 0) -> np.ndarray:
    return sine(T, PERIOD, C=2, noise=0.1, seed=seed)


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("window", ["auto", 8])
def test_every_series_detector_fits_and_scores(name, window):
    x = train_series()
    det = make_detector(name, "series", window=window, stride=1, device="cpu").fit(x)
    assert det.window == window  # fit never changes a parameter
    assert det.window_ == (PERIOD if window == "auto" else 8)
    scores = det.decision_function(train_series(200, seed=1))
    assert scores.shape == (200,) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["knn", "autoencoder", "diffusion"])
def test_resolved_window_survives_save_and_load(name, tmp_path):
    x, y = train_series(), train_series(150, seed=2)
    det = make_detector(name, "series", window="auto", stride=2, device="cpu").fit(x)
    det.save(tmp_path / "m.pt")
    back = genad_fast.load(tmp_path / "m.pt")
    assert back.window == "auto" and back.window_ == det.window_ == PERIOD
    np.testing.assert_array_equal(back.decision_function(y), det.decision_function(y))


def test_collection_takes_the_median_window_capped_at_the_shortest_series():
    parts = [sine(600, 16, noise=0.1), sine(600, 24, noise=0.1, seed=1), sine(600, 30, noise=0.1, seed=2)]
    det = get_detector("knn")(window="auto", verbose=False).fit(parts)
    assert det.window_ == 24
    det = get_detector("knn")(window="auto", verbose=False).fit([sine(600, 24), sine(40, 24)])
    assert det.window_ == 20  # half the shortest series
    per_part = det.decision_function([sine(100, 24), sine(50, 24)])
    assert [len(s) for s in per_part] == [100, 50]


def test_auto_window_errors_name_the_problem():
    det = get_detector("knn")(window="auto", verbose=False)
    with pytest.raises(NotFittedError, match="resolved from the training series"):
        det._window
    with pytest.raises(ValueError, match="fewer than the window window='auto' resolved to"):
        get_detector("knn")(window="auto", verbose=False).fit(sine(7, 4))
    with pytest.raises(ValueError, match="stride=30 is longer than the window window='auto' resolved to"):
        get_detector("knn")(window="auto", stride=30, verbose=False).fit(train_series())
    with pytest.raises(ValueError, match="window must be an int >= 1 or one of auto or None"):
        get_detector("knn")(window="period", verbose=False).fit(train_series())


def test_stream_uses_the_resolved_window():
    x = train_series()
    det = make_detector("knn", "series", window="auto", stride=1, device="cpu").fit(x)
    y = train_series(120, seed=3)
    s = det.stream(delay=det.window_ - 1)
    out = [s.update(y[:70]), s.update(y[70:]), s.flush()]
    scores = np.concatenate([o.scores for o in out])
    np.testing.assert_allclose(scores, det.decision_function(y), rtol=1e-6, atol=1e-9)


def test_diffusion_defaults_to_auto():
    det = get_detector("diffusion")(verbose=False, **TINY["diffusion"])
    assert det.window == "auto"
    assert get_detector("knn")().window is None  # a 2-D array is a table unless the caller says otherwise
