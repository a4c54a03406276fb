"""AnoGAN and f-AnoGAN detectors end to end, and their GAN parts (networks, WGAN-GP, izi_f encoder)."""
import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import genad_fast
from genad_fast.detectors.base import _stream_seed
from genad_fast.datasets import make_series, make_tabular
from genad_fast.detectors import get_detector
from genad_fast.detectors.anogan import AnoGANDetector, FAnoGANDetector
from genad_fast.nn.gan import ConvCritic, ConvGenerator, MLPCritic, MLPGenerator, make_critic, make_generator
from genad_fast.nn.gan.encoder import izif_terms
from genad_fast.nn.gan.training import GANConfig, gradient_penalty, train_wgan_gp
from genad_fast.nn.training import TrainingDivergedError

# 30 WGAN-GP epochs are enough for make_series at W=16 (AUROC 0.95-0.99 over seeds 0-2).
SERIES = dict(window=16, epochs=30, min_steps=0, encoder_epochs=20, iterations=50, verbose=False)
# min_steps=1: a generator step at least (the default 1,000 would make these fits minutes long)
TINY = dict(hidden=(16,), critic_hidden=(16,), encoder_hidden=(16,), epochs=2, min_steps=1, encoder_epochs=2,
            iterations=5, verbose=False)
TINY_F = {k: v for k, v in TINY.items() if k != "iterations"}


@pytest.fixture(scope="module")
def series():
    return make_series(T=4000, C=4, period=32, seed=3)


@pytest.fixture(scope="module")
def anogan(series):
    return AnoGANDetector(init="encoder", **SERIES).fit(series.train)


@pytest.fixture(scope="module")
def fanogan(series):
    return FAnoGANDetector(**{k: v for k, v in SERIES.items() if k != "iterations"}).fit(series.train)


# ---------------------------------------------------------------------------------------------- quality

def test_anogan_finds_injected_series_anomalies(series, anogan):
    scores = anogan.decision_function(series.test)
    assert scores.shape == (series.test.shape[0],)
    assert roc_auc_score(series.labels, scores) >= 0.9
    # Random starts with 50 iterations vary with the draw (AUROC 0.76-0.90 over four seeds): judge their mean.
    anogan.set_params(init="random")
    seed = anogan.seed_
    try:
        aurocs = []
        for anogan.seed_ in range(4):  # the scoring starts are keyed on seed_
            aurocs.append(roc_auc_score(series.labels, anogan.decision_function(series.test)))
        assert np.mean(aurocs) >= 0.8, aurocs
    finally:
        anogan.set_params(init="encoder")
        anogan.seed_ = seed


def test_fanogan_finds_injected_series_anomalies(series, fanogan):
    assert roc_auc_score(series.labels, fanogan.decision_function(series.test)) >= 0.9


