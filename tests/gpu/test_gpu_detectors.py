"""The detectors end to end on the pair's device and backend: they fit and score without error, give finite scores,
the same scores as the eager backend on the same device, and — where the scoring draws nothing from the device's
RNG — the scores of the same fitted model moved to the CPU. Plus the CUDA-graph paths: DiffusionDetector's
denoising loop captured and replayed (its docstring says it can be; nothing in the library captures it yet), and
AnoGAN's latent search with ``cuda_graph=True`` (segments captured, recaptured after a compaction).

Small models and few epochs: these check the plumbing on the device, not detection quality (tests/test_*_detector.py
do that). Float32 throughout; TF32 is off on the GPU (conftest.py), so CPU and GPU products differ only by
summation order."""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch

import genad_fast
import gpu_support as gs
from genad_fast.datasets import make_series, make_tabular
from genad_fast.detectors.anogan import AnoGANDetector
from genad_fast.detectors.diffusion import DiffusionDetector
from genad_fast.detectors.flow import FlowDetector
from genad_fast.nn.diffusion.sampler import target_masks
from genad_fast.nn.gan.search import latent_search

FLOW = dict(window=16, n_steps=4, hidden=32, n_blocks=1, epochs=3, verbose=False, seed=0)
# receptive field 15 (dilations 1, 2, 4); tiles of 256 in pairs: several network calls per step
DIFFUSION = dict(window=32, stride=4, residual_channels=16, n_layers=3, dilation_cycle=3, embedding_dim=16,
                 n_steps=10, epochs=2, batch_size=64, n_draws=2, tile_size=256, tile_batch=2, verbose=False, seed=0)
DIFFUSION_MODES = {"reconstruct": dict(noise_level=6, denoise_steps=3), "impute": dict(denoise_steps=3)}
ANOGAN = dict(window=8, hidden=(32,), critic_hidden=(32,), epochs=3, min_steps=1, iterations=30, tol=0.0, verbose=False, seed=0)
# Same device, fused vs eager ops: the networks are identical, the ops agree to rounding (noise: a few ulps).
# The absolute part is relative to the largest score (scores near 0 are differences of larger terms).
SAME_DEVICE = dict(rtol=1e-4, atol=1e-6)
# The model moved to the CPU: float32 products in another summation order, through a few layers and steps.
CROSS_DEVICE = dict(rtol=2e-3, atol=1e-5)


def _assert_scores_close(got, want, rtol, atol):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


@pytest.fixture(scope="module")
def series():
    return make_series(T=3000, C=4, period=32, seed=3)


@contextlib.contextmanager
def backend_as(det, backend):
    before = det.backend
    det.set_params(backend=backend)
    try:
        yield det
    finally:
        det.set_params(backend=before)


def _on_cpu(det, tmp_path):
    """The same fitted model on the CPU, through a model file (as a user moves it), scoring with the CPU ops."""
    path = tmp_path / f"{type(det).__name__}.pt"
    det.save(str(path))
    cpu = genad_fast.load(str(path), map_location="cpu", backend=gs.cpu_backend())
    assert cpu.device_.type == "cpu" and cpu.device == "cpu"
    return cpu


def _check_scores(pair, det, data, tmp_path, cross_device=True, name=""):
    scores = det.decision_function(data)
    assert scores.shape == (data.shape[0],) and np.isfinite(scores).all()
    with backend_as(det, "eager"):
        eager = det.decision_function(data)
    _assert_scores_close(scores, eager, **SAME_DEVICE)
    gs.record(f"{name}[{pair}]", max_rel_vs_eager=float(np.max(np.abs(scores - eager) / np.abs(eager).clip(1e-12))))
    if cross_device:
        cpu = _on_cpu(det, tmp_path).decision_function(data)
        _assert_scores_close(scores, cpu, **CROSS_DEVICE)
        gs.record(f"{name}[{pair}]", max_rel_vs_cpu_copy=float(np.max(np.abs(scores - cpu) / np.abs(cpu).clip(1e-12))))
    return scores


# ---- FlowDetector ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow(pair, series):
    return FlowDetector(device=pair.device, backend=pair.backend, **FLOW).fit(series.train)


def test_flow_detector(pair, flow, series, tmp_path):
    assert flow.device_.type == pair.device
    assert next(flow.model_.parameters()).device.type == pair.device
    _check_scores(pair, flow, series.test, tmp_path, name="FlowDetector")
    labels = flow.predict(series.test)
    assert set(np.unique(labels)) <= {0, 1}


