"""The fused forward of convolutional encoders/decoders (genad_fast/nn/conv_plan.py) and the autoencoder's fused
window score (``FusedWindowScore``): equal to the modules they replace to float rounding, used by every scoring call
on a compiled backend (a stream's, held for it: built once per stream) and never where they must not (the eager
backend, the reference; tabular rows)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genad_fast.detectors import get_detector
from genad_fast.detectors._call import get_thread_value
from genad_fast.detectors._hook_helpers import stream_seed
from genad_fast.nn.autoencoder import AutoEncoder
from genad_fast.nn.blocks import ConvDecoder, ConvEncoder
from genad_fast.nn.conv_plan import HELD_KEY, ConvNetPlan, conv_stages
from genad_fast.ops import Dispatch

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = Dispatch.build("cpu", "cpu")
#: float32 sums in another order than ATen's convolutions and products, over a few hundred terms per output
RTOL = 1e-5


def _randomise_batch_norm(module: nn.Module, gen: torch.Generator) -> None:
    """Running statistics and affine parameters away from the identity, so that folding them is tested."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=gen))


@pytest.mark.parametrize("window, channels, hidden, kernel_size, batch_norm, bias", [
    (32, 8, (32, 64), 5, False, True),     # the autoencoder's default for 8 channels
    (37, 3, (16,), 3, True, True),         # odd window: ceil pooling; one stage; batch normalisation folded
    (50, 2, (8, 16, 24), 5, True, False),  # three stages, bias-free (Deep SVDD's networks)
    (9, 1, (4, 4), 4, False, True),        # an even kernel (output one longer per stage), a short window
])
def test_plan_equals_the_modules(window, channels, hidden, kernel_size, batch_norm, bias):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    enc = ConvEncoder(window, channels, hidden, 5, kernel_size=kernel_size, bias=bias, batch_norm=batch_norm)
    dec = ConvDecoder(window, channels, hidden, 5, out_factor=2, kernel_size=kernel_size, bias=bias,
                      batch_norm=batch_norm)
    _randomise_batch_norm(enc, gen)
    _randomise_batch_norm(dec, gen)
    enc.eval(), dec.eval()
    plan = ConvNetPlan(enc, dec, torch.float32, CPU)
    x = torch.randn(3, window, channels, generator=gen)
    with torch.inference_mode():
        z, want_z = plan.encode(x), enc(x)
        torch.testing.assert_close(z, want_z, rtol=RTOL, atol=RTOL)
        torch.testing.assert_close(plan.decode(want_z), dec(want_z), rtol=RTOL, atol=RTOL)


def test_plan_reads_any_window_layout():
    torch.manual_seed(1)
    ae = AutoEncoder((16, 4), 3, (8, 8)).eval()
    plan = ConvNetPlan(ae.encoder, ae.decoder, torch.float32, CPU)
    rows = torch.randn(40, 4)
    windows = rows.unfold(0, 16, 3).transpose(1, 2)  # a stream's windows: a strided view of its rows
    with torch.inference_mode():
        torch.testing.assert_close(plan.decode(plan.encode(windows)), ae(windows.contiguous()), rtol=RTOL, atol=RTOL)


def test_plan_refuses_what_it_does_not_run():
    with pytest.raises(ValueError, match="do not run"):
        conv_stages(nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.GELU()), torch.float32)
    with pytest.raises(ValueError, match="stride 1"):
        conv_stages(nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, stride=2)), torch.float32)
    with pytest.raises(ValueError, match="before the first convolution"):
        conv_stages(nn.Sequential(nn.LeakyReLU(0.1), nn.Conv1d(2, 3, 3, padding=1)), torch.float32)
    ae = AutoEncoder((16, 4), 3, (8,))
    with pytest.raises(ValueError, match="eval-mode"):
        ConvNetPlan(ae.encoder, ae.decoder, torch.float32, CPU)  # training mode
    from genad_fast import BackendUnavailableError
    with pytest.raises(BackendUnavailableError):
        ConvNetPlan(ae.eval().encoder, ae.decoder, torch.float32, Dispatch.build("eager", "cpu"))


