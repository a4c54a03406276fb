"""What export refuses, and how it says so: unfitted detectors, unknown formats, a missing ONNX exporter,
detectors whose score cannot be a graph (with the reason and what to use instead), and detectors with no exported
scorer (named, with the list of exportable ones)."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from tiny_detectors import make_detector

from genad_fast.detectors import NotFittedError
from genad_fast.detectors.flow import FlowDetector
from genad_fast.detectors.vae import VAEDetector
from genad_fast.export import export_detector, exportable_detectors

X = np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def knn():
    return make_detector("knn", "tabular").fit(X)


def test_unfitted_detector_is_refused(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        make_detector("knn", "tabular").export(tmp_path / "m.onnx")


@pytest.mark.parametrize("fmt", ["ONNX", "pt", None, 3])
def test_unknown_format_is_refused(knn, tmp_path, fmt):
    with pytest.raises(ValueError, match="format must be one of 'onnx', 'torch'"):
        knn.export(tmp_path / "m.onnx", format=fmt)


def test_missing_onnx_names_the_extra(knn, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` raises ImportError
    with pytest.raises(ImportError, match=r"onnxscript.*pip install 'onnx.*-e '\.\[export\]'"):
        knn.export(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(NotImplementedError, match="IsolationForestDetector cannot be exported"):
        make_detector("iforest", "tabular").fit(X).export(tmp_path / "m.onnx")  # said first, whatever is installed
    # the torch format needs torch alone
    path = knn.export(tmp_path / "m.pt2", format="torch")
    assert torch.export.load(path).module()(torch.as_tensor(X[:3])).shape == (3,)


@pytest.mark.parametrize("name, mode, says", [
    ("anogan", "tabular", r"AnoGANDetector cannot be exported: its score is a latent search.*FAnoGANDetector"),
    ("diffusion", "series", r"DiffusionDetector cannot be exported: .*sampling chain.*genad_fast.load"),
])
@pytest.mark.parametrize("fmt", ["onnx", "torch"])
def test_search_and_sampling_loops_are_refused_with_the_reason(tmp_path, name, mode, says, fmt):
    det = make_detector(name, mode)
    det.fit(X if mode == "tabular" else np.tile(X[:, :2], (2, 1)))
    with pytest.raises(NotImplementedError, match=says):
        det.export(tmp_path / "m.bin", format=fmt)


@pytest.mark.parametrize("name", ["iforest", "ocsvm", "lof"])
def test_other_detectors_are_named_with_the_exportable_list(tmp_path, name):
    det = make_detector(name, "tabular").fit(X)
    with pytest.raises(NotImplementedError) as err:
        det.export(tmp_path / "m.onnx")
    message = str(err.value)
    assert message.startswith(f"{type(det).__name__} cannot be exported")
    for entry in ("FlowDetector (flow)", "VAEDetector (vae)", "FAnoGANDetector (fanogan)", "KDEDetector (kde)",
                  "DTEDetector (dte)"):
        assert entry in message
    assert len(exportable_detectors()) == 9  # flow, ae, vae, deep_svdd, fanogan, pca, knn, kde, dte


def test_subclass_that_changes_a_restated_score_is_refused(tmp_path):
    class Doubled(VAEDetector):
        def _score_model(self, batch):
            return 2 * super()._score_model(batch)

    det = Doubled(hidden=(8,), epochs=1, n_samples=2, verbose=False).fit(X)
    with pytest.raises(NotImplementedError, match="Doubled overrides _score_model of VAEDetector"):
        det.export(tmp_path / "m.onnx")


def test_subclass_through_the_hooks_exports_its_own_score(tmp_path):
    class Shifted(FlowDetector):  # the hook scorer runs the subclass's own _score_model
        def _score_model(self, batch):
            return super()._score_model(batch) + 1.0

    det = Shifted(n_steps=2, hidden=8, n_blocks=1, epochs=1, verbose=False).fit(X)
    program = torch.export.load(export_detector(det, tmp_path / "m.pt2", format="torch"))
    got = program.module()(torch.as_tensor(X[:5])).numpy()
    np.testing.assert_allclose(got, det.decision_function(X[:5]), rtol=1e-5)


def test_bfloat16_products_export_as_float32_with_a_warning(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    det = FlowDetector(n_steps=2, hidden=8, n_blocks=1, epochs=1, matmul_dtype="bfloat16", verbose=False).fit(X)
    with pytest.warns(UserWarning, match="matmul_dtype='bfloat16'.*float32"):
        path = det.export(tmp_path / "m.onnx")
    assert det.matmul_dtype == "bfloat16"  # the user's detector is unchanged
    det.set_params(matmul_dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = det.decision_function(X[:9])
    got = ort.InferenceSession(str(path)).run(None, {"x": X[:9]})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4)
