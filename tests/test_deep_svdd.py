"""DeepSVDDDetector and the Deep SVDD model: bias-free network, centre and its guard, both objectives,
the radius, pre-training, detection quality, determinism, model files, errors."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import genad_fast
from genad_fast.datasets import make_tabular
from genad_fast.detectors import get_detector
from genad_fast.detectors.deep_svdd import DeepSVDDDetector
from genad_fast.nn import training
from genad_fast.nn.svdd import DeepSVDD, assert_bias_free, guard_center, svdd_loss, svdd_network

SMALL = dict(hidden=(16, 32), epochs=10, pretrain_epochs=5, min_steps=0, verbose=False)


# One torch thread and the shared small series for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(series):
    return DeepSVDDDetector(window=16, **SMALL).fit(series.train)


@pytest.fixture(scope="module")
def fitted_soft(series):
    return DeepSVDDDetector(window=16, objective="soft-boundary", nu=0.05, warm_up_epochs=3, **SMALL).fit(series.train)


# ---- the network and the hypersphere ------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6,), (16, 3)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_network_is_bias_free(shape, batch_norm):
    net = svdd_network(shape, (8, 8), 4, kernel_size=3, batch_norm=batch_norm)
    assert_bias_free(net)
    assert not any("bias" in name for name, _ in net.named_parameters())
    if not batch_norm:
        # No additive term anywhere: phi(0) = 0 and phi(a x) = a phi(x) for a > 0 (leaky ReLU, max-pool).
        x = torch.randn(5, *shape)
        assert net(torch.zeros(1, *shape)).abs().max() == 0
        torch.testing.assert_close(net(3.0 * x), 3.0 * net(x), rtol=1e-5, atol=1e-5)


def test_a_network_with_a_bias_is_refused():
    with pytest.raises(ValueError, match="bias-free network.*has a bias"):
        DeepSVDD(torch.nn.Sequential(torch.nn.Linear(3, 2)), 2)
    with pytest.raises(ValueError, match="affine normalisation"):
        DeepSVDD(torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.BatchNorm1d(2)), 2)


def test_guard_moves_near_zero_coordinates_to_plus_minus_eps():
    c = torch.tensor([0.5, -0.05, 0.02, 0.0, -0.3, 0.1, -0.1])
    torch.testing.assert_close(guard_center(c, 0.1), torch.tensor([0.5, -0.1, 0.1, 0.1, -0.3, 0.1, -0.1]))


def test_center_is_the_guarded_mean_of_the_initial_forward_pass():
    torch.manual_seed(0)
    model = DeepSVDD(svdd_network((5,), (8,), 6), 6)
    data = torch.randn(37, 5)
    model.init_center(data, batch_size=10, eps=0.1)
    with torch.no_grad():
        expected = guard_center(model.net(data).mean(0), 0.1)
    torch.testing.assert_close(model.center, expected)
    assert (model.center.abs() >= 0.1 - 1e-7).all()


def test_solved_radius_minimises_the_soft_boundary_objective():
    torch.manual_seed(1)
    model = DeepSVDD(svdd_network((4,), (8,), 3), 3, objective="soft-boundary", nu=0.2)
    data = torch.randn(200, 4)
    model.init_center(data, 64)
    r = model.solve_radius(data, 64)
    with torch.no_grad():
        d2 = model.distances(data).double()

    def objective(radius: float) -> float:
        return radius ** 2 + float(torch.relu(d2 - radius ** 2).mean()) / 0.2

    best = objective(r)
    for other in np.linspace(0.0, 2.0 * float(d2.max().sqrt()), 400):
        assert best <= objective(float(other)) + 1e-9
    assert float((d2.sqrt() > r).double().mean()) <= 0.2  # the nu-property on the training data
    torch.testing.assert_close(float(model.radius), r)


def test_losses():
    torch.manual_seed(2)
    net = svdd_network((4,), (8,), 3)
    data = torch.randn(20, 4)
    one = DeepSVDD(net, 3)
    one.init_center(data, 8)
    with torch.no_grad():
        d2 = (net(data) - one.center).square().sum(1)
        torch.testing.assert_close(svdd_loss(one, data), d2.mean())
        soft = DeepSVDD(net, 3, objective="soft-boundary", nu=0.25)
        soft.center.copy_(one.center)
        soft.radius.fill_(0.7)
        torch.testing.assert_close(svdd_loss(soft, data), 0.49 + torch.relu(d2 - 0.49).mean() / 0.25)
        torch.testing.assert_close(soft.scores(data), d2 - 0.49)


def test_epoch_end_hook_runs_once_per_epoch_before_validation():
    calls = []
    model = torch.nn.Linear(2, 1)
    data = torch.randn(40, 2)

    def loss(m, b):
        calls.append("val" if not m.training else "step")
        return m(b).square().mean()

    config = training.TrainConfig(epochs=3, batch_size=16, val_fraction=0.25, patience=10)
    training.fit(model, loss, data, config, torch.Generator().manual_seed(0), verbose=False,
                 epoch_end=lambda e: calls.append(f"end{e}"))
    ends = [i for i, c in enumerate(calls) if c.startswith("end")]
    assert [calls[i] for i in ends] == ["end0", "end1", "end2"]
    assert all(calls[i + 1] == "val" for i in ends)


# ---- the detector -------------------------------------------------------------------------------
def test_finds_injected_series_anomalies(series, fitted, fitted_soft):
    for det in (fitted, fitted_soft):
        scores = det.decision_function(series.test)
        assert scores.shape == (series.test.shape[0],)
        assert roc_auc_score(series.labels, scores) >= 0.9, det.objective


def test_finds_outliers_of_one_compact_class():
    # Deep SVDD describes the normal class by one hypersphere: one cluster of normal rows.
    data = make_tabular(n_train=1000, n_test=400, n_features=6, n_clusters=1, seed=1)
    det = DeepSVDDDetector(**SMALL).fit(data.train)
    assert roc_auc_score(data.labels, det.decision_function(data.test)) >= 0.9


def test_scores_are_squared_distances_to_the_centre():
    data = make_tabular(n_train=300, n_test=40, n_features=5, n_clusters=1, seed=2)
    det = DeepSVDDDetector(normalize=False, **{**SMALL, "epochs": 3}).fit(data.train)
    x = torch.as_tensor(data.test)
    with torch.no_grad():
        expected = (det.model_.net(x) - det.center_).square().sum(1).double().numpy()
    np.testing.assert_allclose(det.decision_function(data.test), expected, rtol=1e-5)
    assert det.radius_ == 0.0
    assert (det.center_.abs() >= 0.1 - 1e-7).all()


def test_soft_boundary_radius_is_the_training_quantile(fitted_soft, series):
    det = fitted_soft
    assert det.radius_ > 0
    # R is the (1 - nu)-quantile of the distances of the training windows (the grid windows it fitted on).
    windows = det.normalizer_.transform(torch.as_tensor(series.train)).unfold(0, 16, 1).transpose(1, 2)
    with torch.no_grad():
        d = det.model_.distances(windows).double().sqrt().numpy()
    n = d.shape[0]
    assert det.radius_ == pytest.approx(float(np.sort(d)[n - int(0.05 * n) - 1]), rel=1e-5)
    assert (d > det.radius_ * (1 + 1e-6)).mean() <= 0.05  # the nu-property
    assert (d >= det.radius_ * (1 - 1e-6)).mean() >= 0.05


def test_radius_waits_for_the_warm_up(monkeypatch, series):
    solved = []
    original = DeepSVDD.solve_radius
    def recording(self, *args):
        solved.append(float(self.radius))
        return original(self, *args)

    monkeypatch.setattr(DeepSVDD, "solve_radius", recording)
    DeepSVDDDetector(window=8, objective="soft-boundary", warm_up_epochs=3, val_fraction=0.0,
                     **{**SMALL, "epochs": 5, "pretrain_epochs": 0}).fit(series.train[:600])
    # After epochs 3, 4, 5 (R = 0 before the first solve), and once at the end.
    assert len(solved) == 4 and solved[0] == 0.0 and solved[1] > 0.0


def test_pretraining_is_optional(series):
    kwargs = dict(window=8, **{**SMALL, "epochs": 2})
    with_pre = DeepSVDDDetector(**kwargs).fit(series.train[:600])
    without = DeepSVDDDetector(**{**kwargs, "pretrain_epochs": 0}).fit(series.train[:600])
    assert len(with_pre.pretrain_history_.train_loss) >= 1
    assert with_pre.pretrain_history_.train_loss[-1] < with_pre.pretrain_history_.train_loss[0]
    assert without.pretrain_history_ is None
    assert not torch.equal(with_pre.center_, without.center_)


def test_same_seed_same_scores(series):
    kwargs = dict(window=8, **{**SMALL, "epochs": 2})
    train, test = series.train[:800], series.test[:200]
    a = DeepSVDDDetector(seed=5, **kwargs).fit(train).decision_function(test)
    b = DeepSVDDDetector(seed=5, **kwargs).fit(train).decision_function(test)
    c = DeepSVDDDetector(seed=6, **kwargs).fit(train).decision_function(test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("which", ["fitted", "fitted_soft"])
def test_save_load_round_trip(tmp_path, series, which, request):
    det = request.getfixturevalue(which)
    path = tmp_path / "svdd.pt"
    det.save(path)
    loaded = genad_fast.load(path)
    assert type(loaded) is DeepSVDDDetector
    np.testing.assert_array_equal(loaded.decision_function(series.test[:300]), det.decision_function(series.test[:300]))
    assert loaded.radius_ == det.radius_ and torch.equal(loaded.center_, det.center_)
    assert get_detector("deep_svdd") is DeepSVDDDetector


@pytest.mark.parametrize("params, match", [
    (dict(objective="hard"), "objective must be"),
    (dict(nu=0.0), "nu must be"),
    (dict(nu=1.5), "nu must be"),
    (dict(rep_dim=0), "rep_dim must be"),
    (dict(pretrain_epochs=-1), "pretrain_epochs must be"),
    (dict(warm_up_epochs=1.5), "warm_up_epochs must be"),
    (dict(center_eps=0.0), "center_eps must be"),
    (dict(hidden=[]), "hidden must be"),
    (dict(kernel_size=0), "kernel_size must be"),
    (dict(batch_size=1.5), "batch_size must be"),
])
def test_bad_parameters(params, match):
    data = make_tabular(n_train=100, n_test=10, n_features=3, seed=0)
    with pytest.raises(ValueError, match=match):
        DeepSVDDDetector(**{**SMALL, **params}).fit(data.train)
