"""VAEDetector and GaussianVAE: the ELBO and reconstruction-probability formulas against an independent
computation, the batched L samples, detection quality, determinism, model files, errors."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.distributions import Normal, kl_divergence

import genad_fast
from genad_fast.detectors.base import _stream_seed
from genad_fast.datasets import make_tabular
from genad_fast.detectors import get_detector
from genad_fast.detectors.vae import VAEDetector
from genad_fast.nn.vae import GaussianVAE, elbo_loss

SMALL = dict(hidden=(16, 32), epochs=20, min_steps=0, verbose=False)


# One torch thread and the shared small series for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(series):
    return VAEDetector(window=16, **SMALL).fit(series.train)


def _expected_scores(model: GaussianVAE, x: torch.Tensor, L: int, seed: int, per_timestamp: bool = False):
    """Both scores computed the slow way: torch.distributions, one decoder pass per latent sample."""
    torch.manual_seed(seed)
    mu, log_var = model.encode(x)
    eps = torch.randn((L, *mu.shape))
    q = Normal(mu, torch.exp(0.5 * log_var))
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    lls = []
    for l in range(L):
        mean, dec_log_var = model.decode(mu + torch.exp(0.5 * log_var) * eps[l])
        lp = Normal(mean, torch.exp(0.5 * dec_log_var)).log_prob(x)
        lls.append(lp.sum(-1) if per_timestamp else lp.flatten(1).sum(-1))
    ll = torch.stack(lls)
    kl_part = kl[:, None] / x.shape[1] if per_timestamp else kl
    elbo = -ll.mean(0) + kl_part
    recon = -torch.log(torch.exp(ll.double()).mean(0)).float()  # the mean of probabilities, literally
    return elbo, recon


@pytest.mark.parametrize("shape", [(5,), (12, 3)])
def test_scores_match_an_independent_computation(shape):
    torch.manual_seed(0)
    model = GaussianVAE(shape, 3, (8, 8), kernel_size=3).eval()
    x = torch.randn(6, *shape) * 0.3
    L = 7
    elbo, recon = _expected_scores(model, x, L, seed=11)
    with torch.no_grad():
        torch.manual_seed(11)
        got_elbo = model.scores(x, "elbo", L)
        torch.manual_seed(11)
        got_recon = model.scores(x, "recon_prob", L)
    torch.testing.assert_close(got_elbo, elbo.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_recon, recon.detach(), rtol=1e-5, atol=1e-4)


def test_per_timestamp_scores_and_their_sum():
    torch.manual_seed(1)
    model = GaussianVAE((10, 2), 3, (8,), kernel_size=3).eval()
    x = torch.randn(4, 10, 2) * 0.5
    elbo_t, recon_t = _expected_scores(model, x, 5, seed=3, per_timestamp=True)
    with torch.no_grad():
        torch.manual_seed(3)
        got = model.scores(x, "elbo", 5, per_timestamp=True)
        torch.manual_seed(3)
        got_recon = model.scores(x, "recon_prob", 5, per_timestamp=True)
        torch.manual_seed(3)
        whole = model.scores(x, "elbo", 5)
    assert got.shape == (4, 10)
    torch.testing.assert_close(got, elbo_t.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_recon, recon_t.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got.sum(1), whole, rtol=1e-5, atol=1e-4)  # the ELBO splits over timestamps


def test_loss_is_beta_weighted_negative_elbo_per_dimension():
    torch.manual_seed(2)
    model = GaussianVAE((6,), 2, (8,))
    x = torch.randn(9, 6)
    torch.manual_seed(4)
    ll, kl = model.log_likelihoods(x, 1)
    torch.manual_seed(4)
    loss = elbo_loss(model, x, beta=2.5)
    torch.testing.assert_close(loss, ((-ll[0].sum(-1) + 2.5 * kl).mean() / 6))


def test_held_out_elbo_draws_are_keyed_on_the_rows():
    """In eval mode (the training loop's validation) ε is keyed on each row: the same loss in every call and in
    any batch, the generator untouched; while training, ε comes from the generator."""
    torch.manual_seed(3)
    model = GaussianVAE((6,), 2, (8,)).eval()
    x = torch.randn(10, 6)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    whole = elbo_loss(model, x, generator=g)
    assert torch.equal(g.get_state(), state)
    assert torch.equal(elbo_loss(model, x, generator=g), whole)
    halves = (elbo_loss(model, x[:4], generator=g) * 4 + elbo_loss(model, x[4:], generator=g) * 6) / 10
    torch.testing.assert_close(halves, whole)
    model.train()
    first = elbo_loss(model, x, generator=g)
    assert not torch.equal(g.get_state(), state)
    assert not torch.equal(elbo_loss(model, x, generator=g), first)


def test_variances_are_bounded():
    model = GaussianVAE((4,), 2, (8,), min_variance=1e-3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e4)  # drive every raw output far out
        mu, log_var = model.encode(torch.randn(5, 4))
        _, dec_log_var = model.decode(torch.randn(5, 2))
    assert log_var.abs().max() <= 10.0
    assert dec_log_var.min() >= math.log(1e-3) - 1e-6


def test_finds_injected_series_anomalies(series, fitted):
    for score in ("recon_prob", "elbo"):
        fitted.set_params(anomaly_score=score)
        try:
            scores = fitted.decision_function(series.test)
        finally:
            fitted.set_params(anomaly_score="elbo")
        assert scores.shape == (series.test.shape[0],)
        assert roc_auc_score(series.labels, scores) >= 0.9, score


def test_finds_tabular_outliers():
    data = make_tabular(n_train=1000, n_test=400, n_features=6, seed=1)
    det = VAEDetector(**SMALL).fit(data.train)
    assert roc_auc_score(data.labels, det.decision_function(data.test)) >= 0.9


def test_detector_score_is_the_model_score():
    data = make_tabular(n_train=300, n_test=50, n_features=4, seed=2)
    det = VAEDetector(normalize=False, n_samples=5, **{**SMALL, "epochs": 2}).fit(data.train)
    x = torch.as_tensor(data.test)
    seed = _stream_seed(det.seed_, "latent-samples")  # latent samples keyed on each row and this seed
    with torch.no_grad():
        expected = det.model_.scores(x, "elbo", 5, noise_seed=seed).double().numpy()
    np.testing.assert_allclose(det.decision_function(data.test), expected, rtol=1e-6)


def test_more_samples_and_chunked_passes_give_finite_consistent_scores(fitted, series, monkeypatch):
    import genad_fast.detectors.vae as vae_module

    base = fitted.decision_function(series.test[:200])
    monkeypatch.setattr(vae_module, "MAX_CODES_PER_PASS", 16 * 7)  # 7 windows per decoder pass
    chunked = fitted.decision_function(series.test[:200])
    assert np.isfinite(chunked).all()
    # Same noise stream, other batch boundaries: the draws land on other windows, so the two are
    # estimates of the same quantity, close but not equal.
    assert np.corrcoef(base, chunked)[0, 1] > 0.95


def test_same_seed_same_scores(series):
    kwargs = dict(window=8, **{**SMALL, "epochs": 2})
    train, test = series.train[:800], series.test[:200]
    a = VAEDetector(seed=5, **kwargs).fit(train).decision_function(test)
    b = VAEDetector(seed=5, **kwargs).fit(train).decision_function(test)
    c = VAEDetector(seed=6, **kwargs).fit(train).decision_function(test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_save_load_round_trip(tmp_path, series, fitted):
    path = tmp_path / "vae.pt"
    fitted.save(path)
    loaded = genad_fast.load(path)
    assert type(loaded) is VAEDetector
    test = series.test[:300]
    np.testing.assert_array_equal(loaded.decision_function(test), fitted.decision_function(test))
    assert loaded.threshold_ == fitted.threshold_
    assert get_detector("vae") is VAEDetector


def test_windows_score_whole_windows_by_default(series, fitted):
    """One bound on -log p(window) per window (per_timestamp=False); a timestamp gets the mean over the windows
    covering it (reduce="mean")."""
    assert VAEDetector().per_timestamp is False and fitted.per_timestamp is False
    test, W = series.test[:120], 16
    windows = fitted.normalizer_.transform(torch.as_tensor(test).unfold(0, W, 1).transpose(1, 2))
    with torch.no_grad():
        per_window = fitted._score_model(windows).double().numpy()  # [T - W + 1]
    assert per_window.shape == (len(test) - W + 1,)
    expected = [per_window[max(0, t - W + 1):t + 1].mean() for t in range(len(test))]
    np.testing.assert_allclose(fitted.decision_function(test), expected, rtol=1e-5)


@pytest.mark.parametrize("params, match", [
    (dict(anomaly_score="likelihood"), "score must be"),
    (dict(n_samples=0), "n_samples must be"),
    (dict(beta=0.0), "beta must be"),
    (dict(beta="1"), "beta must be"),
    (dict(min_variance=0.0), "min_variance must be"),
    (dict(latent_dim=0), "latent_dim must be"),
    (dict(per_timestamp=None), "per_timestamp must be"),
    (dict(hidden=(0,)), "hidden must be"),
    (dict(epochs=0), "epochs must be"),
    (dict(lr=-1e-3), "lr must be"),
])
def test_bad_parameters(params, match):
    data = make_tabular(n_train=100, n_test=10, n_features=3, seed=0)
    with pytest.raises(ValueError, match=match):
        VAEDetector(**{**SMALL, **params}).fit(data.train)


def test_scoring_parameters_changed_after_fit_are_checked(fitted, series):
    fitted.set_params(n_samples=0)
    try:
        with pytest.raises(ValueError, match="n_samples must be"):
            fitted.decision_function(series.test[:50])
    finally:
        fitted.set_params(n_samples=16)


def test_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_variance"):
        GaussianVAE((3,), 2, (4,), min_variance=0.0)
    model = GaussianVAE((3,), 2, (4,))
    with pytest.raises(ValueError, match="score must be"):
        model.scores(torch.zeros(2, 3), "nll")
    with pytest.raises(ValueError, match="per-timestamp scores need window"):
        model.scores(torch.zeros(2, 3), per_timestamp=True)
