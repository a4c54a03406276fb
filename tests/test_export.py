"""Exported scorers (genad_fast.export) against the detectors themselves: onnxruntime and torch.export.load give
the detector's scores within 1e-4 relative (float32), on random and edge inputs, at other batch sizes than the
one exported with; the ONNX file passes onnx.checker.

Reference scores come from the public API: ``decision_function`` on rows (tabular), and for series on a series
cut into non-overlapping windows (a copy of the detector scoring with ``stride=window``, so every timestamp is
covered by exactly one window and its score is that window's: the window's own score, or its per-timestamp
scores). Every detector is real, fitted for a few epochs on small generated data.
"""
from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch

from tiny_detectors import TINY

onnx = pytest.importorskip("onnx", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")

from genad_fast.data import make_series  # noqa: E402
from genad_fast.detectors import get_detector  # noqa: E402
from genad_fast.export import TORCH_METADATA  # noqa: E402

RTOL = 1e-4
W, C, D = 8, 3, 6
#: (registry name, extra parameters, modes): every exportable detector and score, tabular; series once for each
#: family whose windows take another path (convolutions over time, per-timestamp outputs, flattened windows).
CASES = [
    ("flow", {}, ("tabular", "series")),
    ("flow", {"anomaly_score": "typicality"}, ("tabular",)),
    ("autoencoder", {}, ("tabular", "series")),
    ("autoencoder", {"per_timestamp": True}, ("series",)),  # one output per timestamp of each window
    ("vae", {}, ("tabular", "series")),
    ("vae", {"anomaly_score": "elbo"}, ("tabular",)),
    ("vae", {"per_timestamp": True}, ("series",)),  # one output per timestamp of each window
    ("deep_svdd", {}, ("tabular", "series")),
    ("deep_svdd", {"objective": "soft-boundary", "warm_up_epochs": 1}, ("tabular",)),
    ("fanogan", {}, ("tabular",)),
    ("pca", {}, ("tabular",)),
    ("pca", {"anomaly_score": "reconstruction", "n_components": 3}, ("tabular",)),
    ("knn", {}, ("tabular",)),
    ("knn", {"method": "mean"}, ("tabular",)),
    ("kde", {}, ("tabular", "series")),
    ("dte", {}, ("tabular", "series")),
    ("dte", {"variant": "inverse_gamma"}, ("tabular",)),
    ("dte", {"normalize": False}, ("tabular", "series")),  # the data's scale (data_scale_ != 1) in the graph
]
PARAMS = [pytest.param(name, extra, mode, id=f"{name}-{mode}" + "".join(f"-{v}" for v in extra.values()))
          for name, extra, modes in CASES for mode in modes]


def _train_rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, D)) @ rng.normal(size=(D, D)) + rng.normal(size=D)
    x[:, -1] = 2.5  # a stuck sensor: a constant training column (centred, not scaled; a flow freezes it)
    return x.astype(np.float32)


