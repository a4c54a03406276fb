"""DiffusionDetector with any window >= 8 (issue #17, point 2): the denoiser's stack is fitted to the window.

- stack_for_window: the documented table for kernel 3, the receptive field never exceeds the window, the rule's
  order (dilations shrink before layers), explicit parameters kept or refused.
- Windows 8, 16 and 32 with the default stack: fit, tiled scoring equal to one tile (the halo follows the
  fitted receptive radius), impute mode, a stream of windows, save/load, a model file from before the fitted
  stack, and the error when explicit layer parameters cannot fit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genad_fast
from genad_fast.data import make_series
from genad_fast.detectors._model_checksum import seal
from genad_fast.detectors.diffusion import DiffusionDetector
from genad_fast.nn.diffusion.denoiser import Denoiser, receptive_field, stack_for_window

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(residual_channels=8, embedding_dim=16, n_steps=10, epochs=1, batch_size=64, n_draws=1,
             noise_level=4, denoise_steps=2, verbose=False, device="cpu")


@pytest.mark.parametrize("window, stack", [(8, (3, 1)), (16, (7, 1)), (17, (8, 1)), (24, (8, 1)), (25, (8, 2)),
                                           (34, (8, 2)), (35, (8, 3)), (60, (8, 3)), (61, (8, 4)), (500, (8, 4))])
def test_stack_table_for_kernel_3(window, stack):
    assert stack_for_window(window) == stack


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_stack_fits_every_window_and_is_the_rules_first_choice(kernel_size):
    for window in range(1, 200):
        got = stack_for_window(window, kernel_size)
        if window < kernel_size:  # one layer of dilation 1 reads kernel_size timestamps
            assert got is None
            continue
        layers, cycle = got
        rf = receptive_field(layers, cycle, kernel_size)
        assert rf <= window
        assert Denoiser(1, residual_channels=4, n_layers=layers, dilation_cycle=cycle, kernel_size=kernel_size,
                        embedding_dim=4).receptive_field == rf
        # nothing earlier in the rule's order fits: a longer cycle at 8 layers, or (at cycle 1) one more layer
        if layers == 8:
            assert cycle == 4 or receptive_field(8, cycle + 1, kernel_size) > window
        else:
            assert cycle == 1 and receptive_field(layers + 1, 1, kernel_size) > window


def test_explicit_parameters_are_kept_or_refused():
    assert stack_for_window(32, n_layers=8) == (8, 2)          # the cycle adapts
    assert stack_for_window(32, dilation_cycle=4) == (4, 4)    # the layers adapt
    assert stack_for_window(32, n_layers=8, dilation_cycle=4) is None
    assert stack_for_window(8, n_layers=4) is None             # 4 layers of dilation 1 read 9 timestamps


@pytest.fixture(scope="module")
def data():
    return make_series(T=800, C=2, period=16, seed=3)


@pytest.fixture(scope="module")
def fitted(data):
    return {w: DiffusionDetector(window=w, stride=2, **SMALL).fit(data.train) for w in (8, 16, 32)}


@pytest.mark.parametrize("window", [8, 16, 32])
def test_short_windows_fit_and_score(window, fitted, data):
    det = fitted[window]
    assert (det.n_layers_, det.dilation_cycle_) == stack_for_window(window)
    assert det.n_layers is None and det.dilation_cycle is None  # parameters untouched
    assert det.model_.receptive_field <= window
    test = data.test[:150]
    whole = det.decision_function(test)
    assert whole.shape == (150,) and np.isfinite(whole).all()
    try:  # tiles of the window's length, and shorter than the halo: the halo is the fitted receptive radius
        for tile in (window, 3):
            det.set_params(tile_size=tile, tile_batch=2)
            np.testing.assert_allclose(det.decision_function(test), whole, rtol=2e-4, atol=1e-6)
    finally:
        det.set_params(tile_size=1024, tile_batch=4)


def test_impute_mode_with_window_8(data):
    det = DiffusionDetector(window=8, mode="impute", **{**SMALL, "noise_level": None}).fit(data.train)
    assert det.model_.receptive_field <= 8 and det._block() == 2
    assert np.isfinite(det.decision_function(data.test[:60])).all()


def test_stream_of_windows_8(fitted, data):
    det, W = fitted[8], 8
    x = data.test[: 4 * W]
    want = np.concatenate([det.decision_function(x[j * W:(j + 1) * W]) for j in range(4)])
    s = det.stream(delay=0, stride=W)
    got = np.concatenate([s.update(x[i:i + 5]).scores for i in range(0, 4 * W, 5)] + [s.flush().scores])
    np.testing.assert_array_equal(got, want)


def test_fitted_stack_survives_save_and_load(fitted, data, tmp_path):
    det = fitted[16]
    det.save(tmp_path / "d.pt")
    back = genad_fast.load(tmp_path / "d.pt")
    assert (back.n_layers_, back.dilation_cycle_) == (det.n_layers_, det.dilation_cycle_) == (7, 1)
    np.testing.assert_array_equal(back.decision_function(data.test[:100]), det.decision_function(data.test[:100]))


def test_file_from_before_the_fitted_stack_loads(data, tmp_path):
    # such files had int parameters and no stack in the state: the parameters are the stack
    det = DiffusionDetector(window=32, stride=4, n_layers=3, dilation_cycle=3, **SMALL).fit(data.train)
    det.save(tmp_path / "d.pt")
    payload = torch.load(tmp_path / "d.pt", weights_only=True)
    del payload["state"]["n_layers"], payload["state"]["dilation_cycle"], payload["fitted"]["window_"]
    seal(payload)
    torch.save(payload, tmp_path / "old.pt")
    back = genad_fast.load(tmp_path / "old.pt")
    assert (back.n_layers_, back.dilation_cycle_, back.window_) == (3, 3, 32)
    np.testing.assert_array_equal(back.decision_function(data.test[:100]), det.decision_function(data.test[:100]))


def test_explicit_layers_that_cannot_fit_are_an_error(data):
    with pytest.raises(ValueError, match=r"window=16 is shorter than the smallest receptive field the denoiser's "
                                         r"parameters allow \(17 timestamps: n_layers=8, dilation_cycle=None"):
        DiffusionDetector(window=16, n_layers=8, **SMALL).fit(data.train)
    det = DiffusionDetector(window=32, n_layers=8, **SMALL).fit(data.train)  # only the cycle had to adapt
    assert (det.n_layers_, det.dilation_cycle_) == (8, 2)
