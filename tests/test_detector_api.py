"""BaseDetector through a tiny Gaussian detector: fit/score/predict, params, validation, RNG, model files."""
from __future__ import annotations

import io
import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

import genad_fast
from genad_fast import BackendUnavailableError
from genad_fast.detectors import (
    FORMAT_VERSION,
    BaseDetector,
    ModelFileError,
    NotFittedError,
    detector_names,
    get_detector,
    register_detector,
    unregister_detector,
)
from genad_fast.detectors._io import seal
from genad_fast.series import window_starts, windows_to_timestamps


class ExplicitDetector(BaseDetector):
    """scikit-learn style: every parameter spelled out in the signature."""

    def __init__(self, alpha=1.0, *, window=None, stride=1, contamination=0.1, reduce="mean", normalize=True,
                 device="auto", backend=None, seed=0, verbose=True):
        super().__init__(window=window, stride=stride, contamination=contamination, reduce=reduce,
                         normalize=normalize, device=device, backend=backend, seed=seed, verbose=verbose)
        self.alpha = alpha

    def _fit_model(self, data):
        self.center_ = data.reshape(data.shape[0], -1).mean(0)

    def _score_model(self, batch):
        return self.alpha * ((batch.reshape(batch.shape[0], -1) - self.center_) ** 2).sum(1)

    def _get_state(self):
        return {"center": self.center_}

    def _set_state(self, state):
        self.center_ = state["center"].to(self.device_)


def _rows(n=300, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _series(T=400, C=3, seed=0):
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return (np.sin(2 * np.pi * t / 25 + np.arange(C)) + 0.1 * rng.normal(size=(T, C))).astype(np.float32)


# ------------------------------------------------------------------ fit / score / predict
def test_tabular_fit_score_predict(gauss_cls):
    X = _rows()
    det = gauss_cls(contamination=0.05, verbose=False)
    assert det.fit(X) is det
    assert det.decision_scores_.shape == (300,) and det.decision_scores_.dtype == np.float64
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.95))
    assert np.array_equal(det.decision_function(X), det.decision_scores_)
    assert det.n_features_in_ == 4 and not hasattr(det, "feature_names_in_") and det.device_ == torch.device("cpu")
    # outliers score higher, and predict flags by the threshold
    test = np.vstack([X[:50], X[:5] + 8.0])
    scores = det.decision_function(test)
    assert scores[50:].min() > scores[:50].max()
    assert np.array_equal(det.predict(test), (scores > det.threshold_).astype(np.int64))
    assert det.predict(test)[50:].all()
    assert abs(det.predict(X).mean() - 0.05) < 0.01


def test_tabular_scores_are_the_hand_computed_gaussian(gauss_cls):
    X = _rows(50, 3).astype(np.float64)
    det = gauss_cls(normalize=False, verbose=False).fit(X)
    Xt = X.astype(np.float32).astype(np.float64)
    want = ((Xt - Xt.mean(0)) ** 2 / Xt.var(0)).mean(1)
    np.testing.assert_allclose(det.decision_scores_, want, rtol=1e-4)


@pytest.mark.parametrize("per_timestamp", [False, True])
@pytest.mark.parametrize("stride", [1, 4])
def test_series_scores_one_per_timestamp(gauss_cls, per_timestamp, stride):
    X = _series(T=203)
    det = gauss_cls(window=16, stride=stride, per_timestamp=per_timestamp, verbose=False).fit(X)
    assert det.decision_scores_.shape == (203,)
    # the same as windowing by hand: normalise, score every window of window_starts, aggregate
    z = det.normalizer_.transform(torch.from_numpy(X))
    wins = torch.stack([z[s:s + 16] for s in window_starts(203, 16, stride).tolist()])
    with torch.inference_mode():
        per_window = det._score_model(wins)
    want = windows_to_timestamps(per_window, 203, 16, stride).double().numpy()
    np.testing.assert_allclose(det.decision_scores_, want, rtol=1e-6)
    spiked = X.copy()
    spiked[150, 1] += 10.0
    s = det.decision_function(spiked)
    assert s.shape == (203,) and np.argmax(s) in range(135, 166)