_SERIES = make_series(T=900, C=C, seed=0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(name, extra, mode) -> (detector, onnx path, torch path), fitted and exported once per module."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("export")

    def get(name: str, extra: dict, mode: str):
        key = (name, tuple(sorted(extra.items())), mode)
        if key not in cache:
            geometry = dict(window=None) if mode == "tabular" else dict(window=W, stride=2)
            det = get_detector(name)(verbose=False, seed=0, **geometry, **{**TINY.get(name, {}), **extra})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the constant column's warning
                det.fit(_train_rows() if mode == "tabular" else _SERIES.train)
            stem = root / f"{name}-{mode}-{len(cache)}"
            cache[key] = (det, det.export(f"{stem}.onnx"), det.export(f"{stem}.pt2", format="torch"))
        return cache[key]
    return get


# ---------------------------------------------------------------------------------------------------- inputs
def _rows_inputs(det) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    train = _train_rows()
    mean, std = train.mean(0), np.maximum(train.std(0), 1.0)
    random = train[:64] + rng.normal(size=(64, D)).astype(np.float32) * std
    big = np.tile(mean, (16, 1))
    big[np.arange(16), np.arange(16) % D] += std[np.arange(16) % D] * np.geomspace(1e2, 1e5, 16)  # within 1e6 sd
    return {
        "random": random.astype(np.float32),
        "constant": np.tile(mean, (5, 1)).astype(np.float32),     # every column at its training mean
        "constant-shifted": np.tile(mean + 3 * std, (5, 1)).astype(np.float32),
        "large-values": big.astype(np.float32),
        "batch-1": random[:1],
        "large-batch": (np.tile(train, (5, 1))[:1200] + rng.normal(size=(1200, D)).astype(np.float32)),
    }


def _series_inputs(det) -> dict[str, np.ndarray]:
    """Series of whole windows (T = k·W), cut into windows by the reference; test data with labelled anomalies."""
    test, train = _SERIES.test.astype(np.float32), _SERIES.train
    mean, std = train.mean(0), train.std(0)
    spikes = test[:16 * W].copy()
    spikes[np.arange(0, 16 * W, W), np.arange(16) % C] += std[np.arange(16) % C] * np.geomspace(1e2, 1e5, 16)
    return {
        "random": test[:40 * W],
        "constant": np.tile(mean, (4 * W, 1)).astype(np.float32),   # a frozen series at its training mean
        "large-values": spikes,
        "batch-1": test[W:2 * W],
        "large-batch": np.tile(test, (3, 1))[:400 * W],
    }


def _reference(det, x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(graph input, the detector's own scores of it), see the module docstring."""
    if not det.is_series:
        return x, det.decision_function(x)
    k = x.shape[0] // W
    windows = x[:k * W].reshape(k, W, C)
    one = copy.deepcopy(det).set_params(stride=W)
    per_t = one.decision_function(windows.reshape(k * W, C)).reshape(k, W)
    return windows, per_t if rank == 2 else per_t[:, 0]


def _floor(det) -> float:
    """The denominator's floor of the relative error: the size of the terms a score subtracts, where it is a
    difference that can cancel to about 0, so that its absolute error is that of the terms, whatever the
    difference. Typicality = |NLL - mean training NLL|; Deep SVDD's soft boundary = ||φ(x) - c||² - R²; PCA's
    likelihood = ½·Mahalanobis term + a constant (½·(Σ log λ + (D - k)·log σ² + D·log 2π)) that is negative when
    the variances are small."""
    kind = getattr(det, "anomaly_score", None)
    if kind == "typicality":
        return abs(det.train_nll_mean_)
    if kind == "likelihood":
        lam, noise = det.state_["explained_variance"].double(), float(det.state_["noise_variance"])
        D, k = det.state_["components"].shape[1], lam.shape[0]
        return abs(0.5 * (float(lam.log().sum()) + (D - k) * math.log(noise) + D * math.log(2 * math.pi)))
    if getattr(det, "objective", None) == "soft-boundary":
        # Deep SVDD's soft-boundary score ||φ(x) - c||² - R² is about 0 for rows on the boundary: R² sizes its terms
        # (an AVX2 machine's float32 rounding gave 2.5e-4 relative to a near-zero score without this floor)
        return det.radius_ ** 2
    if getattr(det, "variant", None) == "inverse_gamma":
        # DTE-IG's score is 2β/D with β = out²: the network's output cancels to about 0 on the cleanest rows, so
        # its terms are the size of a typical training score's square root; the typical training score floors it
        return float(np.median(det.decision_scores_))
    return 0.0


def _max_rel(got: np.ndarray, want: np.ndarray, floor: float = 0.0) -> float:
    assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    assert np.array_equal(np.isinf(got), np.isinf(want)), "the +inf scores differ"
    finite = np.isfinite(want)
    assert np.isfinite(got[finite]).all()
    err = np.abs(got[finite].astype(np.float64) - want[finite]) / np.maximum(np.abs(want[finite]), max(floor, 1e-30))
    return float(err.max(initial=0.0))


def _onnx_scores(session, x: np.ndarray) -> np.ndarray:
    return session.run(["score"], {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


# ---------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name, extra, mode", PARAMS)
def test_onnx_matches_detector(fitted, name, extra, mode):
    det, onnx_path, _ = fitted(name, extra, mode)
    onnx.checker.check_model(onnx_path, full_check=True)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch dimension is symbolic
    rank = len(session.get_outputs()[0].shape)  # 2: per-timestamp scores of each window
    inputs = _series_inputs(det) if det.is_series else _rows_inputs(det)
    for label, x in inputs.items():
        windows, want = _reference(det, x, rank)
        got = _onnx_scores(session, windows)
        assert got.shape[0] == windows.shape[0]
        err = _max_rel(got, want, _floor(det))
        assert err <= RTOL, f"{label}: max relative error {err:.2e}"


@pytest.mark.parametrize("name, extra, mode", PARAMS)
def test_torch_program_matches_detector(fitted, name, extra, mode):
    det, _, torch_path = fitted(name, extra, mode)
    extra_files = {TORCH_METADATA: ""}
    program = torch.export.load(torch_path, extra_files=extra_files)
    meta = json.loads(extra_files[TORCH_METADATA])
    assert float(meta["threshold"]) == det.threshold_
    module = program.module()
    inputs = _series_inputs(det) if det.is_series else _rows_inputs(det)
    for label in ("random", "batch-1", "large-values"):
        x = inputs[label]
        probe_rank = 2 if det.is_series and getattr(det, "per_timestamp", False) else 1
        windows, want = _reference(det, x, probe_rank)
        with torch.no_grad():
            got = module(torch.as_tensor(windows)).numpy()
        err = _max_rel(got, want, _floor(det))
        assert err <= RTOL, f"{label}: max relative error {err:.2e}"


@pytest.mark.parametrize("mode", ["tabular", "series"])
def test_extreme_and_non_finite_inputs_score_inf(fitted, mode):
    """The extreme-value guard is in the graph: a value more than 1e6 training sd away scores +inf (as
    decision_function), its neighbours in the batch keep their scores; NaN/inf (which decision_function refuses)
    score +inf too, never NaN."""
    det, onnx_path, _ = fitted("flow", {}, mode)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    if mode == "tabular":
        x = _rows_inputs(det)["random"][:6].copy()
        std = _train_rows().std(0)
        x[1, 2] += 1e7 * std[2]
        x[3, 4] = 3.0e38  # a FLT_MAX-style missing-value sentinel
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = det.decision_function(x)
        got = _onnx_scores(session, x)
        assert np.isinf(want[[1, 3]]).all() and np.isposinf(got[[1, 3]]).all()
        assert _max_rel(got, want) <= RTOL
        x[0, 0], x[5, 1] = np.nan, -np.inf
        got = _onnx_scores(session, x)
        assert np.isposinf(got[[0, 1, 3, 5]]).all() and np.isfinite(got[[2, 4]]).all()
    else:
        series = _SERIES.test[:6 * W].astype(np.float32).copy()
        series[2 * W + 3, 1] = 1e7 * _SERIES.train.std(0)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            windows, want = _reference(det, series, 1)
        got = _onnx_scores(session, windows)
        assert np.isposinf(want[2]) and np.isposinf(got[2]) and np.isfinite(got[[0, 1, 3, 4, 5]]).all()
        assert _max_rel(got, want) <= RTOL
        windows[4, 0, 0] = np.nan
        assert np.isposinf(_onnx_scores(session, windows)[4])


def test_onnx_metadata_describes_the_graph(fitted):
    det, onnx_path, _ = fitted("vae", {"per_timestamp": True}, "series")
    model = onnx.load(onnx_path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["detector"] == "vae" and float(meta["threshold"]) == det.threshold_
    assert meta["window"] == str(W) and meta["n_features"] == str(C) and meta["anomaly_score"] == det.anomaly_score == "elbo"
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [W, C] and isinstance(dims[0], str)
    out_dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims[1:] == [W]  # per-timestamp scores of each window
    # the default scores whole windows: one output per window
    _, onnx_path, _ = fitted("vae", {}, "series")
    out = onnx.load(onnx_path).graph.output[0].type.tensor_type.shape.dim
    assert len(out) == 1 and isinstance(out[0].dim_param or out[0].dim_value, str)
    # every op is a standard ONNX op: nothing of genad_fast's own survives in the graph
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}


def test_export_leaves_the_detector_unchanged(fitted, tmp_path):
    det, _, _ = fitted("flow", {}, "tabular")
    x = _rows_inputs(det)["random"]
    before = det.decision_function(x)
    grads = [p.requires_grad for p in det.model_.parameters()]
    det.export(tmp_path / "again.pt2", format="torch")
    assert [p.requires_grad for p in det.model_.parameters()] == grads  # the export switched off a copy's
    np.testing.assert_array_equal(det.decision_function(x), before)
