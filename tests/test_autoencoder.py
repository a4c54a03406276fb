"""AutoEncoderDetector and the shared encoder/decoder builders: shapes, the score formula, detection
quality, determinism, model files, errors."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import genad_fast
from genad_fast.datasets import make_tabular
from genad_fast.detectors import get_detector
from genad_fast.detectors.autoencoder import AutoEncoderDetector
from genad_fast.nn.autoencoder import AutoEncoder
from genad_fast.nn.blocks import ConvDecoder, ConvEncoder, make_decoder, make_encoder, pooled_lengths

SMALL = dict(hidden=(16, 32), epochs=20, min_steps=0, verbose=False)


# One torch thread and the shared small series for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(series):
    return AutoEncoderDetector(window=16, **SMALL).fit(series.train)


# ---- builders (shared by the autoencoder, the VAE and Deep SVDD) ------------------------------
@pytest.mark.parametrize("window", [1, 2, 5, 7, 16, 33])
@pytest.mark.parametrize("n_stages", [1, 3])
def test_conv_decoder_mirrors_any_window_length(window, n_stages):
    torch.manual_seed(0)
    hidden = (4, 6, 8)[:n_stages]
    enc = ConvEncoder(window, 3, hidden, 5, kernel_size=3)
    dec = ConvDecoder(window, 3, hidden, 5, out_factor=2, kernel_size=3)
    x = torch.randn(4, window, 3)
    code = enc(x)
    assert code.shape == (4, 5)
    assert dec(code).shape == (4, window, 6)
    assert enc.lengths == pooled_lengths(window, n_stages)


def test_pooled_lengths_halve_rounding_up_down_to_one():
    assert pooled_lengths(16, 3) == [16, 8, 4, 2]
    assert pooled_lengths(7, 4) == [7, 4, 2, 1, 1]
    assert pooled_lengths(1, 2) == [1, 1, 1]


def test_builders_pick_mlp_for_rows_and_convolutions_for_windows():
    assert make_encoder((6,), (8,), 3).__class__.__name__ == "MLPEncoder"
    assert make_decoder((6,), (8,), 3, out_factor=2)(torch.zeros(2, 3)).shape == (2, 12)
    assert isinstance(make_encoder((10, 2), (8,), 3), ConvEncoder)
    with pytest.raises(ValueError, match=r"shape \(D,\) or \(W, C\)"):
        make_encoder((2, 3, 4), (8,), 3)


def test_batch_norm_without_bias_is_not_affine():
    enc = make_encoder((10, 2), (8, 8), 3, bias=False, batch_norm=True)
    norms = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2 and not any(m.affine for m in norms)
    assert not any("bias" in name for name, _ in enc.named_parameters())


# ---- the detector -------------------------------------------------------------------------------
def test_finds_injected_series_anomalies(series, fitted):
    scores = fitted.decision_function(series.test)
    assert scores.shape == (series.test.shape[0],)
    assert roc_auc_score(series.labels, scores) >= 0.9


def test_finds_tabular_outliers():
    data = make_tabular(n_train=1000, n_test=400, n_features=6, seed=1)
    det = AutoEncoderDetector(**SMALL).fit(data.train)
    assert roc_auc_score(data.labels, det.decision_function(data.test)) >= 0.9


def test_score_is_the_mean_squared_reconstruction_error():
    data = make_tabular(n_train=300, n_test=40, n_features=5, seed=2)
    det = AutoEncoderDetector(normalize=False, anomaly_score="reconstruction", **{**SMALL, "epochs": 3}).fit(data.train)
    x = torch.as_tensor(data.test)
    with torch.no_grad():
        expected = (x - det.model_(x)).square().mean(1).double().numpy()
    np.testing.assert_allclose(det.decision_function(data.test), expected, rtol=1e-6)
    assert det.model_.encoder.out_dim == 2  # latent_dim=None: half of 5 features, at least 2


def test_window_scores_per_timestamp_or_per_window(series, fitted):
    batch = torch.as_tensor(series.test[:40]).unfold(0, 16, 1).transpose(1, 2)[:5]  # [5, 16, 4]
    batch = fitted.normalizer_.transform(batch)
    with torch.no_grad():
        sq = (batch - fitted.model_(batch)).square()
        # the code-aware scores: test_autoencoder_scores.py
        fitted.set_params(anomaly_score="reconstruction", per_timestamp=True)
        try:
            per_t = fitted._score_model(batch)
            fitted.set_params(per_timestamp=False)
            per_w = fitted._score_model(batch)
        finally:
            fitted.set_params(per_timestamp=False, anomaly_score="latent_density")
    torch.testing.assert_close(per_t, sq.mean(-1))
    torch.testing.assert_close(per_w, sq.mean((1, 2)))


def test_one_channel_series_and_odd_window():
    x = np.sin(np.arange(600) / 5.0) + 0.05 * np.random.default_rng(0).normal(size=600)
    det = AutoEncoderDetector(window=7, **{**SMALL, "epochs": 2}).fit(x)
    assert det.decision_function(x[:100]).shape == (100,)


def test_same_seed_same_scores(series):
    kwargs = dict(window=8, **{**SMALL, "epochs": 2})
    train, test = series.train[:800], series.test[:200]
    a = AutoEncoderDetector(seed=5, **kwargs).fit(train).decision_function(test)
    b = AutoEncoderDetector(seed=5, **kwargs).fit(train).decision_function(test)
    c = AutoEncoderDetector(seed=6, **kwargs).fit(train).decision_function(test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_save_load_round_trip(tmp_path, series, fitted):
    path = tmp_path / "ae.pt"
    fitted.save(path)
    loaded = genad_fast.load(path)
    assert type(loaded) is AutoEncoderDetector
    test = series.test[:300]
    np.testing.assert_array_equal(loaded.decision_function(test), fitted.decision_function(test))
    assert loaded.threshold_ == fitted.threshold_
    assert get_detector("autoencoder") is AutoEncoderDetector


def test_autoencoder_module_errors():
    ae = AutoEncoder((5,), 2, (8,))
    with pytest.raises(ValueError, match="per-timestamp errors need windows"):
        ae.errors(torch.zeros(3, 5), per_timestamp=True)


@pytest.mark.parametrize("params, match", [
    (dict(latent_dim=0), "latent_dim must be"),
    (dict(latent_dim=2.5), "latent_dim must be"),
    (dict(hidden=()), "hidden must be"),
    (dict(hidden=(8, 0)), "hidden must be"),
    (dict(hidden="64"), "hidden must be"),
    (dict(kernel_size=4), "kernel_size must be odd"),
    (dict(batch_norm=1), "batch_norm must be"),
    (dict(per_timestamp="yes"), "per_timestamp must be"),
    (dict(epochs=0), "epochs must be"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(lr=0.0), "lr must be"),
    (dict(weight_decay=-1.0), "weight_decay must be"),
    (dict(grad_clip=-1.0), "grad_clip must be"),
    (dict(val_fraction=1.0), "val_fraction must be"),
    (dict(patience=0), "patience must be"),
])
def test_bad_parameters(params, match):
    data = make_tabular(n_train=100, n_test=10, n_features=3, seed=0)
    with pytest.raises(ValueError, match=match):
        AutoEncoderDetector(**{**SMALL, **params}).fit(data.train)


def test_too_few_windows():
    with pytest.raises(ValueError, match="needs at least 8"):
        AutoEncoderDetector(window=10, **SMALL).fit(np.zeros((15, 2)))