def test_series_small_score_batches_match_one_batch(gauss_cls):
    X = _series(T=150)
    one = gauss_cls(window=8, stride=3, verbose=False).fit(X).decision_function(X)
    det = gauss_cls(window=8, stride=3, verbose=False)
    det.score_batch_size = 5  # instance attribute, as a subclass parameter would set it
    many = det.fit(X).decision_function(X)
    np.testing.assert_allclose(one, many, rtol=1e-6)


def test_series_exactly_one_window_and_max_reduce(gauss_cls):
    X = _series(T=40)
    det = gauss_cls(window=20, stride=5, reduce="max", verbose=False, per_timestamp=True).fit(X)
    s = det.decision_function(X[:20])
    assert s.shape == (20,) and np.isfinite(s).all()


def test_input_types_agree(gauss_cls):
    X = _rows(100, 3)
    ref = gauss_cls(verbose=False).fit(X).decision_function(X)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    det = gauss_cls(verbose=False).fit(frame)
    assert list(det.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_array_equal(det.decision_function(frame), ref)
    np.testing.assert_array_equal(det.decision_function(X), ref)  # arrays skip the name check
    np.testing.assert_array_equal(det.decision_function(torch.from_numpy(X)), ref)
    np.testing.assert_array_equal(det.decision_function(X.tolist()), ref)
    ints = gauss_cls(verbose=False).fit(np.arange(40).reshape(20, 2))
    assert ints.decision_scores_.shape == (20,)


def test_feature_names_in_as_scikit_learn_types_it(gauss_cls):
    X = _rows(60, 3)
    det = gauss_cls(verbose=False).fit(pd.DataFrame(X, columns=["a", "b", "c"]))
    names = det.feature_names_in_
    assert isinstance(names, np.ndarray) and names.dtype == object and names.tolist() == ["a", "b", "c"]
    assert all(type(n) is str for n in names)
    # column labels that are not all strings are no feature names (scikit-learn's rule), nor are arrays'
    assert not hasattr(gauss_cls(verbose=False).fit(pd.DataFrame(X)), "feature_names_in_")
    assert not hasattr(gauss_cls(verbose=False).fit(pd.DataFrame(X, columns=["a", 1, "c"])), "feature_names_in_")
    assert not hasattr(det.fit(X), "feature_names_in_")  # a refit on an array forgets the old names
    # a DataFrame with int labels scores a detector fitted on named columns without a name check
    named = gauss_cls(verbose=False).fit(pd.DataFrame(X, columns=["a", "b", "c"]))
    np.testing.assert_array_equal(named.decision_function(pd.DataFrame(X)), named.decision_function(X))


def test_one_dimensional_series_is_one_channel(gauss_cls):
    x = _series(T=120, C=1)[:, 0]
    det = gauss_cls(window=10, verbose=False).fit(x)
    assert det.n_features_in_ == 1
    np.testing.assert_array_equal(det.decision_function(x), det.decision_function(x[:, None]))
    np.testing.assert_array_equal(det.decision_function(pd.Series(x)), det.decision_function(x))


# ------------------------------------------------------------------ validation
def test_nan_and_inf_are_reported_with_count_and_place(gauss_cls):
    X = _rows(50, 3)
    X[7, 2] = np.nan
    X[9, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite values .* nan at row 7, column 2"):
        gauss_cls(verbose=False).fit(X)
    det = gauss_cls(verbose=False).fit(_rows(50, 3))
    frame = pd.DataFrame(_rows(5, 3), columns=["a", "b", "c"])
    frame.loc[3, "b"] = -np.inf
    det2 = gauss_cls(verbose=False).fit(frame.iloc[:0].pipe(lambda f: pd.DataFrame(_rows(50, 3), columns=f.columns)))
    with pytest.raises(ValueError, match=r"1 non-finite value .* -inf at row 3, column 'b'"):
        det2.decision_function(frame)
    with pytest.raises(ValueError, match="non-finite"):
        det.decision_function(torch.tensor([[0.0, float("nan"), 0.0]]))


def test_float32_overflow_is_an_error(gauss_cls):
    X = _rows(20, 2).astype(np.float64)
    X[4, 1] = 1e300
    with pytest.raises(ValueError, match="overflows torch.float32"):
        gauss_cls(verbose=False).fit(X)


@pytest.mark.parametrize("shape, window, match", [
    ((20,), None, r"must be 2-D \(n_samples, n_features\).*reshape\(-1, 1\)"),
    ((4, 5, 2), None, "must be 2-D"),
    ((4, 5, 2), 3, r"must be a series of shape \(T, C\)"),
    ((0, 3), None, "0 rows"),
    ((10, 0), None, "0 features"),
    ((1, 3), None, "needs at least 2 to fit"),
    ((8, 2), 10, "8 timestamps, fewer than window=10"),
    ((11, 2), 11, r"gives 1 window \(T=11, window=11, stride=1\).*at least 2"),
])
def test_shape_errors(gauss_cls, shape, window, match):
    with pytest.raises(ValueError, match=match):
        gauss_cls(window=window, verbose=False).fit(np.zeros(shape))


def test_scoring_shape_errors(gauss_cls):
    det = gauss_cls(verbose=False).fit(_rows(30, 3))
    with pytest.raises(ValueError, match="X has 2 features, but GaussDetector was fitted on 3"):
        det.decision_function(_rows(5, 2))
    sdet = gauss_cls(window=12, verbose=False).fit(_series(T=60, C=2))
    with pytest.raises(ValueError, match="X has 3 channels"):
        sdet.decision_function(_series(T=60, C=3))
    with pytest.raises(ValueError, match="11 timestamps, fewer than window=12"):
        sdet.decision_function(_series(T=11, C=2))


def test_non_numeric_and_renamed_columns(gauss_cls):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "when": ["x", "y", "z"], "b": [0.0, 1.0, 0.5]})
    with pytest.raises(ValueError, match="non-numeric column 'when'"):
        gauss_cls(verbose=False).fit(frame)
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "t": pd.date_range("2024", periods=3)})
    with pytest.raises(ValueError, match="non-numeric column 't'"):
        gauss_cls(verbose=False).fit(frame)
    with pytest.raises(ValueError, match="dtype <U1"):
        gauss_cls(verbose=False).fit(np.array([["a", "b"], ["c", "d"]]))
    det = gauss_cls(verbose=False).fit(pd.DataFrame(_rows(20, 2), columns=["a", "b"]))
    with pytest.raises(ValueError, match=r"columns \['b', 'a'\].*fitted on columns \['a', 'b'\]"):
        det.decision_function(pd.DataFrame(_rows(5, 2), columns=["b", "a"]))


