"""DiffusionDetector end to end: tiled scoring equals the whole series at once, no host sync in the sampling
loop, detection quality in both modes, bf16, backends, determinism, model files, errors."""
import contextlib
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import genad_fast
from genad_fast import ops
from genad_fast.datasets import make_series
from genad_fast.detectors import get_detector
from genad_fast.detectors.diffusion import DiffusionDetector
from genad_fast.nn.diffusion import sampler as sampler_module
from genad_fast.nn.diffusion.sampler import SeriesSampler

# receptive field 15 (dilations 1, 2, 4), 10 diffusion steps: seconds, not minutes
TINY = dict(window=32, stride=4, residual_channels=8, n_layers=3, dilation_cycle=3, embedding_dim=16, n_steps=10,
            epochs=2, batch_size=64, verbose=False)


@pytest.fixture(scope="module")
def small():
    return make_series(T=1600, C=3, period=32, seed=5)


@pytest.fixture(scope="module")
def fitted(small):
    """One tiny detector per mode, few reverse steps and two draws (noise and masks both matter)."""
    out = {}
    for mode in ("reconstruct", "impute"):
        extra = dict(noise_level=6, denoise_steps=3) if mode == "reconstruct" else dict(denoise_steps=3)
        out[mode] = DiffusionDetector(mode=mode, n_draws=2, **extra, **TINY).fit(small.train)
    return out


