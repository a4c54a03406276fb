"""The training loop's speed options (issue #16 point 3): epochs over a swept share of the samples
(``TrainConfig.epoch_fraction``, the detectors' ``train_stride``) and bfloat16 forward passes
(``TrainConfig.autocast``, the detectors' ``train_dtype``). Speed itself is measured by bench/cases/fit_time.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from genad_fast.detectors import _training_params
from genad_fast.detectors.diffusion import DiffusionDetector
from genad_fast.detectors.flow import FlowDetector
from genad_fast.nn import training
from genad_fast.nn.adam import Adam
from genad_fast.nn.clipped_adam import ClippedFusedAdam
from genad_fast.nn.diffusion import Denoiser, NoiseSchedule
from genad_fast.nn.diffusion.losses import ReconstructLoss

pytestmark = pytest.mark.usefixtures("one_thread")


class _Recorder:
    """A loss that records which rows each training batch holds (column 0 holds the row's index)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __call__(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        if model.training:
            self.batches.append(batch[:, 0].long().tolist())
        return ((model(batch) - batch) ** 2).mean()


def _rows(n: int) -> torch.Tensor:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(1))
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    return x


def _fit(n: int, seed: int = 0, **config) -> tuple[_Recorder, training.TrainHistory, nn.Module]:
    torch.manual_seed(0)
    model, rec = nn.Linear(3, 3), _Recorder()
    cfg = training.TrainConfig(**{"epochs": 4, "batch_size": 16, "val_fraction": 0.0, **config})
    history = training.fit(model, rec, _rows(n), cfg, torch.Generator().manual_seed(seed), verbose=False)
    return rec, history, model


@pytest.mark.parametrize(("n", "fraction", "batch"), [(400, 0.25, 16), (401, 0.1, 16), (50, 0.5, 8), (97, 1.0, 8)])
def test_an_epoch_is_the_fraction_of_the_samples(n, fraction, batch):
    rec, history, _ = _fit(n, epoch_fraction=fraction, batch_size=batch, epochs=3, min_epoch_steps=1)
    per_epoch = math.ceil(n * fraction)
    assert history.n_train == per_epoch
    assert len(rec.batches) == 3 * math.ceil(per_epoch / batch)  # steps: as a grid of per_epoch samples
    seen = [r for b in rec.batches for r in b]
    assert len(seen) == 3 * per_epoch


@pytest.mark.parametrize(("n", "expected"), [(400, 8 * 16), (100, 100), (10_000, 2500)])
def test_an_epoch_holds_at_least_min_epoch_steps_batches(n, expected):
    """A quarter of n, but at least 8 batches of 16 (or all n): patience counts epochs of enough steps."""
    config = training.TrainConfig(batch_size=16, epoch_fraction=0.25)
    assert training.epoch_samples(n, config) == expected
    assert training.epoch_samples(n, training.TrainConfig(batch_size=16)) == n


def test_the_sweep_uses_every_sample_once_per_cycle():
    # 400 samples, a quarter per epoch: epochs 1-4 are one permutation, 5-8 the next
    rec, _, _ = _fit(400, epoch_fraction=0.25, epochs=8, batch_size=20, min_epoch_steps=1)
    seen = [r for b in rec.batches for r in b]
    assert sorted(seen[:400]) == list(range(400)) and sorted(seen[400:]) == list(range(400))
    assert seen[:400] != seen[400:]  # a fresh permutation per sweep


def test_whole_epochs_are_the_plain_loop():
    """epoch_fraction=1 draws one permutation of the training samples per epoch from the generator, as before."""
    rec, _, _ = _fit(100, epoch_fraction=1.0, epochs=2, batch_size=100)
    g = torch.Generator().manual_seed(0)
    train, _ = training.split_train_val(100, 0.0, g)
    for epoch in range(2):
        assert rec.batches[epoch] == train[torch.randperm(100, generator=g)].tolist()


