"""A model file written on one kind of device loads on another.

A detector fitted with ``device="cuda", backend="cuda"`` and loaded with ``map_location="cpu"`` (the default) holds CPU
tensors, on which its CUDA backend cannot run: on the first GPU run this failed at load ("the restored FlowDetector
cannot score ... backend 'cuda' runs on CUDA tensors"). Without a GPU here, such a file is made from a CPU fit whose
params are rewritten to the GPU's (and resealed), which is byte for byte what a GPU fit saves apart from the weights'
values.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import genad_fast
from genad_fast.datasets import make_series
from genad_fast.detectors.ensemble import EnsembleDetector
from genad_fast.detectors.flow import FlowDetector
from genad_fast.detectors.knn import KNNDetector
from genad_fast.detectors._model_checksum import seal
from genad_fast._backend import BackendUnavailableError


@pytest.fixture(scope="module")
def series():
    return make_series(T=600, C=3, period=32, seed=5)


def _as_if_saved_on_gpu(det, path, backend="cuda"):
    det.save(path)
    payload = torch.load(path, weights_only=True)
    payload["params"]["device"] = "cuda"
    payload["params"]["backend"] = backend
    torch.save(seal(payload), path)


def _detectors(series):
    """A trained model, a reference set, and an ensemble, whose members hold a device and backend of their own."""
    flow = FlowDetector(window=16, n_steps=2, hidden=16, epochs=2, verbose=False, backend="cpu", seed=0)
    knn = KNNDetector(window=16, verbose=False, backend="cpu")
    tiny = {"flow": dict(n_steps=2, hidden=16, n_blocks=1, epochs=2),
            "dte": dict(hidden=(16, 16), epochs=2, min_steps=0)}
    ensemble = EnsembleDetector(window=16, member_params=tiny, verbose=False, backend="cpu", seed=0)
    return [flow.fit(series.train), knn.fit(series.train), ensemble.fit(series.train)]


@pytest.mark.parametrize("saved_backend", ["cuda", "triton"])
def test_a_gpu_backend_file_loads_on_the_cpu_with_a_warning(series, tmp_path, saved_backend):
    for det in _detectors(series):
        expected = det.decision_function(series.test)
        path = tmp_path / f"{type(det).__name__}.pt"
        _as_if_saved_on_gpu(det, path, saved_backend)
        with pytest.warns(UserWarning, match=rf"backend '{saved_backend}' -> 'auto'.*Pass backend= to load"):
            loaded = genad_fast.load(path)
        assert loaded.device == "cpu" and loaded.device_ == torch.device("cpu") and loaded.backend == "auto"
        for member in getattr(loaded, "members_", []):
            assert member.backend == "auto" and member.device == "cpu"
        # Same weights, another backend on the same CPU: the scores agree to float32 rounding.
        np.testing.assert_allclose(loaded.decision_function(series.test), expected, rtol=1e-4, atol=1e-5)


def test_a_backend_given_to_load_is_used_without_a_warning(series, tmp_path):
    for det in _detectors(series):
        expected = det.decision_function(series.test)
        path = tmp_path / f"{type(det).__name__}.pt"
        _as_if_saved_on_gpu(det, path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = type(det).load(path, map_location="cpu", backend="cpu")
        assert loaded.backend == "cpu" and loaded.device == "cpu"
        np.testing.assert_array_equal(loaded.decision_function(series.test), expected)


def test_a_backend_that_cannot_run_on_the_load_device_names_the_file(series, tmp_path):
    det = _detectors(series)[1]
    path = tmp_path / "knn.pt"
    _as_if_saved_on_gpu(det, path)
    with pytest.raises(BackendUnavailableError, match=rf"{path}.*backend 'cuda' runs on CUDA tensors, got cpu"):
        genad_fast.load(path, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend backend='gpu'"):
        genad_fast.load(path, backend="gpu")


def test_a_file_whose_backend_runs_here_loads_unchanged_and_silently(series, tmp_path):
    det = _detectors(series)[1]
    path = tmp_path / "knn.pt"
    det.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = genad_fast.load(path)
    assert loaded.get_params() == det.get_params()