def _series(T: int, seed: int, C: int = 3) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * t / 25 + np.arange(C)) + 0.1 * rng.normal(size=(T, C))


_FITTED: dict = {}


def _autoencoder(anomaly_score: str, per_timestamp: bool):
    key = (anomaly_score, per_timestamp)
    if key not in _FITTED:
        _FITTED[key] = get_detector("autoencoder")(
            window=16, stride=2, hidden=(8, 16), epochs=2, min_steps=0, anomaly_score=anomaly_score,
            per_timestamp=per_timestamp, verbose=False, device="cpu", seed=0).fit(_series(400, 0))
    return _FITTED[key]


KINDS = [(kind, per_t) for kind in ("latent_density", "latent_gaussian", "reconstruction") for per_t in (False, True)]


@pytest.mark.parametrize("anomaly_score, per_timestamp", KINDS)
def test_fused_score_equals_the_modules(anomaly_score, per_timestamp):
    det = _autoencoder(anomaly_score, per_timestamp)
    fused = det._fused_score(CPU, torch.float32)
    windows = torch.from_numpy(_series(120, 1).astype(np.float32)).unfold(0, 16, 5).transpose(1, 2)
    with torch.inference_mode():
        want = det._score_model(windows)  # no plan held on this thread: the modules
        got = fused.score(windows)
    assert got.shape == want.shape == ((windows.shape[0], 16) if per_timestamp else (windows.shape[0],))
    torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL)
    if anomaly_score == "latent_density":
        assert fused.held.held  # the reference codes are held packed for the density kernel


def test_no_fused_score_where_it_must_not_run():
    det = _autoencoder("latent_density", False)
    assert det._fused_score(Dispatch.build("eager", "cpu"), torch.float32) is None
    rows = get_detector("autoencoder")(epochs=1, min_steps=0, verbose=False, device="cpu", seed=0).fit(
        np.random.default_rng(0).normal(size=(64, 5)))
    assert rows._fused_score(CPU, torch.float32) is None  # an MLP: tabular rows


@pytest.mark.parametrize("anomaly_score, per_timestamp", KINDS)
def test_stream_with_the_fused_score_equals_the_batch_call(anomaly_score, per_timestamp):
    det = _autoencoder(anomaly_score, per_timestamp)
    x = _series(120, 3)
    want = det.causal_decision_function(x, delay=3, stride=1)
    s = det.stream(delay=3, stride=1)
    assert isinstance(s._scope.values.get(HELD_KEY), type(det._fused_score(CPU, torch.float32)))
    rng = np.random.default_rng(4)
    got, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 4))
        got.append(s.update(x[i:i + n]).scores)
        i += n
    got.append(s.flush().scores)
    np.testing.assert_allclose(np.concatenate(got), want, rtol=RTOL, atol=RTOL)


def test_the_eager_backend_scores_with_the_modules(monkeypatch):
    """The eager backend is the reference: no fused score in its calls or streams; the compiled backend's scores
    equal it to rounding (decision_function, every anomaly score)."""
    det = _autoencoder("latent_density", False)
    x = _series(90, 6)
    fused = det.decision_function(x)
    monkeypatch.setenv("GENAD_FAST_BACKEND", "eager")
    assert det.stream()._scope.values.get(HELD_KEY) is None
    np.testing.assert_allclose(fused, det.decision_function(x), rtol=RTOL, atol=RTOL)