@pytest.mark.parametrize("n, fraction, sizes", [(10, 0.1, (9, 1)), (100, 0.0, (100, 0)), (1, 0.5, (1, 0)),
                                                 (2, 0.9, (2, 0)), (3, 0.5, (1, 2))])
def test_split_sizes_are_the_split_and_never_leave_no_training_sample(n, fraction, sizes):
    assert training.split_sizes(n, fraction) == sizes
    train, val = training.split_train_val(n, fraction, torch.Generator().manual_seed(0))
    assert (train.numel(), val.numel()) == sizes
    assert sorted(train.tolist() + val.tolist()) == list(range(n))


def test_the_same_seed_gives_the_same_model():
    _, _, a = _fit(300, seed=5, epoch_fraction=0.2)
    _, _, b = _fit(300, seed=5, epoch_fraction=0.2)
    _, _, c = _fit(300, seed=6, epoch_fraction=0.2)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_validation_is_on_the_fraction_of_the_held_out_samples():
    seen = []

    def loss(model, batch):
        if not model.training:
            seen.append(batch.shape[0])
        return ((model(batch) - batch) ** 2).mean()

    cfg = training.TrainConfig(epochs=1, batch_size=50, val_fraction=0.2, epoch_fraction=0.25, min_epoch_steps=1)
    training.fit(nn.Linear(3, 3), loss, _rows(500), cfg, torch.Generator().manual_seed(0), verbose=False)
    assert seen == [math.ceil(100 * 0.25)]


@pytest.mark.parametrize(("field", "value"), [("epoch_fraction", 0.0), ("epoch_fraction", 1.5),
                                              ("min_epoch_steps", 0), ("autocast", torch.float64)])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        training.TrainConfig(**{field: value})


# ---- the detectors' parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "expected"), [
    (dict(window=None), 1.0),                             # tabular rows: every row
    (dict(window=64), 1 / 8),                             # None: window // 8
    (dict(window=64, train_stride=1), 1.0),               # the behaviour before train_stride
    (dict(window=64, stride=4, train_stride=2), 1.0),     # windows already further apart than train_stride
    (dict(window=64, stride=2, train_stride=16), 1 / 8),
    (dict(window=5), 1.0),                                # window // 8 = 0: at least 1
])
def test_epoch_fraction_of_the_detectors(params, expected):
    params = {"train_stride": None, **params}  # the default of both
    assert _training_params.epoch_fraction(FlowDetector(**params)) == pytest.approx(expected)
    if params["window"] is not None and params["train_stride"] is None:
        assert _training_params.epoch_fraction(DiffusionDetector(**params)) == pytest.approx(expected)


def test_train_stride_gives_the_steps_of_a_window_grid():
    """train_stride=s over stride-1 windows trains as many windows per epoch as stride=s windows would."""
    x = np.random.default_rng(0).normal(size=(1200, 2)).astype(np.float32)
    small = dict(n_steps=1, hidden=8, n_blocks=1, epochs=1, batch_size=8, verbose=False, train_dtype="float32")
    sampled = FlowDetector(window=16, train_stride=8, **small).fit(x)
    grid = FlowDetector(window=16, stride=8, train_stride=1, **small).fit(x)
    assert abs(sampled.history_.n_train - grid.history_.n_train) <= 1


@pytest.mark.parametrize(("choice", "native", "device", "expected"), [
    ("auto", True, "cpu", torch.bfloat16), ("auto", False, "cpu", None), ("auto", True, "cuda", None),
    ("float32", True, "cpu", None), ("bfloat16", False, "cpu", torch.bfloat16)])
def test_train_dtype(monkeypatch, choice, native, device, expected):
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: native)
    det = DiffusionDetector(train_dtype=choice)
    det.device_ = torch.device(device)
    assert _training_params.train_autocast(det) is expected
    assert det._train_config().autocast is expected