def _whole_series_scores(det: DiffusionDetector, series: np.ndarray) -> np.ndarray:
    """The score as the module docstring defines it, written plainly: the whole series in one network call per
    step (no tiles), per-sample step indices, the Philox noise of the state tensor [B, C, T] at the documented
    offsets, plain tensor arithmetic for the steps and the error."""
    z = det.normalizer_.transform(torch.as_tensor(series, dtype=torch.float32))
    x = z.t().contiguous()  # [C, T]
    C, T = x.shape
    seed, mask_seed = (int(v) for v in det._numpy_rng("score-noise").integers(0, 2 ** 63, size=2))
    schedule = det._noise_schedule()
    K = det.n_draws
    if det.mode == "reconstruct":
        taus = schedule.timesteps(det._noise_level() - 1, det._chain_length())
        target = None
        B = K
        a, b = (float(v[0]) for v in schedule.add_noise_coefficients([taus[0]]))
    else:
        taus = schedule.timesteps(det.n_steps - 1, det._chain_length())
        kinds = []
        for kind in det.masks:
            m = ((torch.arange(T) // (det.window // det.mask_split)) % 2).float().expand(C, T) if kind == "grid" \
                else (ops.randn((C, T), mask_seed, 0) > 0).float()
            kinds += [m, 1 - m]
        target = torch.stack(kinds).repeat_interleave(K, 0)
        B = target.shape[0]
        a, b = 0.0, 1.0
    q = math.ceil(B * C * T / 4)
    state = a * x + b * ops.randn((B, C * T), seed, 0).view(B, C, T)
    with torch.no_grad():
        for j in range(len(taus) - 1):
            t = torch.full((B,), taus[j])
            if target is None:
                eps = det.model_(state, t)
            else:
                eps = det.model_(state, x.expand(B, C, T), 1 - target, t)
            a, b, c = (float(v[0]) for v in schedule.step_coefficients(det.sampler, [taus[j]], [taus[j + 1]], det.eta))
            state = a * state + b * eps + c * ops.randn((B, C * T), seed, q * (j + 1)).view(B, C, T)
    # x̂_0 clipped, per channel, to the range of the normalised training series
    state = torch.clamp(state, det.train_min_.view(1, -1, 1), det.train_max_.view(1, -1, 1))
    err = (x - state) ** 2
    if target is None:
        return err.mean(1).mean(0).double().numpy()
    return ((err * target).mean(1).sum(0) / (K * len(det.masks))).double().numpy()


def _window_reduced(errors: np.ndarray, W: int, reduce: str = "mean") -> np.ndarray:
    """score_reduction="window", written out: window j scores mean(e[j:j+W]); t combines the windows covering it."""
    T = errors.shape[0]
    means = np.array([errors[j:j + W].mean() for j in range(T - W + 1)])
    combine = {"mean": np.mean, "max": np.max}[reduce]
    return np.array([combine(means[max(0, t - W + 1):min(t, T - W) + 1]) for t in range(T)])


@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
def test_tiled_scoring_equals_the_whole_series_at_once(mode, fitted, small):
    det = fitted[mode]
    test = small.test[:400]
    points = _whole_series_scores(det, test)
    r = det.model_.receptive_radius
    try:
        # one tile; window by window (tile = training window), one or several per network call; tiles shorter
        # than the halo; the raw per-timestamp errors and their window reduction (mean and max). Without the window
        # denoising loss, which does not tile (test_window_loss.py checks it).
        det.set_params(elbo_levels=0)
        for tile, per_call, how, reduce in ((10 ** 6, 8, "point", "mean"), (det.window, 1, "window", "mean"),
                                            (det.window, 3, "multiscale", "mean"), (5, 8, "window", "max")):
            det.set_params(tile_size=tile, tile_batch=per_call, score_reduction=how, reduce=reduce)
            expected = {"point": points, "window": _window_reduced(points, det.window_, reduce),
                        "multiscale": np.maximum(points / float(det.error_scales_[0]),
                                                 _window_reduced(points, det.window_, reduce)
                                                 / float(det.error_scales_[1]))}[how]
            np.testing.assert_allclose(det.decision_function(test), expected, rtol=2e-4, atol=1e-6,
                                       err_msg=f"tile_size={tile}, tile_batch={per_call}, halo={r}, {how}, {reduce}")
    finally:
        det.set_params(tile_size=1024, tile_batch=4, score_reduction="multiscale", reduce="mean", elbo_levels=8)


@pytest.mark.parametrize("T, tile, halo", [(400, 32, 7), (46, 32, 7), (47, 32, 7), (100, 5, 7), (1000, 1, 0),
                                           (83, 20, 10)])
def test_tiles_partition_the_series_with_equal_reads(T, tile, halo):
    tiles = sampler_module.tiles(T, tile, halo)
    owned = [t for s, e, _, _ in tiles for t in range(s, e)]
    assert owned == list(range(T))
    assert len({hi - lo for _, _, lo, hi in tiles}) == 1
    for s, e, lo, hi in tiles:
        assert 0 <= lo <= s < e <= hi <= T
        assert lo == 0 or s - lo >= halo
        assert hi == T or hi - e >= halo
        assert len(tiles) == 1 or e - s <= tile + halo


def test_halo_must_cover_the_receptive_radius(fitted, small, monkeypatch):
    """The halo is exactly the receptive radius: one timestamp less and tile borders show (so the test above has
    teeth)."""
    det = fitted["reconstruct"]
    test = small.test[:300]
    det.set_params(tile_size=40, score_reduction="point")  # the raw errors: a window mean would blur the borders
    real = sampler_module.tiles
    try:
        good = det.decision_function(test)
        monkeypatch.setattr(sampler_module, "tiles", lambda T, tile, halo: real(T, tile, halo - 1))
        short = det.decision_function(test)
    finally:
        monkeypatch.undo()
        det.set_params(tile_size=1024, tile_batch=4, score_reduction="multiscale")
    assert not np.allclose(short, good, rtol=1e-4, atol=1e-6)


@contextlib.contextmanager
def _no_host_reads():
    """Make every way of reading a tensor value on the host raise."""
    names = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def forbid(name):
        def f(*args, **kwargs):
            raise AssertionError(f"host-device sync: Tensor.{name} inside the sampling loop")
        return f

    saved_nonzero = torch.nonzero
    try:
        for n in names:
            setattr(torch.Tensor, n, forbid(n))
        torch.nonzero = forbid("torch.nonzero")
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        torch.nonzero = saved_nonzero


@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
def test_sampling_loop_reads_nothing_on_the_host(mode, fitted, small, monkeypatch):
    det = fitted[mode]
    real = SeriesSampler.run_chain

    def guarded(*args, **kwargs):
        with _no_host_reads():
            return real(*args, **kwargs)

    monkeypatch.setattr(SeriesSampler, "run_chain", guarded)
    try:
        scores = det.decision_function(small.test[:300])
    finally:
        monkeypatch.undo()
    assert np.isfinite(scores).all()
    with pytest.raises(AssertionError, match="host-device sync"), _no_host_reads():  # the guard itself works
        bool(torch.ones(1))


def test_scores_are_per_timestamp_and_nonnegative(fitted, small):
    for det in fitted.values():
        s = det.decision_function(small.test)
        assert s.shape == (small.test.shape[0],) and s.dtype == np.float64
        assert (s >= 0).all()
        assert det.decision_scores_.shape == (small.train.shape[0],)


def test_same_seed_same_scores(small):
    kwargs = dict(TINY, noise_level=4, epochs=1)
    a = DiffusionDetector(seed=3, **kwargs).fit(small.train).decision_function(small.test[:200])
    b = DiffusionDetector(seed=3, **kwargs).fit(small.train).decision_function(small.test[:200])
    c = DiffusionDetector(seed=4, **kwargs).fit(small.train).decision_function(small.test[:200])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_more_draws_average_more_noise(fitted, small):
    """K draws are averaged: K = 2 gives other scores than K = 1, on the same scale."""
    det = fitted["reconstruct"]
    try:
        det.set_params(n_draws=1)
        one = det.decision_function(small.test[:400])
    finally:
        det.set_params(n_draws=2)
    two = det.decision_function(small.test[:400])
    assert not np.allclose(one, two)
    assert 0.5 < two.mean() / one.mean() < 2.0


def test_save_load_round_trip(tmp_path, fitted, small):
    for mode, det in fitted.items():
        path = tmp_path / f"diffusion-{mode}.pt"
        det.save(path)
        loaded = genad_fast.load(path, map_location="cpu")
        assert isinstance(loaded, DiffusionDetector) and loaded.mode == mode
        np.testing.assert_array_equal(loaded.decision_function(small.test[:300]),
                                      det.decision_function(small.test[:300]))


def test_registered():
    assert get_detector("diffusion") is DiffusionDetector


def _cpu_ops_available() -> bool:
    return any(b.name == "cpu" and b.available for b in genad_fast.backends())


@pytest.mark.skipif(not _cpu_ops_available(), reason="the compiled CPU ops are not built")
def test_fused_and_eager_backends_agree(fitted, small):
    for det in fitted.values():
        det.set_params(backend="cpu")
        fused = det.decision_function(small.test[:500])
        det.set_params(backend="eager")
        try:
            eager = det.decision_function(small.test[:500])
        finally:
            det.set_params(backend=None)
        np.testing.assert_allclose(fused, eager, rtol=1e-4, atol=1e-6)



@pytest.mark.skipif(not _cpu_ops_available(), reason="the compiled CPU ops are not built")
def test_fused_backend_runs_the_inference_plan_with_the_modules_scores(fitted, small, monkeypatch):
    """The fused backend runs the denoiser as its inference plan; the scores equal those of the same fused
    pipeline with the modules (odd tiles, several per call, both modes); the eager backend keeps the modules."""
    for det in fitted.values():
        det.set_params(backend="cpu", tile_size=77, tile_batch=3)
        try:
            assert det._sampler().fused_network
            planned = det.decision_function(small.test[:500])
            monkeypatch.setattr(SeriesSampler, "fused_network", property(lambda self: False))
            modules = det.decision_function(small.test[:500])
            monkeypatch.undo()
            det.set_params(backend="eager")
            assert not det._sampler().fused_network
            det.set_params(backend="cpu", matmul_dtype="bfloat16")
            assert not det._sampler().fused_network  # bfloat16 products: the modules under autocast
        finally:
            det.set_params(backend=None, tile_size=1024, tile_batch=4, matmul_dtype="float32")
        np.testing.assert_allclose(planned, modules, rtol=1e-5, atol=1e-7)


# ---- errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    (dict(mode="forecast"), "mode must be"),
    (dict(sampler="euler"), "sampler must be"),
    (dict(schedule="sigmoid"), "schedule must be"),
    (dict(noise_level=0), "noise_level"),
    (dict(noise_level=11), "noise_level"),
    (dict(noise_level=4, denoise_steps=5), r"denoise_steps must be an int in \[1, noise_level=4\]"),
    (dict(mode="impute", denoise_steps=11), r"denoise_steps .* n_steps=10"),
    (dict(eta=1.5), "eta"),
    (dict(masks=("grid", "grid")), "masks"),
    (dict(masks=("stripes",)), "masks"),
    (dict(matmul_dtype="float16"), "matmul_dtype"),
    (dict(n_draws=0), "n_draws"),
    (dict(tile_size=0), "tile_size"),
    (dict(window=None), "window must be an int"),
    # n_layers and dilation_cycle set explicitly: the stack is not fitted to the window, and cannot fit in it
    (dict(window=10), r"window=10 is shorter than the smallest receptive field the denoiser's parameters allow "
                      r"\(15 timestamps: n_layers=3, dilation_cycle=3"),
])
def test_bad_parameters(params, match, small):
    with pytest.raises(ValueError, match=match):
        DiffusionDetector(**{**TINY, **params}).fit(small.train)


