"""EnsembleDetector: member scores put on a common scale (robust z-scores or empirical-CDF ranks against each
member's training scores) and averaged; the detector conventions (seeds, model files, threads, bad input)."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from genad_fast.data import make_series
from genad_fast.detectors import get_detector
from genad_fast.detectors.ensemble import EnsembleDetector

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_MEMBERS = {"flow": dict(n_steps=2, hidden=16, n_blocks=1, epochs=5),
                "dte": dict(hidden=(16, 16), epochs=10, lr=2e-3, min_steps=0)}
BASE = dict(member_params=TINY_MEMBERS, verbose=False, device="cpu")


def blobs(seed: int = 0):
    """Easy tabular case: normal rows N(0, I_5); anomalies N(3, I_5)."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(300, 5))
    test = np.vstack([rng.normal(size=(150, 5)), rng.normal(size=(30, 5)) + 3.0])
    return train, test, np.r_[np.zeros(150), np.ones(30)]


@pytest.fixture(scope="module")
def tabular():
    train, test, y = blobs()
    return EnsembleDetector(seed=0, **BASE).fit(train), train, test, y


def test_registered_with_literature_defaults():
    assert get_detector("ensemble") is EnsembleDetector
    det = EnsembleDetector()
    assert tuple(det.members) == ("flow", "dte", "knn") and det.combine == "zscore"


def test_tabular_auroc_and_the_combination_formula(tabular):
    det, train, test, y = tabular
    s = det.decision_function(test)
    assert s.shape == (180,) and np.isfinite(s).all()
    assert roc_auc_score(y, s) > 0.95  # every member separates the shifted blob
    # the score is the mean of the members' robust z-scores against their own training scores; members see the
    # ensemble's normalised data
    z = det.normalizer_.transform(torch.as_tensor(test, dtype=torch.float32))
    want = np.zeros(180)
    for m in det.members_:
        ref = m.decision_scores_
        med = np.median(ref)
        want += (m.decision_function(z) - med) / (1.4826 * np.median(np.abs(ref - med)))
    np.testing.assert_allclose(s, want / 3, rtol=1e-12, atol=1e-12)
    # training scores: the members' own (kNN's leave-one-out) combined the same way
    assert det.decision_scores_.shape == (300,)
    assert np.isclose(np.median(det.decision_scores_), np.median(det.decision_scores_))  # finite
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.9))


def test_rank_combination(tabular):
    det, train, test, y = tabular
    det.set_params(combine="rank")  # read at scoring: no refit
    try:
        s = det.decision_function(test)
    finally:
        det.set_params(combine="zscore")
    assert (0 <= s).all() and (s <= 1).all()
    z = det.normalizer_.transform(torch.as_tensor(test, dtype=torch.float32))
    want = np.mean([np.searchsorted(np.sort(m.decision_scores_), m.decision_function(z), side="right")
                    / m.decision_scores_.size for m in det.members_], axis=0)
    np.testing.assert_allclose(s, want)
    assert roc_auc_score(y, s) > 0.95


def test_members_get_the_ensembles_settings(tabular):
    det = tabular[0]
    seeds = {m.seed for m in det.members_}
    assert len(seeds) == 3  # one derived seed per member
    for m in det.members_:
        assert m.normalize is False and m.window is None and str(m.device_) == "cpu"
    assert det.members_[0].epochs == 5  # member_params reached the flow


def test_series():
    data = make_series(T=1200, C=2, period=25, seed=0)
    det = EnsembleDetector(window=16, stride=4, seed=0, **BASE).fit(data.train)
    s = det.decision_function(data.test)
    assert s.shape == (data.test.shape[0],) and np.isfinite(s).all()
    assert roc_auc_score(data.labels, s) > 0.7
    # a collection scores as each series alone (to rounding: DTE's 7-column output product rounds by the number
    # of rows in MKL's GEMM, as tests/test_many_series.py shows for the narrow products of other networks)
    a, b = data.test[:400], data.test[400:]
    parts = det.decision_function([a, b])
    np.testing.assert_allclose(parts[0], det.decision_function(a), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts[1], det.decision_function(b), rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="does not stream"):
        det.stream()


def test_auto_window_is_resolved_once_and_shared_by_the_members(monkeypatch):
    from genad_fast.detectors import base

    calls = []
    resolve = base.resolve_window
    monkeypatch.setattr(base, "resolve_window", lambda *a, **k: calls.append(a[0]) or resolve(*a, **k))
    data = make_series(T=1200, C=2, period=25, seed=0)
    det = EnsembleDetector(window="auto", stride=4, seed=0, **BASE).fit(data.train)
    assert det.window == "auto" and isinstance(det.window_, int) and det.window_ >= 8
    assert [m.window for m in det.members_] == [det.window_] * len(det.members_)  # the int, not "auto"
    assert calls.count("auto") == 1  # the ensemble's own resolution; no member estimated the period again


def test_same_seed_same_scores(tabular):
    det, train, test, _ = tabular
    again = EnsembleDetector(seed=0, **BASE).fit(train)
    np.testing.assert_array_equal(again.decision_function(test), det.decision_function(test))


def test_save_load_round_trip(tabular, tmp_path):
    det, _, test, _ = tabular
    det.save(tmp_path / "ens.pt")
    back = EnsembleDetector.load(tmp_path / "ens.pt")
    np.testing.assert_array_equal(back.decision_function(test), det.decision_function(test))
    assert back.threshold_ == det.threshold_
    assert [type(m).__name__ for m in back.members_] == ["FlowDetector", "DTEDetector", "KNNDetector"]


@pytest.mark.parametrize("params, error, match", [
    (dict(members=()), ValueError, "non-empty list"),
    (dict(members=("knn", "knn")), ValueError, "twice"),
    (dict(members=("knn", "nope")), ValueError, "unknown detector 'nope'"),
    (dict(members=("knn", "ensemble")), ValueError, "cannot be a member"),
    (dict(members=("knn",), member_params={"flow": {}}), ValueError, "not among members"),
    (dict(members=("knn",), member_params={"knn": {"seed": 3}}), ValueError, "sets seed"),
    (dict(members=("knn",), member_params={"knn": 5}), ValueError, "member_params must be"),
    (dict(members=("knn", "diffusion")), ValueError, "'diffusion' models series only"),
    (dict(members=("knn",), combine="max"), ValueError, "combine"),
])
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        EnsembleDetector(verbose=False, device="cpu", **params).fit(np.random.default_rng(0).normal(size=(60, 3)))


def test_constant_member_scores_are_an_error():
    x = np.zeros((40, 3))
    x[:, 0] = np.arange(40) % 2  # kNN: every row has many identical neighbours, distance 0
    with pytest.raises(ValueError, match="'knn' gives every training point the same score"):
        EnsembleDetector(members=("knn",), normalize=False, verbose=False, device="cpu").fit(x)


def test_bad_input(tabular):
    det = tabular[0]
    with pytest.raises(ValueError, match="features"):
        det.decision_function(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not fitted"):
        EnsembleDetector().decision_function(np.zeros((3, 5)))
