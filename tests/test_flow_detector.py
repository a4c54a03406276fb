"""FlowDetector end to end: detection quality, scores, backends, determinism, model files, errors."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import genad_fast
from genad_fast.datasets import make_series, make_tabular
from genad_fast.detectors.flow import FlowDetector
from genad_fast.nn.training import TrainingDivergedError

SMALL = dict(n_steps=4, hidden=32, n_blocks=1, epochs=12, verbose=False)


@pytest.fixture(scope="module")
def series():
    return make_series(T=6000, C=4, period=48, seed=3)


@pytest.fixture(scope="module")
def fitted_series_detector(series):
    return FlowDetector(window=16, backend="cpu", **SMALL).fit(series.train)


def test_finds_injected_series_anomalies(series, fitted_series_detector):
    scores = fitted_series_detector.decision_function(series.test)
    assert scores.shape == (series.test.shape[0],)
    assert roc_auc_score(series.labels, scores) >= 0.95


def test_finds_tabular_outliers():
    data = make_tabular(n_train=3000, n_test=600, n_features=6, seed=1)
    det = FlowDetector(backend="cpu", **SMALL).fit(data.train)
    assert roc_auc_score(data.labels, det.decision_function(data.test)) >= 0.95


def test_nll_is_nats_per_dimension_of_the_flow_density():
    data = make_tabular(n_train=500, n_test=50, n_features=4, seed=2)
    det = FlowDetector(backend="cpu", normalize=False, **SMALL).fit(data.train)
    x = torch.as_tensor(data.test, dtype=torch.float32)
    with torch.no_grad():
        expected = (-det.model_.log_prob(x) / 4).double().numpy()
    np.testing.assert_allclose(det.decision_function(data.test), expected, rtol=1e-5, atol=1e-5)


def test_typicality_is_the_distance_to_the_training_nll():
    data = make_tabular(n_train=500, n_test=80, n_features=4, seed=4)
    det = FlowDetector(backend="cpu", **SMALL).fit(data.train)
    nll = det.decision_function(data.test)
    assert det.train_nll_mean_ == pytest.approx(det.decision_scores_.mean(), rel=1e-6)
    det.set_params(anomaly_score="typicality")
    np.testing.assert_allclose(det.decision_function(data.test), np.abs(nll - det.train_nll_mean_), rtol=1e-6, atol=1e-6)


def test_fused_and_eager_backends_agree(series, fitted_series_detector):
    det = fitted_series_detector
    fused = det.decision_function(series.test[:500])
    det.set_params(backend="eager")
    try:
        eager = det.decision_function(series.test[:500])
    finally:
        det.set_params(backend="cpu")
    np.testing.assert_allclose(fused, eager, rtol=1e-4, atol=1e-4)


def test_fused_scoring_runs_the_inference_plan_and_equals_eager(monkeypatch):
    # Tabular: the fused backend scores through FlowInference (counted), the eager backend through
    # the modules; both give the same scores to float32 rounding.
    from genad_fast.nn.flow import plan as flow_inference

    data = make_tabular(n_train=600, n_test=300, n_features=6, seed=5)
    det = FlowDetector(backend="cpu", **{**SMALL, "epochs": 3}).fit(data.train)
    calls = []
    original = flow_inference.FlowInference.log_prob
    monkeypatch.setattr(flow_inference.FlowInference, "log_prob",
                        lambda self, x: calls.append(x.shape[0]) or original(self, x))
    fused = det.decision_function(data.test)
    assert sum(calls) == data.test.shape[0]
    det.set_params(backend="eager")
    eager = det.decision_function(data.test)
    assert sum(calls) == data.test.shape[0]  # the eager backend never touches the plan
    np.testing.assert_allclose(fused, eager, rtol=1e-5, atol=1e-5)


def test_bfloat16_products_keep_auroc(series, fitted_series_detector):
    det = fitted_series_detector
    f32 = roc_auc_score(series.labels, det.decision_function(series.test))
    det.set_params(matmul_dtype="bfloat16")
    try:
        bf16 = roc_auc_score(series.labels, det.decision_function(series.test))
    finally:
        det.set_params(matmul_dtype="float32")
    assert abs(bf16 - f32) <= 0.005


def test_same_seed_same_scores(series):
    kwargs = dict(window=8, backend="cpu", **{**SMALL, "epochs": 3})
    a = FlowDetector(seed=7, **kwargs).fit(series.train[:1500]).decision_function(series.test[:300])
    b = FlowDetector(seed=7, **kwargs).fit(series.train[:1500]).decision_function(series.test[:300])
    c = FlowDetector(seed=8, **kwargs).fit(series.train[:1500]).decision_function(series.test[:300])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_save_load_round_trip(tmp_path, series, fitted_series_detector):
    path = tmp_path / "flow.pt"
    fitted_series_detector.save(path)
    loaded = genad_fast.load(path, map_location="cpu")
    assert isinstance(loaded, FlowDetector)
    np.testing.assert_array_equal(loaded.decision_function(series.test[:400]),
                                  fitted_series_detector.decision_function(series.test[:400]))
    assert loaded.threshold_ == fitted_series_detector.threshold_


def test_divergence_is_an_error_not_a_nan_model():
    data = make_tabular(n_train=400, n_test=10, n_features=4, seed=0)
    with pytest.raises(TrainingDivergedError, match="loss became"):
        FlowDetector(backend="cpu", lr=1e12, grad_clip=0.0, clamp=0.0, **{**SMALL, "epochs": 5}).fit(data.train)


@pytest.mark.parametrize("params, match", [
    (dict(anomaly_score="likelihood"), "score must be"),
    (dict(matmul_dtype="float16"), "matmul_dtype"),
    (dict(hidden=0), "hidden must be"),
    (dict(clamp=-1.0), "clamp must be"),
])
def test_bad_parameters(params, match):
    data = make_tabular(n_train=100, n_test=10, n_features=3, seed=0)
    with pytest.raises(ValueError, match=match):
        FlowDetector(**{**SMALL, **params}).fit(data.train)


def test_one_channel_needs_a_window_of_two():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        FlowDetector(**SMALL).fit(np.random.default_rng(0).normal(size=(100, 1)))
