"""Shared fixtures: a tiny test-only detector on the BaseDetector API; the Hypothesis profiles."""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from genad_fast.detectors import BaseDetector, register_detector, unregister_detector

# Hypothesis profiles (docs/testing.md). "ci", the default: reproducible (derandomize: the same examples on every
# run), no per-example deadline (a shared 2-core machine has no stable timing); the fuzz suite (tests/fuzz) fits
# in about 4 minutes. "long": `pytest -m fuzz --hypothesis-profile long`, 100x the examples (about an hour),
# random, for hunting. Fuzz tests scale their own budgets by max_examples / 100 (tests/fuzz/fuzz_strategies.py).
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("long", deadline=None, max_examples=10_000, print_blob=True,
                          suppress_health_check=_SLOW_IS_FINE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))  # --hypothesis-profile overrides this


class GaussDetector(BaseDetector):
    """Diagonal Gaussian over each row (tabular) or flattened window (series): score = mean z^2.

    ``per_timestamp=True`` returns ``[b, W]`` window scores (mean z^2 over channels); ``jitter``
    perturbs the mean with the detector's torch generator and a draw from a second stream of its seed is
    kept in ``extra_draw_``, so seeding and RNG isolation can be tested.
    """

    def __init__(self, per_timestamp: bool = False, jitter: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.per_timestamp = per_timestamp
        self.jitter = jitter

    def _fit_model(self, data: torch.Tensor) -> None:
        flat = data.reshape(data.shape[0], -1)
        noise = torch.randn(flat.shape[1], generator=self._torch_generator(), device=flat.device)
        self.mean_ = flat.mean(0) + self.jitter * noise
        self.var_ = flat.var(0, unbiased=False).clamp_min(1e-6)
        # hooks never draw from the global RNG: every stream is a generator of the detector's seed
        self.extra_draw_ = torch.rand((), generator=self._torch_generator("extra", device=flat.device),
                                      device=flat.device)

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        b = batch.shape[0]
        z2 = (batch.reshape(b, -1) - self.mean_) ** 2 / self.var_
        if self.is_series and self.per_timestamp:
            return z2.reshape(b, self.window, -1).mean(-1)
        return z2.mean(1)

    def _get_state(self) -> dict:
        return {"mean": self.mean_, "var": self.var_, "extra_draw": self.extra_draw_}

    def _set_state(self, state: dict) -> None:
        self.mean_ = state["mean"].to(self.device_)
        self.var_ = state["var"].to(self.device_)
        self.extra_draw_ = state["extra_draw"]


@pytest.fixture
def gauss_cls():
    return GaussDetector


@pytest.fixture
def registered_gauss():
    """GaussDetector registered as 'toy-gauss' for the duration of a test (CLI, genad_fast.load)."""
    register_detector("toy-gauss", GaussDetector)
    yield GaussDetector
    unregister_detector("toy-gauss")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: networks this small train several times faster on one thread than on
    two busy ones. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def series():
    """A small generated series (4000 x 4, period 32) with point, contextual and collective anomalies."""
    from genad_fast.datasets import make_series

    return make_series(T=4000, C=4, period=32, seed=3)


@pytest.fixture
def save_load_round_trip(tmp_path):
    """``run(cls, name, tabular, series, window)``: fit ``cls`` on rows (window None) or on the series (windows,
    stride 3), save, load with ``genad_fast.load`` and check that the class, the scores and the threshold survive;
    returns ``(fitted, loaded, path)`` for a detector's own checks."""
    import numpy as np

    import genad_fast

    def run(cls, name, tabular, series, window):
        if window is None:
            train, test = tabular.train, tabular.test
        else:
            train, test = series.train[:900], series.test[:400]
        det = cls(window=window, stride=1 if window is None else 3, verbose=False).fit(train)
        path = tmp_path / f"{name}.pt"
        det.save(path)
        loaded = genad_fast.load(path)
        assert type(loaded) is cls
        np.testing.assert_array_equal(loaded.decision_function(test), det.decision_function(test))
        assert loaded.threshold_ == det.threshold_
        return det, loaded, path

    return run