def test_unfitted_use(gauss_cls):
    det = gauss_cls()
    for call in (det.decision_function, det.predict):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call(_rows(5, 2))
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(NotFittedError):
        det.save("never-written.pt")


@pytest.mark.parametrize("params, match", [
    (dict(contamination=0.7), r"contamination must be a number in \(0, 0.5\]"),
    (dict(contamination=0.0), "contamination"),
    (dict(window=0), "window must be an int >= 1 or one of auto or None, got 0"),
    (dict(window="Auto"), "window must be an int >= 1 or one of auto or None, got 'Auto'"),
    (dict(window=2.5), "window must be an int"),
    (dict(window=4, stride=5), "stride=5 is longer than window=4"),
    (dict(stride=0), "stride must be an int >= 1, got 0"),
    (dict(reduce="median"), "reduce must be one of mean, max"),
    (dict(normalize="yes"), "normalize must be True or False"),
    (dict(seed=-1), "seed must be an int >= 0 or None, got -1"),
    (dict(backend="fast"), "unknown backend"),
    (dict(device="tpu"), "device must be 'auto', 'cpu', 'cuda'"),
])
def test_bad_params_raise_at_fit(gauss_cls, params, match):
    det = gauss_cls(verbose=False, **params)  # __init__ only stores
    with pytest.raises(ValueError, match=match):
        det.fit(_rows(20, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(gauss_cls):
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        gauss_cls(device="cuda", verbose=False).fit(_rows(20, 2))


def test_explicit_backend_that_cannot_run_fails_at_fit(gauss_cls):
    with pytest.raises(BackendUnavailableError):
        gauss_cls(backend="cuda", device="cpu", verbose=False).fit(_rows(20, 2))


def test_diverged_training_scores_are_an_error():
    class NanDetector(ExplicitDetector):
        def _score_model(self, batch):
            out = super()._score_model(batch)
            out[0] = float("nan")
            return out

    det = NanDetector(verbose=False)
    with pytest.raises(ValueError, match="non-finite scores on 1 of 20 training rows"):
        det.fit(_rows(20, 2))
    assert not hasattr(det, "threshold_")


def test_hook_output_shape_is_checked():
    class Wrong(ExplicitDetector):
        def _score_model(self, batch):
            return torch.zeros(batch.shape[0] + 1)

    with pytest.raises(RuntimeError, match=r"_score_model must return a tensor of shape \[20\]"):
        Wrong(verbose=False).fit(_rows(20, 2))
    with pytest.raises(RuntimeError, match=r"must return \[17\] or \[17, 4\]"):
        Wrong(window=4, verbose=False).fit(_series(20, 2))


def test_score_needs_grad_allows_autograd_in_scoring():
    class GradDetector(ExplicitDetector):
        score_needs_grad = True

        def _score_model(self, batch):
            z = batch.reshape(batch.shape[0], -1).clone().requires_grad_(True)
            (g,) = torch.autograd.grad((z ** 2).sum(), z)
            return g.abs().sum(1).detach()

    det = GradDetector(verbose=False, normalize=False).fit(_rows(10, 2))
    np.testing.assert_allclose(det.decision_scores_, 2 * np.abs(_rows(10, 2)).sum(1), rtol=1e-6)


# ------------------------------------------------------------------ params, clone, repr
@pytest.mark.parametrize("cls_fixture", ["kwargs", "explicit"])
def test_get_set_params_and_clone(gauss_cls, cls_fixture):
    cls = gauss_cls if cls_fixture == "kwargs" else ExplicitDetector
    own = "jitter" if cls_fixture == "kwargs" else "alpha"
    det = cls(window=8, contamination=0.02, seed=3, verbose=False, **{own: 0.5})
    params = det.get_params()
    base = {"window", "stride", "contamination", "reduce", "normalize", "device", "backend", "seed", "verbose"}
    assert base | {own} <= set(params)
    assert params["window"] == 8 and params[own] == 0.5 and params["seed"] == 3
    twin = clone(det)
    assert type(twin) is cls and twin.get_params() == params and twin is not det
    det.fit(_series(60, 2))
    assert not hasattr(clone(det), "threshold_")
    assert det.set_params(seed=4, **{own: 2.0}) is det and det.seed == 4 and getattr(det, own) == 2.0
    with pytest.raises(ValueError, match="invalid parameter 'nope'"):
        det.set_params(nope=1)
    assert repr(cls(window=8)) == f"{cls.__name__}(window=8)"


def test_constructor_rejects_unknown_params(gauss_cls):
    with pytest.raises(TypeError):
        gauss_cls(windw=8)


# ------------------------------------------------------------------ randomness
def test_same_seed_same_model_other_seed_other_model(gauss_cls):
    X = _rows(80, 3)
    a = gauss_cls(jitter=0.1, seed=7, verbose=False).fit(X)
    b = gauss_cls(jitter=0.1, seed=7, verbose=False).fit(X)
    c = gauss_cls(jitter=0.1, seed=8, verbose=False).fit(X)
    assert torch.equal(a.mean_, b.mean_) and a.extra_draw_ == b.extra_draw_
    assert not torch.equal(a.mean_, c.mean_) and a.extra_draw_ != c.extra_draw_
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))