def test_bad_series(fitted, small):
    det = fitted["reconstruct"]
    with pytest.raises(ValueError, match="fewer than window=32"):
        det.decision_function(small.test[:20])
    bad = small.test[:100].copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        det.decision_function(bad)
    with pytest.raises(ValueError, match="2 channels"):
        det.decision_function(small.test[:100, :2])
    det.set_params(window=8)  # a window shorter than the network reaches: the receptive field is checked too
    try:
        with pytest.raises(ValueError, match=r"fewer than the denoiser's receptive field \(15\)"):
            det.decision_function(small.test[:10])
    finally:
        det.set_params(window=32)


# ---- quality (trains real models: slow) ---------------------------------------------------------------------
QUALITY = dict(window=64, residual_channels=32, n_layers=5, dilation_cycle=5, epochs=15, batch_size=128, lr=2e-3,
               verbose=False)


@pytest.fixture(scope="module")
def quality_series():
    return make_series(T=8000, C=4, period=48, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
def test_finds_injected_anomalies(mode, quality_series):
    """Paper defaults (quadratic schedule, 50 steps, DDPM; reconstruct from t0 = N/5, impute the full chain);
    AUROC >= 0.9 on point, contextual and collective anomalies. bf16 products keep it within 0.005."""
    det = DiffusionDetector(mode=mode, **QUALITY).fit(quality_series.train)
    scores = det.decision_function(quality_series.test)
    auroc = roc_auc_score(quality_series.labels, scores)
    auprc = average_precision_score(quality_series.labels, scores)
    print(f"\n{mode}: AUROC {auroc:.4f} AUPRC {auprc:.4f}")
    assert auroc >= 0.9
    det.set_params(matmul_dtype="bfloat16")
    bf16 = roc_auc_score(quality_series.labels, det.decision_function(quality_series.test))
    print(f"{mode} bf16: AUROC {bf16:.4f}")
    assert abs(bf16 - auroc) <= 0.005


def test_model_file_from_before_score_reduction_keeps_scoring_raw_points(fitted, small, tmp_path):
    """A file written before ``score_reduction`` existed holds no such parameter: it loads with "point", the
    scores it was fitted and thresholded with, not the new default's window means."""
    from genad_fast.detectors._io import seal

    det = fitted["reconstruct"]
    det.save(tmp_path / "new.pt")
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    assert payload["params"]["score_reduction"] == "multiscale"
    del payload["params"]["score_reduction"]
    del payload["state"]["error_scales"]
    seal(payload)
    torch.save(payload, tmp_path / "old.pt")
    old = genad_fast.load(tmp_path / "old.pt")
    assert old.score_reduction == "point"
    test = small.test[:300]
    det.set_params(score_reduction="point")
    try:
        np.testing.assert_array_equal(old.decision_function(test), det.decision_function(test))
    finally:
        det.set_params(score_reduction="multiscale")
    new = genad_fast.load(tmp_path / "new.pt")
    assert new.score_reduction == "multiscale"
    np.testing.assert_array_equal(new.decision_function(test), det.decision_function(test))
    old.set_params(score_reduction="multiscale")  # the old file has no training scales: refit, says the error
    with pytest.raises(ValueError, match="error_scales_.*refit"):
        old.decision_function(test)


def test_multiscale_scales_are_the_training_errors_99th_percentiles(fitted, small):
    """error_scales_ come from the fit's own pass over the training series (decision_scores_ are its scores):
    the 99th percentiles of the point errors, of the window errors and of the window denoising loss there; the
    training scores are the largest ratio, so 1-3 % of them exceed 1. A quantile's own points score 1 up to float32
    rounding (a window's loss is every point of its window: 8 tied points on Zen 2 scored 1 + 3e-8), so "exceed"
    means beyond the 1e-4 the scores are compared to."""
    det = fitted["reconstruct"]
    det.set_params(score_reduction="point")
    try:
        points = det.decision_function(small.train)
    finally:
        det.set_params(score_reduction="multiscale")
    windowed = _window_reduced(points, det.window_)
    normalized = det._apply_normalizer(torch.as_tensor(small.train, dtype=torch.float32))
    loss = det._window_losses([normalized])[0].numpy()
    k = int(np.ceil(0.99 * points.size)) - 1
    q = [np.sort(v)[k] for v in (points, windowed, loss)]
    np.testing.assert_allclose(det.error_scales_.numpy(), q, rtol=1e-5)
    np.testing.assert_allclose(det.decision_scores_, np.maximum.reduce([points / q[0], windowed / q[1], loss / q[2]]),
                               rtol=1e-4)
    assert 0.01 <= float((det.decision_scores_ > 1.0 + 1e-4).mean()) <= 0.03


def test_multiscale_scores_stay_finite_at_the_scale_floor(fitted, small):
    """A training set reconstructed exactly gives quantiles of 0, floored at float32's tiny; the ratios are taken in
    float64, so a test error of any size is a large finite score, never inf (float32 would overflow above ~40)."""
    from genad_fast.detectors.diffusion import error_scales

    det = fitted["reconstruct"]
    kept = det.error_scales_
    det.error_scales_ = error_scales(0.0, 0.0, 0.0)
    try:
        scores = det.decision_function(small.test[:300])
    finally:
        det.error_scales_ = kept
    assert np.isfinite(scores).all() and scores.max() > 1e38
