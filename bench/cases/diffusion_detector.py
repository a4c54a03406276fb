"""DiffusionDetector.decision_function: the tiled fused pipeline against an eager windowed pipeline.

Both run the same trained denoiser with the same reverse chain (reconstruct mode: noise to t0 = 10 of 50
quadratic-schedule steps, 2 DDPM steps back, 1 draw) over a C = 25 series:

- ``eager``: what a user writes following ImDiffusion's test loop — windows of 100 at stride 50, each window
  noised and denoised on its own (a batch of windows per network call, ``torch.randn_like`` noise,
  ``a*x + b*eps + c*z`` updates), per-window squared errors averaged over channels, then averaged over the two
  windows covering each timestamp (:func:`genad_fast.series.windows_to_timestamps`);
- ``cpu``: ``det.decision_function`` with the fused CPU ops: tiles of 1024 timestamps plus a halo of the
  receptive radius (4 per network call), every timestamp denoised once per step, the denoiser run as its
  inference plan (:mod:`genad_fast.nn.diffusion.plan`: time-major shifted GEMMs, step constants folded
  once per step), Philox noise and the step update in one fused op, the error accumulated into the score
  buffer.

Sizes run from 10^4 to 10^6 timestamps so the throughput column shows whether the cost per timestamp stays
flat. The network is a cheap setting (32 residual channels, 6 layers, receptive field 37) so the whole case
runs in a few minutes on 2 cores; it is briefly trained (timing does not depend on how well). Outputs use
different noise (per window against per timestamp), so they are checked for shape, finiteness and scale only.

``python -m bench.cases.diffusion_detector`` prints where the time of the fused pipeline goes (network against
step update, from ``torch.profiler`` ranges), the bfloat16 option's time, and writes the cost-per-timestamp
curve of both pipelines (wall clock and process CPU time) to ``bench/results/diffusion_curve_<threads>t.png``.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from bench.registry import EAGER, Case, Provider, Size, Unavailable, register
from bench.timing import best_of

C = 25
WINDOW, STRIDE = 100, 50            # ImDiffusion's test setting
BATCH_WINDOWS = 256
SETTING = dict(window=WINDOW, residual_channels=32, n_layers=6, dilation_cycle=4, n_steps=50,
               schedule="quadratic", noise_level=10, denoise_steps=2, sampler="ddpm", n_draws=1,
               # The reverse chain's raw errors, which is what the eager windows compute: not the multiscale ratios
               # (check() compared their mean with the raw errors' and failed, 13x) nor the window loss.
               score_reduction="point", elbo_levels=0)
SIZES = [Size("1e4x25", {"n": 10_000}), Size("1e5x25", {"n": 100_000}), Size("1e6x25", {"n": 1_000_000})]
SMOKE = Size("1000x25-smoke", {"n": 1000})


def make_data(n: int, seed: int = 0) -> np.ndarray:
    """A [n, 25] float32 series: three incommensurate sinusoids mixed into 25 channels plus 10 % noise.

    The mixing matrix is the same for every ``seed`` (only the phases and the noise change): training and
    scored series come from one process, so the scored series is normal data for the fitted model. (With a
    mix drawn per seed, the scored channels left the training range and the detector's clip of x̂_0 to that
    range, rightly, scored them ~5x higher than the unclipped eager pipeline.)"""
    mix = np.random.default_rng(12345).normal(size=(3, C)).astype(np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    latent = np.stack([np.sin(2 * np.pi * t / p + rng.uniform(0, 6.3)) for p in (64.0, 27.5, 198.0)], 1)
    x = latent.astype(np.float32) @ mix
    x += 0.1 * rng.standard_normal(size=x.shape, dtype=np.float32)
    return x


@functools.lru_cache(maxsize=1)
def fitted():
    from genad_fast.detectors.diffusion import DiffusionDetector

    det = DiffusionDetector(epochs=2, val_fraction=0.0, stride=5, seed=0, verbose=False, **SETTING)
    return det.fit(make_data(6000, seed=1))


def setup(size: Size, device: torch.device) -> dict:
    if device.type != "cpu":
        raise Unavailable("the detector benchmark runs on the CPU here")
    return {"det": fitted(), "data": make_data(size["n"], seed=2)}


def windowed_eager_scores(det, data: np.ndarray, window: int = WINDOW, stride: int = STRIDE,
                          batch: int = BATCH_WINDOWS, generator: torch.Generator | None = None) -> torch.Tensor:
    """The eager windowed pipeline: every window of ``window_starts(T, W, S)`` noised to t0 and denoised on its own."""
    from genad_fast.series import window_starts, windows_to_timestamps

    z = det.normalizer_.transform(torch.as_tensor(data, dtype=torch.float32))
    T = z.shape[0]
    schedule = det._noise_schedule()
    taus = schedule.timesteps(det._noise_level() - 1, det._chain_length())
    a0, b0 = (float(v) for v in schedule.add_noise_coefficients([taus[0]]))
    steps = [tuple(float(v) for v in schedule.step_coefficients(det.sampler, [taus[j]], [taus[j + 1]], det.eta))
             for j in range(len(taus) - 1)]
    starts = window_starts(T, window, stride)
    errors = []
    model = det.model_
    with torch.inference_mode():
        for i in range(0, starts.numel(), batch):
            idx = starts[i:i + batch, None] + torch.arange(window)
            x0 = z[idx].transpose(1, 2)                                     # [b, C, W]
            err = torch.zeros(x0.shape[0], window)
            for _ in range(det.n_draws):
                x = a0 * x0 + b0 * torch.randn(x0.shape, generator=generator)
                for j, (a, b, c) in enumerate(steps):
                    with torch.profiler.record_function("eager.network"):
                        eps = model(x, torch.tensor([taus[j]]))
                    with torch.profiler.record_function("eager.step"):
                        x = a * x + b * eps + c * torch.randn(x.shape, generator=generator)
                err += ((x0 - x) ** 2).mean(1) / det.n_draws
            errors.append(err)
    return windows_to_timestamps(torch.cat(errors), T, window, stride, reduce="mean")


def _eager(inputs: dict):
    gen = torch.Generator().manual_seed(0)
    return lambda: windowed_eager_scores(inputs["det"], inputs["data"], generator=gen)


def _fused(backend: str, matmul_dtype: str = "float32"):
    def build(inputs: dict):
        det = inputs["det"]

        def run():
            det.set_params(backend=backend, matmul_dtype=matmul_dtype)
            try:
                return torch.as_tensor(det.decision_function(inputs["data"]))
            finally:
                det.set_params(backend=None, matmul_dtype="float32")
        return run
    return build


def check(ref, out) -> str | None:
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        return f"expected scores of shape {tuple(ref.shape)}, got {getattr(out, 'shape', type(out))}"
    if not bool(torch.isfinite(out).all()):
        return "non-finite scores"
    ratio = float(out.double().mean() / ref.double().mean())
    if not 0.5 < ratio < 2.0:  # same model, same chain: the mean error must agree in scale
        return f"mean score {ratio:.3g}x the eager pipeline's"
    return None


PROVIDERS = {
    EAGER: Provider(EAGER, "cpu", _eager),
    "cpu": Provider("cpu", "cpu", _fused("cpu")),
}

if __name__ != "__main__":  # run as a script, the package import has registered the case already
    register(Case(
        "diffusion_detector", "decision_function", SIZES, setup, PROVIDERS,
        items=lambda s: s["n"], item_unit="timestamp", check=check, smoke=SMOKE,
        description="DiffusionDetector reconstruct scores, C=25, 2 DDPM steps from t0=10, 1 draw: tiled fused "
                    "pipeline vs eager windows of 100 at stride 50"))


# ---- profile, bfloat16 and the cost curve (python -m bench.cases.diffusion_detector) ---------------------------
def profile_breakdown(n: int = 100_000, pipeline: str = "cpu") -> dict:
    """Seconds of one decision_function (``pipeline`` "cpu": fused tiled; "eager": windowed) in the network, the
    step update and the rest (torch.profiler ranges)."""
    from torch.profiler import ProfilerActivity, profile

    inputs = setup(Size("p", {"n": n}), torch.device("cpu"))
    run = _fused("cpu")(inputs) if pipeline == "cpu" else _eager(inputs)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    spans = {e.key: e.cpu_time_total * 1e-6 for e in prof.key_averages()
             if e.key.split(".")[0] in ("diffusion", "eager") or e.key.startswith("genad_fast::")}
    spans["total"] = sum(e.self_cpu_time_total for e in prof.key_averages()) * 1e-6
    return spans


def main(argv: list[str] | None = None) -> None:
    import argparse
    import os
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"setting: {SETTING}; threads {torch.get_num_threads()}; load average {os.getloadavg()}")
    det = fitted()
    print(f"receptive field {det.model_.receptive_field}, halo {det.model_.receptive_radius}, "
          f"tiles {det.tile_size} x {det.tile_batch} per call")
    for pipeline, prefix in (("cpu", "diffusion"), ("eager", "eager")):
        spans = profile_breakdown(pipeline=pipeline)
        net, step = spans.get(f"{prefix}.network", 0.0), spans.get(f"{prefix}.step", 0.0)
        print(f"{pipeline:5s} pipeline, T=1e5: total {spans['total']:.3f}s, network {net:.3f}s, step update "
              f"{step:.3f}s ({100 * step / max(net + step, 1e-12):.1f}% of the loop)"
              + "".join(f", {k} {v:.4f}s" for k, v in spans.items() if k.startswith("genad_fast::")))
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        inputs = setup(Size("c", {"n": n}), torch.device("cpu"))
        reps = 3 if n <= 100_000 else 1
        fused = best_of(_fused("cpu")(inputs), reps)
        bf16 = best_of(_fused("cpu", "bfloat16")(inputs), reps)
        eager = best_of(_eager(inputs), reps)
        rows.append((n, fused, bf16, eager))
        us = lambda v: 1e6 * v / n  # noqa: E731
        print(f"T={n:>8d} us/timestamp wall (cpu): fused {us(fused[0]):6.2f} ({us(fused[1]):6.2f})  "
              f"bf16 {us(bf16[0]):6.2f} ({us(bf16[1]):6.2f})  eager windowed {us(eager[0]):6.2f} ({us(eager[1]):6.2f})"
              f"  speed-up wall {eager[0] / fused[0]:4.2f}x cpu {eager[1] / fused[1]:4.2f}x, "
              f"bf16 wall {eager[0] / bf16[0]:4.2f}x cpu {eager[1] / bf16[1]:4.2f}x", flush=True)
    out = Path(__file__).resolve().parents[1] / "results"
    out.mkdir(exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, which, title in ((axes[0], 0, "wall clock"), (axes[1], 1, "process CPU time")):
        for i, label in ((3, "eager, windows 100 / stride 50"), (1, "fused tiled, float32"),
                         (2, "fused tiled, bf16 products")):
            ax.plot([r[0] for r in rows], [1e6 * r[i][which] / r[0] for r in rows], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("timestamps T (C = 25)")
        ax.set_title(title)
    axes[0].set_ylabel("µs per timestamp")
    axes[0].set_ylim(bottom=0)
    axes[0].legend()
    fig.suptitle(f"DiffusionDetector.decision_function, {torch.get_num_threads()} thread(s)")
    fig.tight_layout()
    path = out / f"diffusion_curve_{torch.get_num_threads()}t.png"
    fig.savefig(path, dpi=120)
    print("curve:", path)


if __name__ == "__main__":
    main()