def test_flow_detector_tabular(pair, tmp_path):
    data = make_tabular(n_train=2000, n_test=500, n_features=6, seed=1)
    det = FlowDetector(device=pair.device, backend=pair.backend, **{**FLOW, "window": None}).fit(data.train)
    _check_scores(pair, det, data.test, tmp_path, name="FlowDetector tabular")


# ---- DiffusionDetector -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diffusion(pair, series):
    return {mode: DiffusionDetector(mode=mode, device=pair.device, backend=pair.backend, **extra, **DIFFUSION)
            .fit(series.train) for mode, extra in DIFFUSION_MODES.items()}


@pytest.mark.parametrize("mode", DIFFUSION_MODES)
def test_diffusion_detector(pair, diffusion, series, mode, tmp_path):
    det = diffusion[mode]
    assert det.device_.type == pair.device
    # noise from the Philox stream, the same on every backend and device: the CPU copy must agree
    _check_scores(pair, det, series.test, tmp_path, name=f"DiffusionDetector {mode}")


def _chain_inputs(det, sampler, pair, mode, T=700, K=2, seed=0):
    """A [B, C, T] state and, for impute, the observed series and mask, as the detector's scoring builds them."""
    g = torch.Generator().manual_seed(seed)
    C = det.n_features_in_
    schedule = det._noise_schedule()
    if mode == "reconstruct":
        taus = schedule.timesteps(det._noise_level() - 1, det._chain_length())
        state = torch.randn(K, C, T, generator=g).to(pair.dev)
        return state, taus, None, None
    taus = schedule.timesteps(det.n_steps - 1, det._chain_length())
    x = torch.randn(C, T, generator=g).to(pair.dev)
    targets = target_masks(C, T, 5, det._mask_kinds(), max(1, det.window // det.mask_split), pair.dev,
                           sampler.dispatch)
    B = targets.shape[0] * K
    mask = (1.0 - targets).repeat_interleave(K, dim=0)
    return torch.randn(B, C, T, generator=g).to(pair.dev), taus, x.unsqueeze(0).expand(B, C, T), mask


@pytest.mark.parametrize("mode", DIFFUSION_MODES)
def test_diffusion_denoising_loop_replays_in_a_cuda_graph(pair, diffusion, mode):
    """The sampling loop makes no host-device synchronisation and has static shapes: captured once, replayed with
    the same input, and replayed after new data is copied into the input buffer, it gives the eager loop's x̂_0."""
    det = diffusion[mode]
    sampler = det._sampler()  # the detector's reverse process (nn/diffusion/sampler.py), with its dispatch
    state, taus, observed, mask = _chain_inputs(det, sampler, pair, mode)
    seed, offset = 2**40 + 3, 12345
    plan = sampler.plan_chain(state, taus)
    with torch.no_grad():
        expected = sampler.run_chain(plan, state.clone(), seed, offset, observed, mask)
        static = state.clone()
        replay = gs.captured(lambda: sampler.run_chain(plan, static, seed, offset, observed, mask), pair.dev)
        got = replay().clone()
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        gs.record(f"DiffusionDetector {mode} graph replay[{pair}]", max_abs_diff=float((got - expected).abs().max()))
        new_state = torch.randn(state.shape, generator=torch.Generator().manual_seed(9)).to(pair.dev)
        expected_new = sampler.run_chain(plan, new_state.clone(), seed, offset, observed, mask)
        static.copy_(new_state)
        torch.testing.assert_close(replay(), expected_new, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(expected, expected_new)


# ---- AnoGANDetector and its latent search ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def anogan(pair, series):
    return AnoGANDetector(device=pair.device, backend=pair.backend, **ANOGAN).fit(series.train[:1500])


def _close_search_scores(got, want, what):
    """Sign sub-gradients make the search sensitive to rounding where x ≈ G(z): a sign that flips moves that row's
    path a little. Most rows must agree to rounding, every row to 1%."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    rel = np.abs(got - want) / np.abs(want).clip(1e-12)
    gs.record(what, max_rel=float(rel.max()), median_rel=float(np.median(rel)))
    assert np.median(rel) <= 1e-5, f"median relative difference {np.median(rel):.2e}"
    np.testing.assert_allclose(got, want, rtol=1e-2)


def test_anogan_detector(pair, anogan, series):
    """Fused vs eager ops on the same device (the search starts from the device's RNG, so a CPU copy would start
    elsewhere: the cross-device check is the latent search's own, below, from a given start)."""
    assert anogan.device_.type == pair.device
    test = series.test[:800]
    scores = anogan.decision_function(test)
    assert scores.shape == (test.shape[0],) and np.isfinite(scores).all()
    with backend_as(anogan, "eager"):
        eager = anogan.decision_function(test)
    _close_search_scores(scores, eager, f"AnoGANDetector vs eager[{pair}]")


def _search_inputs(det, pair, B=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = det.generator_
    with torch.no_grad():
        z_true = torch.randn(B, G.latent_dim, generator=g).to(pair.dev)
        x = G(z_true)
        x = x + 0.1 * torch.randn(x.shape, generator=g).to(pair.dev)
    z0 = torch.randn(B, G.latent_dim, generator=g).to(pair.dev)
    return x, z0


@pytest.mark.parametrize("shrink", [0.95, 0.0])
def test_latent_search_in_cuda_graphs(pair, anogan, shrink):
    """cuda_graph=True (segments of check_every iterations captured and replayed; after a compaction the smaller
    working set is captured anew) gives the plain loop's result. tol = 1e-2 stops about a tenth of the rows
    within 80 iterations (measured on the CPU), so shrink = 0.95 compacts the working set and shrink = 0 keeps
    the stopped rows masked."""
    x, _ = _search_inputs(anogan, pair)
    kw = dict(iterations=80, tol=1e-2, check_every=5, shrink=shrink, backend=pair.backend)
    G, Cr = anogan.generator_, anogan.critic_
    plain = latent_search(G, Cr, x, rng=torch.Generator(device=pair.dev).manual_seed(5), **kw)
    graph = latent_search(G, Cr, x, rng=torch.Generator(device=pair.dev).manual_seed(5), cuda_graph=pair.is_cuda,
                          **kw)
    assert torch.isfinite(graph.loss).all()
    stopped = int((plain.iterations < 80).sum())
    gs.record(f"latent_search graph shrink={shrink}[{pair}]", rows_stopped_early=stopped, rows=x.shape[0])
    _close_search_scores(graph.loss.cpu(), plain.loss.cpu(), f"latent_search graph vs plain shrink={shrink}[{pair}]")
    assert (graph.iterations - plain.iterations).abs().max() <= kw["check_every"]  # at most one check apart


def test_latent_search_cuda_graph_needs_cuda(pair, anogan):
    if pair.is_cuda:
        pytest.skip("checks the error on CPU tensors")
    x, _ = _search_inputs(anogan, pair, B=4)
    with pytest.raises(ValueError, match="cuda_graph=True needs"):
        latent_search(anogan.generator_, anogan.critic_, x, iterations=2, cuda_graph=True)


def test_latent_search_matches_the_cpu(pair, anogan):
    """From a given start z0 (no RNG involved), the search on the device and on a CPU copy of the networks."""
    x, z0 = _search_inputs(anogan, pair)
    kw = dict(iterations=30, z0=z0, lam=0.1, tol=0.0)
    got = latent_search(anogan.generator_, anogan.critic_, x, backend=pair.backend, **kw)
    G, Cr = copy.deepcopy(anogan.generator_).cpu(), copy.deepcopy(anogan.critic_).cpu()
    cpu = latent_search(G, Cr, x.cpu(), backend=gs.cpu_backend(), **{**kw, "z0": z0.cpu()})
    _close_search_scores(got.loss.cpu(), cpu.loss, f"latent_search vs cpu copy[{pair}]")


# ---- KDE and kNN detectors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kde", "knn"])
@pytest.mark.parametrize("window", [None, 8])
def test_reference_set_detectors(pair, series, name, window, tmp_path):
    cls = pytest.importorskip(f"genad_fast.detectors.{name}", reason=f"genad_fast.detectors.{name} is not in this "
                              f"tree").__dict__["KDEDetector" if name == "kde" else "KNNDetector"]
    if window is None:
        data = make_tabular(n_train=3000, n_test=800, n_features=6, seed=2)
        train, test = data.train, data.test
    else:
        train, test = series.train, series.test
    det = cls(window=window, device=pair.device, backend=pair.backend, verbose=False).fit(train)
    assert np.isfinite(det.decision_scores_).all()
    _check_scores(pair, det, test, tmp_path, name=f"{cls.__name__} window={window}")