def test_both_detectors_share_one_gan_for_one_seed(anogan, fanogan):
    for a, b in ((anogan.generator_, fanogan.generator_), (anogan.critic_, fanogan.critic_),
                 (anogan.encoder_, fanogan.encoder_)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_bfloat16_products_keep_auroc(series, anogan):
    f32 = roc_auc_score(series.labels, anogan.decision_function(series.test))
    anogan.set_params(matmul_dtype="bfloat16")
    try:
        bf16 = roc_auc_score(series.labels, anogan.decision_function(series.test))
    finally:
        anogan.set_params(matmul_dtype="float32")
    assert bf16 >= f32 - 0.01  # keeps: loses at most 0.01 (it may gain by rounding, 0.921 -> 0.932 once)


def test_tabular_outliers():
    data = make_tabular(n_train=1500, n_test=400, n_features=6, seed=1)
    kwargs = dict(epochs=30, encoder_epochs=20, verbose=False)
    ano = AnoGANDetector(iterations=50, **kwargs).fit(data.train)
    # AnoGAN's search from random codes (the default init) ends in a local minimum for some rows: measured on an
    # Intel Sapphire Rapids 0.894 / 0.920 / 0.941 at seeds 0 / 1 / 2 (the same with 400 iterations), above 0.9 at
    # seed 0 on an AMD Zen 4 (MKL's float32 products round differently there, and the GAN trains differently). The
    # bar sits below that spread, far above chance (0.5); f-AnoGAN's encoder reaches 0.998-0.9996 on both.
    assert roc_auc_score(data.labels, ano.decision_function(data.test)) >= 0.85
    f = FAnoGANDetector(**kwargs).fit(data.train)
    assert roc_auc_score(data.labels, f.decision_function(data.test)) >= 0.9


# ---------------------------------------------------------------------------------------------- scores

def test_anogan_components_add_up_per_row():
    data = make_tabular(n_train=200, n_test=30, n_features=5, seed=0)
    det = AnoGANDetector(lam=0.3, **TINY).fit(data.train)
    parts = det.decision_components(data.test)
    np.testing.assert_allclose(parts["score"], det.decision_function(data.test))
    np.testing.assert_allclose(parts["score"], 0.7 * parts["residual"] + 0.3 * parts["feature"], rtol=1e-5)
    assert (parts["residual"] > 0).all() and (parts["feature"] > 0).all()
    np.testing.assert_allclose(det.decision_function(data.test), parts["score"])


def test_anogan_score_is_the_latent_search_loss():
    from genad_fast.nn.gan.search import latent_search

    data = make_tabular(n_train=200, n_test=12, n_features=5, seed=0)
    det = AnoGANDetector(normalize=False, restarts=2, **TINY).fit(data.train)
    scores = det.decision_function(data.test)
    # the latent starts are keyed on each row and the detector's "latent-start" seed
    res = latent_search(det.generator_, det.critic_, torch.as_tensor(data.test), iterations=5, lam=0.1,
                        lr=0.05, restarts=2, tol=1e-3, start_seed=_stream_seed(det.seed_, "latent-start"))
    np.testing.assert_allclose(scores, res.loss.double().numpy(), rtol=1e-6)


def test_fanogan_components_are_the_izif_terms():
    data = make_tabular(n_train=200, n_test=20, n_features=5, seed=0)
    det = FAnoGANDetector(kappa=0.5, normalize=False, **TINY_F)
    det.fit(data.train)
    parts = det.decision_components(data.test)
    with torch.no_grad():
        res, feat = izif_terms(det.encoder_, det.generator_, det.critic_, torch.as_tensor(data.test))
    np.testing.assert_allclose(parts["residual"], res.double().numpy(), rtol=1e-5)
    np.testing.assert_allclose(parts["feature"], feat.double().numpy(), rtol=1e-5)
    np.testing.assert_allclose(parts["score"], parts["residual"] + 0.5 * parts["feature"], rtol=1e-5)


def test_series_components_are_aggregated_per_timestamp(series):
    det = AnoGANDetector(window=8, stride=3, reduce="mean", **TINY).fit(series.train[:600])
    parts = det.decision_components(series.test[:301])
    assert all(v.shape == (301,) for v in parts.values())
    # "mean" is linear, so the per-timestamp parts still add up to the score
    np.testing.assert_allclose(parts["score"], 0.9 * parts["residual"] + 0.1 * parts["feature"], rtol=1e-4)


def test_same_seed_same_scores(series):
    kwargs = dict(window=8, **TINY)
    a = AnoGANDetector(seed=4, **kwargs).fit(series.train[:500]).decision_function(series.test[:200])
    b = AnoGANDetector(seed=4, **kwargs).fit(series.train[:500]).decision_function(series.test[:200])
    c = AnoGANDetector(seed=5, **kwargs).fit(series.train[:500]).decision_function(series.test[:200])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("cls", [AnoGANDetector, FAnoGANDetector])
def test_save_load_round_trip(tmp_path, series, cls):
    kwargs = dict(TINY, init="encoder") if cls is AnoGANDetector else TINY_F
    det = cls(window=8, **kwargs).fit(series.train[:400])
    path = tmp_path / "gan.pt"
    det.save(path)
    loaded = genad_fast.load(path, map_location="cpu")
    assert type(loaded) is cls
    np.testing.assert_array_equal(loaded.decision_function(series.test[:150]), det.decision_function(series.test[:150]))
    assert loaded.threshold_ == det.threshold_


def test_convolutional_networks_end_to_end(series):
    det = AnoGANDetector(window=12, architecture="conv", init="encoder", **TINY).fit(series.train[:400])
    assert isinstance(det.generator_, ConvGenerator) and isinstance(det.critic_, ConvCritic)
    scores = det.decision_function(series.test[:100])
    assert scores.shape == (100,) and np.isfinite(scores).all()


def test_registered():
    assert get_detector("anogan") is AnoGANDetector
    assert get_detector("fanogan") is FAnoGANDetector


# ---------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("params, match", [
    (dict(architecture="conv"), "needs windows"),
    (dict(architecture="rnn"), "architecture must be"),
    (dict(lam=1.5), "lam must be"),
    (dict(init="pca"), "init must be"),
    (dict(iterations=0), "iterations must be"),
    (dict(restarts=0), "restarts must be"),
    (dict(tol=-1.0), "tol must be"),
    (dict(matmul_dtype="float16"), "matmul_dtype"),
    (dict(hidden=(0,)), "hidden must be"),
    (dict(kernel_size=4), "kernel_size must be odd"),
    (dict(lr=0.0), "lr must be"),
])
def test_bad_parameters(params, match):
    data = make_tabular(n_train=60, n_test=5, n_features=3, seed=0)
    with pytest.raises(ValueError, match=match):
        AnoGANDetector(**{**TINY, **params}).fit(data.train)


def test_encoder_start_needs_an_encoder():
    data = make_tabular(n_train=60, n_test=5, n_features=3, seed=0)
    det = AnoGANDetector(**TINY).fit(data.train)
    assert det.encoder_ is None
    det.set_params(init="encoder")
    with pytest.raises(ValueError, match="refit with init='encoder'"):
        det.decision_function(data.test)


