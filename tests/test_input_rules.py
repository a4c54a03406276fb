"""The base's rules for real-world input, on the real detectors (issue #12, defects 1-4).

1. any memory layout numpy / pandas / torch produce scores as the C-order array does;
2. a finite but extreme value (FLT_MAX sentinel, glitch) scores +inf, never NaN, and a model's NaN is an error;
3. DiffusionDetector's score grows with a spike's size (its reconstruction is clipped to the training range);
4. a constant training column is reported and does not break FlowDetector (nor a 784-pixel image table).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from genad_fast import metrics
from genad_fast.detectors import BaseDetector
from genad_fast.detectors._extremes import EXTREME_SIGMAS, ConstantColumnWarning, ExtremeValueWarning
from genad_fast.detectors.anogan import AnoGANDetector
from genad_fast.detectors.diffusion import DiffusionDetector
from genad_fast.detectors.flow import FlowDetector
from genad_fast.detectors.kde import KDEDetector
from genad_fast.detectors.knn import KNNDetector

SMALL_FLOW = dict(n_steps=2, hidden=16, n_blocks=1, epochs=3, verbose=False, seed=0)
SMALL_DIFFUSION = dict(window=32, n_layers=3, residual_channels=16, epochs=3, verbose=False, seed=0)
SMALL_ANOGAN = dict(epochs=2, min_steps=1, iterations=5, verbose=False, seed=0)


def _frame(n=240, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({"t": t, "a": np.sin(t / 9) + 0.1 * rng.normal(size=n), "b": rng.normal(size=n),
                         "c": np.cos(t / 5) + 0.1 * rng.normal(size=n)})


def _series(T=3000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    return np.c_[np.sin(t / 10), np.cos(t / 7)] + 0.05 * rng.normal(size=(T, 2))


# ---- 1. layouts ------------------------------------------------------------------------------------
LAYOUT_DETECTORS = {
    "kde": lambda **kw: KDEDetector(verbose=False, **kw),
    "knn": lambda **kw: KNNDetector(verbose=False, **kw),
    "anogan": lambda **kw: AnoGANDetector(**SMALL_ANOGAN, **kw),
}


@pytest.mark.parametrize("name", sorted(LAYOUT_DETECTORS))
@pytest.mark.parametrize("window", [None, 8])
def test_column_major_and_other_layouts_score_like_c_order(name, window):
    frame = _frame()
    values = np.ascontiguousarray(frame[["a", "b", "c"]].to_numpy())
    det = LAYOUT_DETECTORS[name](window=window).fit(frame[["a", "b", "c"]])  # pandas gives column-major blocks
    expected = det.decision_function(values)
    layouts = {
        "frame[cols]": frame[["a", "b", "c"]],
        "frame.drop": frame.drop(columns=["t"]),
        "fortran": np.asfortranarray(values),
        "reversed twice": values[::-1][::-1],
        "negative strides": np.ascontiguousarray(values[::-1])[::-1],
        "transposed twice": values.T.copy().T,
        "big-endian": values.astype(">f8"),
        "read-only": np.frombuffer(values.tobytes(), dtype=np.float64).reshape(values.shape),
        "torch transposed": torch.from_numpy(values.T.copy()).T,
    }
    for label, X in layouts.items():
        got = det.decision_function(X)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9, err_msg=label)


def test_a_fit_on_column_major_data_equals_the_fit_on_c_order():
    values = np.ascontiguousarray(_frame()[["a", "b", "c"]].to_numpy())
    a = KNNDetector(verbose=False).fit(np.asfortranarray(values)).decision_function(values)
    b = KNNDetector(verbose=False).fit(values).decision_function(values)
    np.testing.assert_array_equal(a, b)


# ---- 2. extreme values -----------------------------------------------------------------------------
def _tabular(n=400, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("sentinel", [3.0e38, -3.4e38, 1e300])
def test_an_extreme_value_scores_plus_inf_and_is_predicted_anomalous(sentinel):
    X = _tabular()
    det = FlowDetector(**SMALL_FLOW).fit(X)
    Y = X[:6].copy()
    Y[3, 1] = sentinel
    with pytest.warns(ExtremeValueWarning, match="row 3, column 1"):
        scores = det.decision_function(Y)
    assert np.isposinf(scores[3])
    assert np.isfinite(np.delete(scores, 3)).all()
    # the other rows are scored as if the sentinel row were not there
    np.testing.assert_allclose(np.delete(scores, 3), det.decision_function(np.delete(Y, 3, axis=0)), rtol=1e-5)
    with pytest.warns(ExtremeValueWarning):
        assert det.predict(Y)[3] == 1


def test_values_just_inside_the_bound_score_finite_and_grow():
    X = _tabular()
    det = KDEDetector(verbose=False).fit(X)
    std = X[:, 0].std()
    scores = []
    for k in (10.0, 1e3, 1e5, 0.9 * EXTREME_SIGMAS):
        Y = X[:2].copy()
        Y[0, 0] = X[:, 0].mean() + k * std
        scores.append(det.decision_function(Y)[0])
    assert np.isfinite(scores).all()
    assert all(b >= a for a, b in zip(scores, scores[1:])), scores


@pytest.mark.parametrize("reduce,reach", [("min", 0), ("mean", 7), ("max", 7)])
def test_series_glitch_scores_plus_inf_over_the_windows_that_hold_it(reduce, reach):
    X = _series(T=600)
    det = FlowDetector(window=8, reduce=reduce, **SMALL_FLOW).fit(X[:400])
    Y = X[400:].copy()
    Y[100, 0] = np.finfo(np.float32).max
    with pytest.warns(ExtremeValueWarning):
        scores = det.decision_function(Y)
    inf = np.flatnonzero(np.isposinf(scores))
    np.testing.assert_array_equal(inf, np.arange(100 - reach, 100 + reach + 1))
    assert not np.isnan(scores).any()
    assert np.isfinite(np.delete(scores, inf)).all()


def test_diffusion_glitch_scores_plus_inf():
    X = _series(T=1200)
    det = DiffusionDetector(**SMALL_DIFFUSION).fit(X[:800])
    Y = X[800:].copy()
    Y[200, 1] = 3e38
    with pytest.warns(ExtremeValueWarning):
        scores = det.decision_function(Y)
    assert np.isposinf(scores[200])
    assert not np.isnan(scores).any()
    with pytest.warns(ExtremeValueWarning):
        assert det.predict(Y)[200] == 1


def test_the_guard_works_without_normalisation():
    X = _tabular() * 1e7 + 5e8  # raw units where 1e6 would be an ordinary value
    det = KNNDetector(normalize=False, verbose=False).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtremeValueWarning)
        assert np.isfinite(det.decision_function(X[:10])).all()
    Y = X[:3].copy()
    Y[1, 2] = 1e30
    with pytest.warns(ExtremeValueWarning):
        assert np.isposinf(det.decision_function(Y)[1])


class _NaNDetector(BaseDetector):
    """Scores NaN on rows whose first feature is above 2: a model whose arithmetic broke."""

    def _fit_model(self, data):
        self.n_ = data.shape[0]

    def _score_model(self, batch):
        s = batch[:, 0].abs().clone()
        s[batch[:, 0] > 2] = float("nan")
        return s


def test_a_nan_score_from_a_model_is_an_error_not_a_normal_verdict():
    X = np.clip(_tabular(), -1.9, 1.9)
    det = _NaNDetector(verbose=False).fit(X)
    Y = X[:5].copy()
    Y[2, 0] = 2.5 * X[:, 0].std() + X[:, 0].mean()
    with pytest.raises(RuntimeError, match="NaN/-inf score"):
        det.decision_function(Y)
    with pytest.raises(RuntimeError, match="NaN/-inf score"):
        det.predict(Y)


# ---- 3. diffusion and large spikes -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
def test_diffusion_score_grows_with_a_spike_and_flags_it(mode):
    X = _series()
    det = DiffusionDetector(mode=mode, **SMALL_DIFFUSION).fit(X[:2000])
    Y = X[2000:]
    std = X[:2000, 0].std()
    scores = []
    for size in (10, 100, 1e3, 1e4, 1e5):
        Z = Y.copy()
        Z[500, 0] += size * std
        scores.append(det.decision_function(Z)[500])
        assert det.predict(Z)[500] == 1, size
    assert all(b > a for a, b in zip(scores, scores[1:])), scores


def test_diffusion_reconstruction_stays_in_the_training_range_after_save_load(tmp_path):
    det = DiffusionDetector(**SMALL_DIFFUSION).fit(_series()[:1000])
    det.save(tmp_path / "d.pt")
    loaded = DiffusionDetector.load(tmp_path / "d.pt")
    torch.testing.assert_close(loaded.train_min_, det.train_min_)
    torch.testing.assert_close(loaded.train_max_, det.train_max_)


# ---- 4. constant columns ---------------------------------------------------------------------------
def _easy_task(seed=0):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(1000, 6))
    test = np.r_[rng.normal(size=(400, 6)), rng.normal(size=(40, 6)) + 4.0]
    labels = np.r_[np.zeros(400), np.ones(40)]
    return train, test, labels


def test_a_constant_column_is_reported_by_name():
    train, _, _ = _easy_task()
    frame = pd.DataFrame(np.c_[train, np.full(len(train), 7.0)], columns=[*"abcdef", "stuck"])
    with pytest.warns(ConstantColumnWarning, match="'stuck'"):
        KNNDetector(verbose=False).fit(frame)


def test_a_constant_column_does_not_ruin_the_flow():
    train, test, labels = _easy_task()
    with_stuck = [np.c_[a, np.full(len(a), 5.0)] for a in (train, test)]
    with pytest.warns(ConstantColumnWarning):
        det = FlowDetector(epochs=30, verbose=False, seed=0).fit(with_stuck[0])
    assert det.decision_scores_.max() < 10  # nats/dim of normal data; the 1e6 ActNorm scale gave ~1e2-1e4
    assert metrics.auroc(labels, det.decision_function(with_stuck[1])) > 0.99
    # a change in the stuck column at scoring time counts
    moved = with_stuck[1][:5].copy()
    moved[:, -1] += 50.0
    assert (det.decision_function(moved) > det.decision_function(with_stuck[1][:5])).all()


def test_a_constant_channel_in_a_series_does_not_break_the_flow():
    X = _series(T=1500)
    X = np.c_[X, np.zeros(len(X))]
    with pytest.warns(ConstantColumnWarning):
        det = FlowDetector(window=8, **SMALL_FLOW).fit(X[:1000])
    assert np.isfinite(det.decision_scores_).all() and det.decision_scores_.max() < 10
    assert np.isfinite(det.decision_function(X[1000:])).all()


def test_flow_fits_flattened_28x28_digit_images():
    # 784 columns in [0, 1], the border always 0: the table a user tries first on image-like rows.
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([zoom(im / 16.0, 3.5, order=1) for im in digits.images]).clip(0, 1).reshape(len(digits.images), -1)
    assert images.shape[1] == 784
    normal, other = images[digits.target == 0], images[digits.target == 1][:40]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantColumnWarning)
        det = FlowDetector(epochs=5, verbose=False, seed=0).fit(normal[:140])
    test = np.r_[normal[140:], other]
    labels = np.r_[np.zeros(len(normal) - 140), np.ones(len(other))]
    scores = det.decision_function(test)
    assert np.isfinite(scores).all()
    assert metrics.auroc(labels, scores) > 0.9


def test_all_constant_columns_are_a_clear_error():
    with pytest.raises(ValueError, match="constant in the training data"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantColumnWarning)
            FlowDetector(**SMALL_FLOW).fit(np.ones((100, 3)))


def test_set_threshold_and_metrics_take_plus_inf_scores():
    X = _tabular()
    det = KNNDetector(verbose=False).fit(X)
    val = _tabular(n=60, seed=1)
    val[5, 0] = 3e38
    labels = np.zeros(60, dtype=int)
    labels[5] = 1
    with pytest.warns(ExtremeValueWarning):
        det.set_threshold(val)  # the detector's own rule (the contamination quantile) over scores holding +inf
    assert np.isfinite(det.threshold_)
    with pytest.warns(ExtremeValueWarning):
        det.set_threshold(val, labels)  # best F1: the cut below +inf, finite
    assert np.isfinite(det.threshold_)
    with pytest.warns(ExtremeValueWarning):
        scores = det.decision_function(val)
        assert det.predict(val)[5] == 1
    assert metrics.auroc(labels, scores) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_quick_extreme_test_never_misses_what_the_exact_one_flags(dtype):
    from genad_fast.detectors._extremes import extreme_entries, may_hold_extremes
    from genad_fast.series import Normalizer

    rng = np.random.default_rng(0)
    for trial in range(200):
        C = int(rng.integers(1, 5))
        train = rng.normal(size=(50, C)) * 10.0 ** rng.integers(-6, 7, size=C) + 10.0 ** rng.integers(-3, 12, size=C)
        stats = Normalizer.fit(torch.from_numpy(train))
        bound = stats.mean.numpy() + EXTREME_SIGMAS * stats.scale.numpy() * rng.choice([-1.0, 1.0], size=C)
        x = torch.from_numpy(np.r_[train[:3], bound[None]]).to(dtype)
        x[-1] = torch.nextafter(x[-1], x[-1] * 2)  # one ulp beyond or at the bound, in x's dtype
        exact = bool(extreme_entries(x, stats).any())
        assert may_hold_extremes(x, stats) or not exact, trial
    clean = torch.from_numpy(train).to(dtype)
    assert not may_hold_extremes(clean, stats)
