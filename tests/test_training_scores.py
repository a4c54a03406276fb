"""The training scores a fit already has are handed to the base (``_training_scores``), not computed twice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import importlib.util
from pathlib import Path

from genad_fast.detectors.flow import FlowDetector
from genad_fast.series import WindowGrid


def _gauss_detector():
    """tests/conftest.py's GaussDetector, loaded by path: ``from conftest import`` finds whichever conftest pytest
    imported last under that name (tests/gpu/conftest.py in a whole-suite run)."""
    spec = importlib.util.spec_from_file_location("_tests_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GaussDetector


GaussDetector = _gauss_detector()

pytestmark = pytest.mark.usefixtures("one_thread")


class _Handing(GaussDetector):
    """Hands over ``given`` (a function of the fitted data's size) instead of a scoring pass."""

    given = None

    def _fit_model(self, data):
        super()._fit_model(data)
        self.n_fitted_ = int(data.shape[0])

    def _training_scores(self):
        return type(self).given(self) if type(self).given is not None else None


def _series(T=203, C=2, seed=0):
    rng = np.random.default_rng(seed)
    return (np.sin(np.arange(T) / 5.0)[:, None] + 0.1 * rng.normal(size=(T, C))).astype(np.float32)


def test_rows_take_the_handed_scores():
    _Handing.given = lambda det: torch.arange(det.n_fitted_, dtype=torch.float32)
    det = _Handing(verbose=False).fit(np.random.default_rng(0).normal(size=(30, 3)))
    np.testing.assert_array_equal(det.decision_scores_, np.arange(30.0))
    assert det.threshold_ == pytest.approx(np.quantile(np.arange(30.0), 0.9))


@pytest.mark.parametrize("stride", [1, 4])  # T=203, W=16: stride 4 leaves an off-grid end window
@pytest.mark.parametrize("per_timestamp", [False, True])
def test_series_grid_scores_are_completed_by_the_end_window(stride, per_timestamp):
    X = _series()
    _Handing.given = None
    ref = _Handing(window=16, stride=stride, per_timestamp=per_timestamp, verbose=False).fit(X)
    grid = WindowGrid(203, 16, stride)
    assert grid.has_tail == (stride == 4)
    z = ref.normalizer_.transform(torch.from_numpy(X))
    with torch.inference_mode():
        grid_scores = ref._score_model(grid.windows(z))
    _Handing.given = lambda det: grid_scores
    det = _Handing(window=16, stride=stride, per_timestamp=per_timestamp, verbose=False).fit(X)
    assert det.n_fitted_ == grid.n_grid
    np.testing.assert_array_equal(det.decision_scores_, ref.decision_scores_)


@pytest.mark.parametrize("window, bad", [(None, lambda det: torch.zeros(3)), (16, lambda det: torch.zeros(2, 5))])
def test_a_wrong_shape_is_the_detector_s_bug(window, bad):
    _Handing.given = bad
    X = np.random.default_rng(0).normal(size=(30, 2)) if window is None else _series()
    with pytest.raises(RuntimeError, match=r"_Handing._training_scores must return"):
        _Handing(window=window, verbose=False).fit(X)


# ---------------------------------------------------------------------------------------------- FlowDetector
SMALL = dict(n_steps=2, hidden=16, n_blocks=1, epochs=2, verbose=False)


def _count_nll_rows(monkeypatch):
    seen = []
    nll = FlowDetector._nll

    def counting(self, batch):
        seen.append(int(batch.shape[0]))
        return nll(self, batch)
    monkeypatch.setattr(FlowDetector, "_nll", counting)
    return seen


@pytest.mark.parametrize("anomaly_score", ["nll", "typicality"])
@pytest.mark.parametrize("window, stride", [(None, 1), (8, 3)])
def test_flow_scores_its_training_data_once(monkeypatch, anomaly_score, window, stride):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3)).astype(np.float32) if window is None else _series(T=122, C=2)
    seen = _count_nll_rows(monkeypatch)
    det = FlowDetector(window=window, stride=stride, anomaly_score=anomaly_score, **SMALL).fit(X)
    n_train = 120 if window is None else WindowGrid(122, 8, 3).n_grid
    tail = 0 if window is None else int(WindowGrid(122, 8, 3).has_tail)
    # actnorm's initialisation and training call log_prob directly; _nll runs once per training sample (plus the
    # off-grid end window, which the fit does not see)
    assert sum(seen) == n_train + tail
    np.testing.assert_array_equal(det.decision_function(X), det.decision_scores_)


def test_flow_with_bfloat16_products_scores_its_training_data_again(monkeypatch):
    X = np.random.default_rng(2).normal(size=(100, 3)).astype(np.float32)
    seen = _count_nll_rows(monkeypatch)
    det = FlowDetector(matmul_dtype="bfloat16", **SMALL).fit(X)
    assert sum(seen) == 200  # the float32 NLL of typicality's mean, then the bfloat16 training scores
    np.testing.assert_array_equal(det.decision_function(X), det.decision_scores_)