def test_divergence_is_an_error_not_a_nan_model():
    data = make_tabular(n_train=200, n_test=5, n_features=4, seed=0)
    with pytest.raises(TrainingDivergedError, match="loss became"):
        FAnoGANDetector(lr=1e30, **{**TINY_F, "epochs": 3}).fit(data.train)


# ---------------------------------------------------------------------------------------------- GAN parts

@pytest.mark.parametrize("shape, arch", [((7,), "mlp"), ((13, 3), "mlp"), ((13, 3), "conv"), ((1, 2), "conv"),
                                         ((64, 5), "conv")])
def test_networks_make_and_read_samples_of_any_shape(shape, arch):
    g = make_generator(shape, 6, (8, 16), architecture=arch, kernel_size=3)
    c = make_critic(shape, (8, 16), architecture=arch, kernel_size=3)
    z = torch.randn(4, 6)
    x = g(z)
    assert x.shape == (4, *shape)
    assert c(x).shape == (4,)
    assert c.features(x).shape == (4, c.n_features)
    # f(x) is the input of the critic's last layer
    torch.testing.assert_close(c(x), c.head(c.features(x)).squeeze(-1))


def test_gradient_penalty_of_a_linear_critic_is_exact():
    critic = torch.nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))      # ||grad|| = 5 everywhere
    wrapped = lambda x: critic(x).squeeze(-1)                     # noqa: E731
    gp = gradient_penalty(wrapped, torch.randn(16, 3), torch.randn(16, 3), torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx(16.0)


def _energy_distance(a, b):
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


@pytest.mark.parametrize("seed", [0, 2])
def test_wgan_gp_learns_a_shifted_gaussian(caplog, seed):
    torch.manual_seed(seed)
    data = torch.randn(2000, 2) * torch.tensor([0.5, 1.2]) + torch.tensor([1.0, -0.5])
    g, c = MLPGenerator(2, (32, 32), (2,)), MLPCritic((2,), (32, 32))
    with torch.no_grad():
        before = _energy_distance(g(torch.randn(2000, 2)), data)
    with caplog.at_level(logging.DEBUG, logger="genad_fast"):
        hist = train_wgan_gp(g, c, data, GANConfig(epochs=80), torch.Generator().manual_seed(seed), verbose=False)
    assert len(hist.critic_loss) == 80 and all(np.isfinite(hist.critic_loss + hist.generator_loss))
    assert "critic loss" in caplog.text and "Wasserstein estimate" in caplog.text
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    with torch.no_grad():
        sample = g(torch.randn(4000, 2))
    # energy distance to the data: > 1 at initialisation, ~0.05-0.15 after training
    assert before > 1.0 and _energy_distance(sample, data) < 0.25


def test_small_data_trains_the_generator_every_n_critic_steps():
    """An epoch of fewer than n_critic batches still advances the generator: critic steps count over the fit (they
    restarted every epoch once, so a table of 100 rows at batch 64, two critic steps an epoch, never moved it)."""
    torch.manual_seed(0)
    data = torch.randn(100, 2) * torch.tensor([0.5, 1.2]) + torch.tensor([1.0, -0.5])
    g, c = MLPGenerator(2, (32, 32), (2,)), MLPCritic((2,), (32, 32))
    with torch.no_grad():
        before = _energy_distance(g(torch.randn(2000, 2)), data)
    hist = train_wgan_gp(g, c, data, GANConfig(epochs=400, batch_size=64, n_critic=5),
                         torch.Generator().manual_seed(0), verbose=False)
    assert hist.generator_steps == 400 * 2 // 5
    assert np.isnan(hist.generator_loss[0]) and np.isfinite(hist.generator_loss[2])  # epoch 3 holds step 5
    with torch.no_grad():
        assert _energy_distance(g(torch.randn(2000, 2)), data) < 0.5 * before


def test_too_little_training_for_one_generator_step_is_an_error():
    g, c = MLPGenerator(2, (8,), (2,)), MLPCritic((2,), (8,))
    with pytest.raises(ValueError, match="make no generator step.*raise epochs to at least 3"):
        train_wgan_gp(g, c, torch.randn(100, 2), GANConfig(epochs=2, batch_size=64, n_critic=5),
                      torch.Generator().manual_seed(0), verbose=False)


def test_min_steps_counts_generator_steps():
    """min_steps raises the GAN's epochs to make that many generator steps: 100 rows at batch 64 are 2 critic steps
    an epoch, so 10 generator steps (50 critic steps) need 25 epochs; 0 keeps ``epochs``."""
    x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    kw = dict(hidden=(8,), critic_hidden=(8,), iterations=2, batch_size=64, verbose=False)
    det = AnoGANDetector(epochs=2, min_steps=10, **kw).fit(x)
    assert len(det.gan_history_.critic_loss) == 25 and det.gan_history_.generator_steps == 10
    assert AnoGANDetector(epochs=5, min_steps=0, **kw).fit(x).gan_history_.generator_steps == 2
    with pytest.raises(ValueError, match="make no generator step"):
        AnoGANDetector(epochs=2, min_steps=0, **kw).fit(x)