def test_fused_score_is_built_once_per_stream_and_used_per_update(monkeypatch):
    """And once per decision_function call."""
    import genad_fast.detectors.autoencoder as ae_module
    det = _autoencoder("latent_density", False)
    built, used = [], []
    real_init, real_score = ae_module.FusedWindowScore.__init__, ae_module.FusedWindowScore.score

    def init(self, *a, **k):
        built.append(1)
        real_init(self, *a, **k)

    def score(self, batch):
        used.append(batch.shape[0])
        assert get_thread_value(det, HELD_KEY) is self
        return real_score(self, batch)

    monkeypatch.setattr(ae_module.FusedWindowScore, "__init__", init)
    monkeypatch.setattr(ae_module.FusedWindowScore, "score", score)
    x = _series(60, 5)
    s = det.stream(stride=1)
    for i in range(60):
        s.update(x[i:i + 1])
    s.update(x[:20])  # a longer chunk: its 20 windows in one batch, through the same held score
    assert built == [1] and used == [1] * (60 - 16 + 1) + [20]
    assert get_thread_value(det, HELD_KEY) is None  # nothing left installed between updates
    built.clear()
    det.decision_function(x)
    assert built == [1]


@pytest.mark.parametrize("objective", ["one-class", "soft-boundary"])
def test_deep_svdd_fused_score_equals_the_modules(objective):
    from genad_fast.detectors.deep_svdd import MAX_FUSED_ROWS
    det = get_detector("deep_svdd")(window=16, stride=2, hidden=(8, 16), epochs=2, pretrain_epochs=1, min_steps=0,
                                    objective=objective, batch_norm=True, verbose=False, device="cpu",
                                    seed=0).fit(_series(400, 0))
    fused = det._fused_score(CPU, torch.float32)
    assert fused is not None and (fused.radius_sq is not None) == (objective == "soft-boundary")
    windows = torch.from_numpy(_series(300, 1).astype(np.float32)).unfold(0, 16, 5).transpose(1, 2)
    assert windows.shape[0] > MAX_FUSED_ROWS
    with torch.inference_mode():
        for b in (1, MAX_FUSED_ROWS - 1, windows.shape[0]):  # fused, and the modules from MAX_FUSED_ROWS on
            torch.testing.assert_close(fused.score(windows[:b]), det.model_.scores(windows[:b]), rtol=RTOL, atol=RTOL)
    x = _series(90, 6)
    s = det.stream(delay=2, stride=1)
    assert isinstance(s._scope.values.get(HELD_KEY), type(fused))  # held by the stream
    got = np.concatenate([s.update(x[i:i + 3]).scores for i in range(0, 90, 3)] + [s.flush().scores])
    np.testing.assert_allclose(got, det.causal_decision_function(x, delay=2, stride=1), rtol=RTOL, atol=RTOL)
    assert det._fused_score(Dispatch.build("eager", "cpu"), torch.float32) is None


@pytest.mark.parametrize("anomaly_score, per_timestamp", [("recon_prob", False), ("elbo", True)])
def test_vae_scores_through_the_plan_equal_the_modules(anomaly_score, per_timestamp):
    det = get_detector("vae")(window=16, stride=2, hidden=(8, 16), epochs=2, min_steps=0, n_samples=4,
                              anomaly_score=anomaly_score, per_timestamp=per_timestamp, batch_norm=True,
                              verbose=False, device="cpu", seed=0).fit(_series(400, 0))
    nets = det._fused_score(CPU, torch.float32)
    assert isinstance(nets, ConvNetPlan)
    windows = torch.from_numpy(_series(120, 1).astype(np.float32)).unfold(0, 16, 5).transpose(1, 2)
    with torch.inference_mode():
        want = det._score_model(windows)  # no call open on this thread: the modules
        got = det.model_.scores(windows, anomaly_score, 4, per_timestamp=per_timestamp, nets=nets,
                                noise_seed=stream_seed(det.seed_, "latent-samples"))
    torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL)
    x = _series(90, 6)
    s = det.stream(delay=2, stride=1)
    assert isinstance(s._scope.values.get(HELD_KEY), ConvNetPlan)  # held by the stream
    got = np.concatenate([s.update(x[i:i + 3]).scores for i in range(0, 90, 3)] + [s.flush().scores])
    np.testing.assert_allclose(got, det.causal_decision_function(x, delay=2, stride=1), rtol=RTOL, atol=RTOL)
    assert det._fused_score(Dispatch.build("eager", "cpu"), torch.float32) is None