def test_flow_applies_train_dtype_in_its_loss_not_the_loop():
    det = FlowDetector(train_dtype="bfloat16")
    assert det._train_config().autocast is None and _training_params.train_autocast(det) is torch.bfloat16


def test_bfloat16_loss_is_close_to_float32():
    """The diffusion loss of one batch under bfloat16 autocast, against float32 (the same t and z)."""
    model = Denoiser(3, residual_channels=16, n_layers=3)
    with torch.no_grad():  # the last layer starts at zero: give it weights so the products matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    alpha_bar = NoiseSchedule.from_name("quadratic", 20, None, None).alpha_bars.float()
    batch = torch.randn(32, 40, 3, generator=torch.Generator().manual_seed(0))
    losses = []
    for dtype in (None, torch.bfloat16):
        loss = ReconstructLoss(alpha_bar, "eager", torch.Generator().manual_seed(3))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            losses.append(float(loss(model, batch).float()))
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)
    assert losses[1] != losses[0]  # the products did run in bfloat16


def test_bfloat16_training_tracks_float32():
    """A short diffusion fit: the per-epoch losses with bfloat16 forward passes stay near float32's."""
    x = np.sin(np.arange(600)[:, None] / 7.0 + np.arange(2)) + 0.05 * np.random.default_rng(0).normal(size=(600, 2))
    small = dict(window=32, n_steps=10, residual_channels=8, n_layers=3, embedding_dim=16, epochs=4, batch_size=32,
                 n_draws=1, tile_size=128, verbose=False, train_stride=4, seed=0)
    f32 = DiffusionDetector(train_dtype="float32", **small).fit(x).history_.train_loss
    bf16 = DiffusionDetector(train_dtype="bfloat16", **small).fit(x).history_.train_loss
    np.testing.assert_allclose(bf16, f32, rtol=0.1)


def test_fused_adam_is_the_same_update():
    """TrainConfig.fused_adam: Adam's fused kernel, the same update as the per-tensor loop up to float rounding."""
    _, _, plain = _fit(200, epochs=3)
    _, _, fused = _fit(200, epochs=3, fused_adam=True)
    for p, q in zip(plain.state_dict().values(), fused.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    model = nn.Linear(3, 3)
    assert isinstance(training._adam(model, training.TrainConfig(fused_adam=True)), ClippedFusedAdam)
    # without it, on the CPU: torch.optim.Adam's per-tensor update, bit for bit, without torch.optim (test_adam.py)
    assert isinstance(training._adam(model, training.TrainConfig()), Adam)


def test_the_permutation_layer_moves_values_and_gradients_exactly():
    """Permutation mixing by index_select (faster than x[:, perm] in training): the same values, the gradient the
    inverse permutation of the output's."""
    from genad_fast.nn.flow.realnvp import Permutation

    layer = Permutation(7, torch.Generator().manual_seed(0))
    x = torch.randn(5, 7, requires_grad=True)
    y, logdet = layer(x)
    assert torch.equal(y, x.detach()[:, layer.perm]) and torch.equal(logdet, torch.zeros(5))
    g = torch.randn(5, 7)
    y.backward(g)
    assert torch.equal(x.grad, g[:, layer.inv_perm])
    assert torch.equal(layer.inverse(y)[0], x.detach())


def test_flow_trains_the_fast_way_by_default():
    """FlowDetector's defaults (docs/training_speed.md): sampled epochs of windows, Adam's fused kernel, the
    products' dtype chosen per CPU and width in its loss (the loop itself never autocasts it)."""
    det = FlowDetector(window=64)
    assert _training_params.epoch_fraction(det) == pytest.approx(1 / 8)
    config = det._train_config()
    assert config.fused_adam and config.patience_in_steps and config.min_epoch_steps == 8 and config.autocast is None
    assert det.train_dtype == "auto"
    other = DiffusionDetector()._train_config()  # the others keep the loop they were measured with
    assert not other.fused_adam and not other.patience_in_steps


@pytest.mark.parametrize(("params", "expected"), [
    ({}, 256), ({"window": 16}, 64), ({"window": 16, "batch_size": 200}, 200), ({"batch_size": 32}, 32)])
def test_flow_batch_size_none_is_64_windows_or_256_rows(params, expected):
    """batch_size=None: 64 windows of a series (Glow's reference batch), 256 rows of a table; an int is kept."""
    det = FlowDetector(**params)
    assert det.get_params()["batch_size"] == params.get("batch_size")
    assert det._train_config().batch_size == expected


@pytest.mark.parametrize(("window", "expected"), [("auto", 64), (None, 256)])
def test_a_flow_fit_trains_in_the_batches_it_resolves(monkeypatch, window, expected):
    """The fit itself trains with the resolved batch, also where the window is resolved at fit (window="auto")."""
    used = []
    real = training.fit_shards

    def spy(*args, **kwargs):
        config = next(a for a in list(args) + list(kwargs.values()) if isinstance(a, training.TrainConfig))
        used.append(config.batch_size)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "fit_shards", spy)
    t = np.arange(1200, dtype=np.float32)
    x = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], 1) + 0.01 * np.random.default_rng(0) \
        .standard_normal((1200, 2), dtype=np.float32)
    det = FlowDetector(window=window, n_steps=2, hidden=16, epochs=1, seed=0, verbose=False).fit(x)
    assert used == [expected] and det.batch_size is None
    assert np.isfinite(det.decision_scores_).all()


