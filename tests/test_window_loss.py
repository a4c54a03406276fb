"""The window denoising loss (genad_fast.nn.diffusion.window_loss) and DiffusionDetector's third evidence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genad_fast
from genad_fast.datasets import make_series
from genad_fast.detectors._model_checksum import seal
from genad_fast.detectors.diffusion import DiffusionDetector
from genad_fast.nn.diffusion import Denoiser, NoiseSchedule
from genad_fast.nn.diffusion.window_loss import STRIDE_DIVISOR, WindowLoss, loss_levels
from genad_fast.series import window_starts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_levels_are_an_even_grid_without_the_chain_ends():
    assert loss_levels(50, 4) == [9, 19, 29, 39]
    assert loss_levels(50, 1) == [24]
    assert loss_levels(3, 8) == [0, 0, 0, 0, 1, 1, 1, 2]  # more levels than steps: repeated


def _naive(model, series, W, alpha_bars, levels, noise):
    """Window by window, then timestamp by timestamp: the module docstring's formulas, unvectorised."""
    T = series.shape[0]
    starts = window_starts(T, W, max(1, W // STRIDE_DIVISOR)).tolist()
    per_window = []
    for j in starts:
        x0 = series[j:j + W].T.unsqueeze(0).float()
        total = 0.0
        for k, t in enumerate(levels):
            ab = alpha_bars[t].float()
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise[k]
            eps = model(x_t, torch.tensor([t]))
            total += float(((eps - noise[k]) ** 2).mean())
        per_window.append(total / len(levels))
    return np.array([np.mean([per_window[i] for i, j in enumerate(starts) if j <= t < j + W]) for t in range(T)])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("T, W", [(300, 32), (301, 30), (40, 40), (700, 8)])
def test_the_loss_is_the_mean_over_the_covering_windows(T, W, fused):
    torch.manual_seed(0)
    model = Denoiser(channels=3, residual_channels=8, n_layers=2, dilation_cycle=1, embedding_dim=16).eval()
    schedule = NoiseSchedule.from_name("quadratic", 50)
    series = torch.randn(T, 3)
    levels = loss_levels(50, 3)
    noise = torch.randn(len(levels), 3, W)
    got = WindowLoss(model, schedule.alpha_bars, levels, fused)(series, W, noise)
    assert got.shape == (T,) and got.dtype == torch.float64 and torch.isfinite(got).all()
    with torch.no_grad():
        np.testing.assert_allclose(got.numpy(), _naive(model, series, W, schedule.alpha_bars, levels, noise),
                                   rtol=1e-5)


@pytest.fixture(scope="module")
def series():
    return make_series(T=1600, C=3, period=32, seed=4)


def _fit(series, **params):
    return DiffusionDetector(window=32, epochs=2, residual_channels=16, verbose=False, seed=0, **params).fit(
        series.train)


def test_the_loss_is_a_third_evidence_of_multiscale(series):
    det = _fit(series)
    assert det.elbo_levels == 8 and det.error_scales_.shape == (3,)
    with_loss = det.decision_function(series.test)
    det.set_params(elbo_levels=0)
    without = det.decision_function(series.test)
    assert np.all(with_loss >= without) and np.any(with_loss > without)
    # The same numbers for a series scored alone or in a collection, and in every call.
    det.set_params(elbo_levels=8)
    both = det.decision_function([series.test, series.test[:500]])
    np.testing.assert_array_equal(both[0], with_loss)
    np.testing.assert_array_equal(det.decision_function(series.test[:500]), both[1])


def test_a_detector_fitted_without_the_loss_says_to_refit(series):
    det = _fit(series, elbo_levels=0)
    assert det.error_scales_.shape == (2,)
    det.set_params(elbo_levels=8)
    with pytest.raises(ValueError, match="elbo_levels=8 needs the training scale of the window denoising loss.*refit"):
        det.decision_function(series.test)


def test_impute_mode_has_no_loss_term(series):
    det = _fit(series, mode="impute", elbo_levels=4)
    assert det.error_scales_.shape == (2,)


def test_a_model_file_from_before_the_option_scores_without_the_loss(series, tmp_path):
    det = _fit(series, elbo_levels=0)
    expected = det.decision_function(series.test)
    path = tmp_path / "old.pt"
    det.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["params"]["elbo_levels"]
    torch.save(seal(payload), path)
    loaded = genad_fast.load(path)
    assert loaded.elbo_levels == 0
    np.testing.assert_array_equal(loaded.decision_function(series.test), expected)


@pytest.mark.parametrize("bad", [-1, 1.5, "4", True])
def test_elbo_levels_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="elbo_levels"):
        DiffusionDetector(elbo_levels=bad).fit(np.random.default_rng(0).normal(size=(200, 2)))