def test_global_rng_state_is_untouched(gauss_cls):
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    det = gauss_cls(jitter=0.1, verbose=False).fit(_rows(40, 2))
    det.decision_function(_rows(10, 2))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)


def test_seed_none_draws_a_seed_and_keeps_it(gauss_cls):
    det = gauss_cls(seed=None, jitter=0.1, verbose=False).fit(_rows(40, 2))
    assert isinstance(det.seed_, int)
    again = gauss_cls(seed=det.seed_, jitter=0.1, verbose=False).fit(_rows(40, 2))
    assert torch.equal(det.mean_, again.mean_)


def test_generators_differ_by_purpose(gauss_cls):
    det = gauss_cls(verbose=False).fit(_rows(20, 2))
    a = torch.randn(4, generator=det._torch_generator("fit"))
    b = torch.randn(4, generator=det._torch_generator("fit"))
    c = torch.randn(4, generator=det._torch_generator("other"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert det._numpy_rng("x").random() == det._numpy_rng("x").random()


# ------------------------------------------------------------------ progress and logging
def test_progress_bars_follow_verbose(gauss_cls, capsys):
    det = gauss_cls(window=4, verbose=False)
    det.score_batch_size = 2
    det.fit(_series(60, 2))
    assert capsys.readouterr().err == ""
    bar = det._progress(range(3), total=3, desc="fit")
    assert bar.disable
    det.verbose = True
    bar = det._progress(range(3), total=3, desc="fit")
    assert not bar.disable and "GaussDetector fit" in bar.desc
    list(bar)
    assert "GaussDetector fit" in capsys.readouterr().err
    assert det._progress(range(1), total=1, long_only=True).disable  # a single scoring batch: no bar


def test_log_epoch_at_debug_level(gauss_cls, caplog):
    det = gauss_cls()
    with caplog.at_level(logging.DEBUG, logger="genad_fast"):
        det._log_epoch(3, 10, loss=0.125, val=0.5)
    assert "GaussDetector epoch 3/10: loss=0.125 val=0.5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="genad_fast"):
        det._log_epoch(1, loss=1.0)
    assert caplog.text == ""


# ------------------------------------------------------------------ model files
def _fitted(gauss_cls, **kw):
    frame = pd.DataFrame(_series(120, 3), columns=["x", "y", "z"])
    return gauss_cls(window=10, stride=3, jitter=0.1, contamination=0.05, verbose=False, **kw).fit(frame), frame


def test_save_load_round_trip(gauss_cls, tmp_path):
    det, frame = _fitted(gauss_cls)
    path = tmp_path / "m.pt"
    det.save(path)
    back = gauss_cls.load(path)
    assert type(back) is gauss_cls and back.get_params() == det.get_params()
    assert back.threshold_ == det.threshold_ and list(back.feature_names_in_) == ["x", "y", "z"]
    assert isinstance(back.feature_names_in_, np.ndarray) and back.feature_names_in_.dtype == object
    np.testing.assert_array_equal(back.decision_scores_, det.decision_scores_)
    np.testing.assert_array_equal(back.decision_function(frame), det.decision_function(frame))
    assert torch.equal(back.normalizer_.mean, det.normalizer_.mean) and back.device_ == torch.device("cpu")
    assert back.seed_ == det.seed_ and back.extra_draw_ == det.extra_draw_
    assert gauss_cls.load(path, map_location="auto").device_ == torch.device("cpu")  # no GPU here
    with pytest.raises(ModelFileError, match="not registered here"):
        BaseDetector.load(path)  # the generic loader goes through the registry


def test_file_is_plain_data_readable_with_weights_only(gauss_cls, tmp_path):
    det, _ = _fitted(gauss_cls)
    det.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == "genad_fast.detector" and payload["format_version"] == FORMAT_VERSION
    assert payload["library_version"] == genad_fast.__version__
    assert payload["class"] == "conftest:GaussDetector" and payload["detector"] is None
    assert payload["params"]["window"] == 10 and payload["fitted"]["threshold_"] == det.threshold_
    assert set(payload["state"]) == {"mean", "var", "extra_draw"}
    assert set(payload["fitted"]["normalizer"]) == {"mean", "scale"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_trained_on_gpu_loads_on_cpu(gauss_cls, tmp_path):
    frame = pd.DataFrame(_series(120, 3), columns=["x", "y", "z"])
    det = gauss_cls(window=10, jitter=0.1, device="cuda", verbose=False).fit(frame)
    assert det.mean_.is_cuda
    det.save(tmp_path / "m.pt")
    back = gauss_cls.load(tmp_path / "m.pt", map_location="cpu")
    assert back.device_ == torch.device("cpu") and not back.mean_.is_cuda
    np.testing.assert_allclose(back.decision_function(frame), det.decision_function(frame), rtol=1e-5)
    torch.cuda.manual_seed(5)
    before = torch.cuda.get_rng_state()
    gauss_cls(window=10, jitter=0.1, device="cuda", verbose=False).fit(frame)
    assert torch.equal(torch.cuda.get_rng_state(), before)


def test_genad_fast_load_dispatches_through_the_registry(registered_gauss, tmp_path):
    det, frame = _fitted(registered_gauss)
    det.save(tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["detector"] == "toy-gauss"
    back = genad_fast.load(tmp_path / "m.pt")
    assert type(back) is registered_gauss
    np.testing.assert_array_equal(back.decision_function(frame), det.decision_function(frame))


def test_unregistered_class_needs_its_own_load(gauss_cls, tmp_path):
    det, _ = _fitted(gauss_cls)
    det.save(tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="not registered here"):
        genad_fast.load(tmp_path / "m.pt")


def _rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_newer_and_unknown_format_versions(gauss_cls, tmp_path):
    det, _ = _fitted(gauss_cls)
    path = tmp_path / "m.pt"
    det.save(path)
    _rewrite(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match=rf"{path}.*format version {FORMAT_VERSION + 1}.*upgrade genad_fast"):
        gauss_cls.load(path)
    _rewrite(path, format_version="one")
    with pytest.raises(ModelFileError, match="unknown format version 'one'"):
        gauss_cls.load(path)


def test_truncated_corrupt_and_foreign_files(gauss_cls, tmp_path):
    det, _ = _fitted(gauss_cls)
    path = tmp_path / "m.pt"
    det.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=rf"{path}.*truncated, corrupt"):
        gauss_cls.load(path)
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="truncated, corrupt or not a model file"):
        gauss_cls.load(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ModelFileError, match="not a genad_fast model file"):
        gauss_cls.load(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        gauss_cls.load(tmp_path / "missing.pt")


def test_pickled_objects_are_refused(gauss_cls, tmp_path):
    det, _ = _fitted(gauss_cls)
    path = tmp_path / "m.pt"
    det.save(path)
    payload = torch.load(path, weights_only=True)
    payload["state"]["extra"] = io.StringIO("object")  # not plain data: a weights_only load must refuse
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="pickled Python objects"):
        gauss_cls.load(path)


def test_wrong_class_is_an_error(gauss_cls, tmp_path):
    det = ExplicitDetector(verbose=False).fit(_rows(20, 2))
    det.save(tmp_path / "e.pt")
    with pytest.raises(ModelFileError, match="holds a detector of class ExplicitDetector, not a GaussDetector"):
        gauss_cls.load(tmp_path / "e.pt")


def test_state_that_is_not_plain_data_fails_at_save(gauss_cls, tmp_path):
    class ModuleState(ExplicitDetector):
        def _get_state(self):
            return {"net": torch.nn.Linear(2, 2)}

    det = ModuleState(verbose=False).fit(_rows(20, 2))
    with pytest.raises(TypeError, match=r"_get_state\(\)\['net'\] is a Linear"):
        det.save(tmp_path / "x.pt")
    assert not os.path.exists(tmp_path / "x.pt") and os.listdir(tmp_path) == []


def test_broken_state_names_the_file(gauss_cls, tmp_path):
    det, _ = _fitted(gauss_cls)
    path = tmp_path / "m.pt"
    det.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["state"]["var"]
    torch.save(seal(payload), path)  # a file that is intact but whose state does not fit the class
    with pytest.raises(ModelFileError, match=rf"{path}.*cannot restore the GaussDetector: KeyError"):
        gauss_cls.load(path)


# ------------------------------------------------------------------ registry
def test_registry(gauss_cls):
    assert "flow" in detector_names()  # built-in, registered lazily by import path
    with pytest.raises(ValueError, match="unknown detector 'nope'; registered detectors: .*flow"):
        get_detector("nope")
    # A lazy entry names an importable module (not "conftest": tests/gpu has its own conftest module too).
    from genad_fast.detectors.sklearn_baselines import PCADetector

    register_detector("toy-lazy", "genad_fast.detectors.sklearn_baselines:PCADetector")
    try:
        assert get_detector("toy-lazy") is PCADetector
        register_detector("toy-lazy", PCADetector)  # the class itself: same entry, no error
        with pytest.raises(ValueError, match="already registered"):
            register_detector("toy-lazy", ExplicitDetector)
    finally:
        unregister_detector("toy-lazy")
    register_detector("toy-broken", "genad_fast.no_such_module:Thing")
    try:
        with pytest.raises(ValueError, match="cannot be imported"):
            get_detector("toy-broken")
    finally:
        unregister_detector("toy-broken")
    with pytest.raises(TypeError, match="BaseDetector subclass"):
        register_detector("toy-int", int)
    with pytest.raises(ValueError, match="lower case"):
        register_detector("Bad Name", gauss_cls)