@pytest.mark.parametrize(("choice", "amx", "device", "expected"), [
    ("auto", True, "cpu", torch.bfloat16), ("auto", False, "cpu", None), ("auto", True, "cuda", None),
    ("float32", True, "cpu", None), ("bfloat16", False, "cpu", torch.bfloat16)])
def test_flow_train_dtype_resolution(monkeypatch, choice, amx, device, expected):
    """FlowDetector's train_dtype: "auto" is bfloat16 product operands on CPUs with AMX tiles (where the products
    measured faster at every width), float32 elsewhere (AVX2, AVX512-BF16 alone, CUDA); explicit choices hold."""
    from genad_fast.detectors import flow

    monkeypatch.setattr(training, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(flow, "bf16_products_available", lambda: True)
    det = FlowDetector(train_dtype=choice)
    det.device_ = torch.device(device)
    assert det._train_matmul_dtype() is expected


def test_flow_auto_needs_the_bf16_gemm(monkeypatch):
    from genad_fast.detectors import flow

    monkeypatch.setattr(training, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(flow, "bf16_products_available", lambda: False)
    assert FlowDetector()._train_matmul_dtype() is None


@pytest.mark.parametrize(("cap", "amx", "native"), [
    ("AVX2", False, False), ("avx512_core_bf16", False, True), ("AVX512_CORE_AMX", True, True), ("ALL", None, None)])
def test_a_onednn_isa_cap_turns_bfloat16_off(monkeypatch, cap, amx, native):
    """ONEDNN_MAX_CPU_ISA below AMX (or below AVX512-BF16) makes oneDNN emulate bfloat16: "auto" must not pick it
    from the CPU's flags alone (bench.capabilities caps at AVX2 to stand in for an AVX2 machine)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert training.cpu_has_amx() is (True if amx is None else amx)
    assert training.cpu_has_native_bf16() is (True if native is None else native)


def test_an_mkl_isa_cap_below_avx512_turns_the_flows_bfloat16_off(monkeypatch):
    """The flow's bfloat16 products are MKL's: MKL_ENABLE_INSTRUCTIONS=AVX2 (bench.capabilities' AVX2 stand-in)
    makes MKL emulate them, so "auto" must not choose them."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert not training.cpu_has_amx()
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX512_E4")
    assert training.cpu_has_amx()
