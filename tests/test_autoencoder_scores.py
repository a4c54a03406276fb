"""AutoEncoderDetector's code-aware scores (issue #17's quality study, docs/quality_study.md): the formulas of
``latent_density`` and ``latent_gaussian``, what they detect that the reconstruction error does not, model files
saved before the option, and ``min_steps`` (shared by the autoencoder, VAE, Deep SVDD and DTE; DTE's default 4,000)."""
import math

import numpy as np
import pytest
import torch

import genad_fast
from genad_fast.detectors._model_checksum import seal
from genad_fast.detectors.autoencoder import AutoEncoderDetector
from genad_fast.detectors.deep_svdd import DeepSVDDDetector
from genad_fast.detectors.dte import DTEDetector
from genad_fast.detectors.vae import VAEDetector
from genad_fast.metrics import auroc, vus_pr

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(hidden=(16, 16), epochs=30, min_steps=0, verbose=False, seed=0)


def _two_clusters_and_a_gap(seed: int = 0, n_train: int = 600):
    """5 features: normal rows in two clusters at ±3 (then mixed by a random matrix), outliers a tight cluster
    half-way between them: inside the data's span and on the line the clusters span, so an autoencoder
    reconstructs them (and PCA's in-subspace term calls them central)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(5, 5)) / math.sqrt(5)

    def normal(n):
        side = np.where(rng.integers(0, 2, n)[:, None] == 0, -3.0, 3.0)
        return (rng.normal(size=(n, 5)) * 0.5 + side) @ mix

    outliers = (rng.normal(size=(20, 5)) * 0.3) @ mix
    test = np.concatenate([normal(300), outliers]).astype(np.float32)
    return normal(n_train).astype(np.float32), test, np.r_[np.zeros(300), np.ones(20)]


def test_latent_density_ranks_an_outlier_cluster_in_a_gap_above_random():
    train, test, labels = _two_clusters_and_a_gap()
    det = AutoEncoderDetector(verbose=False, seed=0).fit(train)  # the defaults
    assert det.anomaly_score == "latent_density"  # the default
    assert auroc(labels, det.decision_function(test)) > 0.8
    # one Gaussian over the codes has its centre in the gap: no better than chance there
    det.set_params(anomaly_score="latent_gaussian")
    assert auroc(labels, det.decision_function(test)) < 0.75


def _by_hand(det, x: torch.Tensor, per_timestamp: bool) -> torch.Tensor:
    with torch.no_grad():
        z = det.model_.encoder(x)
        sq = (x - det.model_.decoder(z)).square() / det.residual_var_
        u = (z - det.code_mean_) @ det.code_whiten_.T
        if det.anomaly_score == "latent_gaussian":
            term = u.square().sum(-1)
        else:
            d2 = torch.cdist(u.double(), det.code_ref_.double()).square()
            h2 = det.code_bandwidth_ ** 2
            term = (-2.0 * (torch.logsumexp(-d2 / (2 * h2), -1) - math.log(det.code_ref_.shape[0]))).float()
    if per_timestamp:
        return (sq.sum(-1) + term[:, None] / x.shape[1]) / x.shape[2]
    return (sq.flatten(1).sum(1) + term) / sq[0].numel()


@pytest.mark.parametrize("score", ["latent_density", "latent_gaussian"])
def test_row_scores_follow_the_formula(score):
    train, test, _ = _two_clusters_and_a_gap(n_train=300)
    det = AutoEncoderDetector(anomaly_score=score, normalize=False, **{**SMALL, "epochs": 3}).fit(train)
    expected = _by_hand(det, torch.as_tensor(test), per_timestamp=False)
    np.testing.assert_allclose(det.decision_function(test), expected.double().numpy(), rtol=1e-4, atol=1e-5)
    # the code statistics are the training codes': whitened, they have mean 0 and covariance I
    with torch.no_grad():
        z = det.model_.encoder(torch.as_tensor(train)).double()
        u = (z - det.code_mean_.double()) @ det.code_whiten_.T.double()
    np.testing.assert_allclose(u.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(torch.cov(u.T, correction=0).numpy(), np.eye(u.shape[1]), atol=1e-3)
    assert det.code_bandwidth_ == pytest.approx(300 ** (-1 / (u.shape[1] + 4)))


@pytest.mark.parametrize("score", ["latent_density", "latent_gaussian"])
def test_window_scores_per_timestamp_sum_to_the_window_score(series, score):
    det = AutoEncoderDetector(window=16, anomaly_score=score, per_timestamp=True,
                              **{**SMALL, "epochs": 2}).fit(series.train[:600])
    batch = det.normalizer_.transform(torch.as_tensor(series.test[:40]).unfold(0, 16, 1).transpose(1, 2)[:6])
    with torch.no_grad():
        per_t = det._score_model(batch)
        det.set_params(per_timestamp=False)
        per_w = det._score_model(batch)
    torch.testing.assert_close(per_t, _by_hand(det, batch, True), rtol=1e-4, atol=1e-5)
    C, W = batch.shape[2], batch.shape[1]
    torch.testing.assert_close(per_t.sum(1) * C, per_w * W * C, rtol=1e-4, atol=1e-4)


def test_reconstruction_score_is_the_old_one():
    train, test, _ = _two_clusters_and_a_gap(n_train=300)
    det = AutoEncoderDetector(anomaly_score="reconstruction", normalize=False, **{**SMALL, "epochs": 3}).fit(train)
    x = torch.as_tensor(test)
    with torch.no_grad():
        expected = (x - det.model_(x)).square().mean(1).double().numpy()
    np.testing.assert_allclose(det.decision_function(test), expected, rtol=1e-6)


def test_a_file_saved_before_anomaly_score_loads_with_the_reconstruction_error(tmp_path):
    train, test, _ = _two_clusters_and_a_gap(n_train=300)
    det = AutoEncoderDetector(anomaly_score="reconstruction", **{**SMALL, "epochs": 3}).fit(train)
    path = tmp_path / "new.pt"
    det.save(path)
    payload = torch.load(path, weights_only=True)
    # what the library wrote before the option: no anomaly_score/min_steps parameter, no code statistics
    for key in ("anomaly_score", "min_steps"):
        payload["params"].pop(key)
    for key in ("code_mean", "code_whiten", "residual_var", "code_ref", "code_bandwidth"):
        payload["state"].pop(key)
    old = tmp_path / "old.pt"
    torch.save(seal(payload), old)
    loaded = genad_fast.load(old)
    assert loaded.anomaly_score == "reconstruction"
    np.testing.assert_array_equal(loaded.decision_function(test), det.decision_function(test))
    loaded.save(tmp_path / "again.pt")  # and it saves again as it is
    loaded.set_params(anomaly_score="latent_density")
    with pytest.raises(ValueError, match="lacks; score it with anomaly_score='reconstruction' or refit"):
        loaded.decision_function(test)


def test_save_load_keeps_the_code_statistics(tmp_path, series):
    det = AutoEncoderDetector(window=8, **{**SMALL, "epochs": 2}).fit(series.train[:400])
    det.save(tmp_path / "ae.pt")
    loaded = genad_fast.load(tmp_path / "ae.pt")
    np.testing.assert_array_equal(loaded.decision_function(series.test[:200]), det.decision_function(series.test[:200]))


def test_anomaly_score_must_be_known():
    with pytest.raises(ValueError, match="anomaly_score must be one of"):
        AutoEncoderDetector(anomaly_score="mahalanobis", **SMALL).fit(np.zeros((20, 3)) + np.arange(60).reshape(20, 3))


@pytest.mark.parametrize("cls", [AutoEncoderDetector, VAEDetector, DeepSVDDDetector, DTEDetector])
def test_min_steps_raises_the_epochs_of_a_small_data_set(cls):
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    kw = dict(hidden=(8,), epochs=2, batch_size=16, val_fraction=0.0, verbose=False)
    if cls is DeepSVDDDetector:
        kw["pretrain_epochs"] = 0
    assert len(cls(min_steps=0, **kw).fit(x).history_.train_loss) == 2
    # 60 rows at batch 16: 4 steps per epoch, so 40 steps need 10 epochs
    assert len(cls(min_steps=40, **kw).fit(x).history_.train_loss) == 10
    # epochs already making more steps than min_steps: unchanged
    assert len(cls(min_steps=4, **{**kw, "epochs": 3}).fit(x).history_.train_loss) == 3


@pytest.mark.parametrize("cls", [AutoEncoderDetector, VAEDetector, DeepSVDDDetector])
def test_the_default_is_a_thousand_steps(cls):
    """A 60-row table at the default batch of 128 is one step an epoch: the defaults train it 1,000 epochs (and
    a 2,400-window series, 17 steps an epoch, 59 rather than 50), as the GANs make 1,000 generator steps."""
    det = cls(hidden=(8,))
    assert det.min_steps == 1000
    assert det._fit_config(60).epochs == 1000
    assert det._fit_config(2400).epochs == 59
    assert cls(hidden=(8,), min_steps=0)._fit_config(60).epochs == det.epochs


def test_dte_trains_at_least_four_thousand_steps():
    """DTE's 400 epochs at batch 64: a 124-row digits class (2 steps an epoch) trains 2,000 epochs, a table of
    640 rows (10 steps) or a 2,500-window series (40 steps) its 400 as the reference does."""
    det = DTEDetector(hidden=(8,))
    assert det.min_steps == 4000
    assert det._fit_config(124).epochs == 2000
    assert det._fit_config(640).epochs == det._fit_config(2500).epochs == 400


@pytest.mark.parametrize("n_dims, code", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (9, 4), (40, 16), (256, 16)])
def test_default_code_is_a_bottleneck(n_dims, code):
    from genad_fast.detectors._network import default_code_size

    assert default_code_size(n_dims) == code
    assert code < n_dims or n_dims == 1


@pytest.mark.parametrize("cls, attr", [(AutoEncoderDetector, "latent_dim"), (VAEDetector, "latent_dim"),
                                       (DeepSVDDDetector, "rep_dim")])
def test_two_features_get_a_code_of_one(cls, attr):
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    kw = {"pretrain_epochs": 0} if cls is DeepSVDDDetector else {}
    det = cls(hidden=(8,), epochs=1, verbose=False, **kw).fit(x)
    width = det.model_.center.numel() if cls is DeepSVDDDetector else (
        det.model_.latent_dim if cls is VAEDetector else det.model_.encoder.out_dim)
    assert getattr(det, attr) is None and width == 1


@pytest.mark.parametrize("cls", [AutoEncoderDetector, VAEDetector])
def test_per_window_scores_find_a_changed_heart_beat(cls):
    """Why windows score whole by default, on GutenTAG's ECG with one changed beat pattern (the benchmark suite's
    gt-ecg-pattern): the error of a timestamp (and the VAE's decoder variance) differs along a beat, so
    per-timestamp scores rank normal timestamps by their place in the beat; a window's score finds the changed beat
    (suite, seed 0: AE VUS-PR 0.851 -> 1.000, VAE 0.371 -> 0.986)."""
    from genad_fast.evaluation import gutentag_suite as gt

    (config,) = gt.suite_configs(names=("ecg-pattern",))
    train, test, labels = gt.generate(config, 0)
    det = cls(window="auto", epochs=5, min_steps=200, verbose=False).fit(train)
    assert det.per_timestamp is False
    per_window = det.decision_function(test)
    det.set_params(per_timestamp=True)
    per_t = det.decision_function(test)
    # measured (seeds 0 and 1): AUROC AE 1.000 / 0.978-0.981, VAE 0.996 / 0.695-0.710; VUS-PR AE 0.999-1.000 /
    # 0.932-0.933, VAE 0.994-0.995 / 0.438-0.443
    assert auroc(labels, per_window) >= 0.97, auroc(labels, per_window)
    vus_window, vus_t = vus_pr(labels, per_window), vus_pr(labels, per_t)
    assert vus_window > vus_t + 0.03, (vus_window, vus_t)


@pytest.mark.parametrize("cls", [AutoEncoderDetector, VAEDetector])
def test_model_files_keep_the_per_timestamp_setting_they_were_saved_with(cls, series, tmp_path):
    det = cls(window=8, hidden=(8,), epochs=1, min_steps=0, verbose=False).fit(series.train[:300])
    det.save(tmp_path / "m.pt")
    assert genad_fast.load(tmp_path / "m.pt").per_timestamp is False
    # A file from before the parameter existed scored per timestamp, and still does.
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["params"]["per_timestamp"]
    seal(payload)
    torch.save(payload, tmp_path / "old.pt")
    old = genad_fast.load(tmp_path / "old.pt")
    assert old.per_timestamp is True
    det.set_params(per_timestamp=True)
    np.testing.assert_array_equal(old.decision_function(series.test[:100]), det.decision_function(series.test[:100]))
