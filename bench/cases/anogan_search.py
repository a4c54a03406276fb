"""AnoGAN's latent search: the fused batched search against the eager loops a user writes.

The setting of issue 5: an MLP generator 32 -> 128 -> 128 -> 64 and critic features 64 -> 128 -> 128
(the defaults of :class:`genad_fast.detectors.anogan.AnoGANDetector` with ``latent_dim=32`` on windows of
16 x 4 channels), trained by WGAN-GP on :func:`genad_fast.datasets.make_series` (T = 4000, C = 4), then
1024 test windows searched for 100 iterations (lam = 0.1, Adam lr 0.05), every provider from the same
starting codes z0 (one seeded draw), so their final losses agree up to float rounding.

Registered cases (``python -m bench --cases 'anogan_search:*'``):

- ``anogan_search:float32``: ``eager`` = a batched loop with ``torch.optim.Adam`` on z (autograd
  through G and f, the best loss per row kept); ``compile`` = ``torch.compile`` of that loop;
  ``cpu`` = :func:`genad_fast.nn.gan.search.latent_search` (hand-written backward, fused residual and
  masked-Adam ops), float32.
- ``anogan_search:bfloat16``: ``eager`` = the same float32 eager loop (the baseline of the goal),
  ``cpu`` = the fused search with bfloat16 products.

``python -m bench.cases.anogan_search`` measures what the harness cannot put in one table: the
one-sample-at-a-time loop (a subset, extrapolated), the plain-GEMM floor (the search's ten matrix
products per iteration alone), the AUROC of float32 against bfloat16, early stopping's time against
its tolerance (at the paper's 500 iterations), and f-AnoGAN's one-pass scoring against AnoGAN; it writes
``bench/results/anogan_search.json``. Thread count: whatever torch uses (``OMP_NUM_THREADS``); the JSON says.
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np
import torch

from bench.registry import COMPILE, EAGER, Case, Provider, Size, Unavailable, register
from bench.timing import best_of

N_SAMPLES, ITERATIONS, LR, LAM = 1024, 100, 0.05, 0.1
WINDOW, CHANNELS, LATENT = 16, 4, 32
EPOCHS = 30
MIN_STEPS = 1000                    # AnoGANDetector's default
SIZES = [Size(f"{N_SAMPLES}x{ITERATIONS}it",
              {"n": N_SAMPLES, "iterations": ITERATIONS, "epochs": EPOCHS, "min_steps": MIN_STEPS})]
#: The correctness smoke run: a generator trained for 2 epochs without the detector's minimum of 1,000 generator
#: steps (seconds instead of minutes), 64 windows, 10 iterations.
SMOKE = Size("64x10it-smoke", {"n": 64, "iterations": 10, "epochs": 2, "min_steps": 0})


@functools.lru_cache(maxsize=2)
def fitted(epochs: int = EPOCHS, iterations: int = ITERATIONS, min_steps: int = MIN_STEPS):
    """The trained detector (G 32-128-128-64, critic features 64-128-128) and the series.

    ``iterations`` is the detector's own search length, which its fit spends on the training windows' scores."""
    from genad_fast.datasets import make_series
    from genad_fast.detectors.anogan import AnoGANDetector

    data = make_series(T=4000, C=CHANNELS, period=32, seed=3)
    det = AnoGANDetector(window=WINDOW, latent_dim=LATENT, epochs=epochs, min_steps=min_steps,
                         init="encoder", encoder_epochs=min(20, epochs),
                         iterations=iterations, search_lr=LR, lam=LAM, tol=0.0, seed=0, verbose=False)
    det.fit(data.train)
    return det, data


def test_windows(det, data, n: int) -> torch.Tensor:
    """The first ``n`` stride-1 windows of ``data``'s test series, normalised by ``det``, flattened: [n, 64]."""
    from genad_fast.series import sliding_windows

    z = det.normalizer_.transform(torch.as_tensor(data.test))
    return sliding_windows(z, WINDOW, 1)[:n].reshape(n, -1).contiguous()


def setup(size: Size, device: torch.device) -> dict:
    if device.type != "cpu":
        raise Unavailable("the latent-search benchmark runs on the CPU here")
    det, data = fitted(size["epochs"], size["iterations"], size["min_steps"])
    n = size["n"]
    z0 = torch.randn(n, LATENT, generator=torch.Generator().manual_seed(1))
    return {"G": det.generator_, "D": det.critic_, "x": test_windows(det, data, n), "z0": z0,
            "iterations": size["iterations"]}


# ---- the providers -----------------------------------------------------------------------------------------

def eager_search(G, D, x, z0, iterations: int, lr: float = LR, lam: float = LAM) -> torch.Tensor:
    """What a user writes: all rows at once, torch.optim.Adam on z, autograd through G and f; best loss per row."""
    fx = D.features(x)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best = torch.full((x.shape[0],), math.inf)
    for _ in range(iterations):
        gx = G(z)
        loss = (1 - lam) * (x - gx.flatten(1)).abs().sum(1) + lam * (fx - D.features(gx)).abs().sum(1)
        best = torch.minimum(best, loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    return best


def one_sample_search(G, D, x, z0, iterations: int, lr: float = LR, lam: float = LAM) -> torch.Tensor:
    """The loop of the original AnoGAN code and its ports: one sample at a time."""
    return torch.cat([eager_search(G, D, x[i:i + 1], z0[i:i + 1], iterations, lr, lam) for i in range(x.shape[0])])


def fused_search(G, D, x, z0, iterations: int, matmul_dtype=None, tol: float = 0.0, backend: str = "cpu",
                 lr: float = LR, lam: float = LAM):
    from genad_fast.nn.gan.search import latent_search

    return latent_search(G, D, x, iterations=iterations, lam=lam, lr=lr, z0=z0, tol=tol,
                         matmul_dtype=matmul_dtype, backend=backend)


def _eager(inputs: dict):
    return functools.partial(eager_search, inputs["G"], inputs["D"], inputs["x"], inputs["z0"], inputs["iterations"])


def _compiled(inputs: dict):
    torch._dynamo.reset()
    fn = torch.compile(eager_search, dynamic=False)
    return functools.partial(fn, inputs["G"], inputs["D"], inputs["x"], inputs["z0"], inputs["iterations"])


def _fused(matmul_dtype=None):
    def build(inputs: dict):
        def run():
            return fused_search(inputs["G"], inputs["D"], inputs["x"], inputs["z0"], inputs["iterations"],
                                matmul_dtype=matmul_dtype).loss
        return run
    return build


def _loss_check(max_mean_rel: float, max_rel: float):
    """Final losses agree: the sign sub-gradients make trajectories chaotic, so rounding (a different order of
    sums) moves single rows a little; the mean relative difference stays tiny."""
    def check(ref, out) -> str | None:
        if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
            return f"expected losses of shape {tuple(ref.shape)}, got {getattr(out, 'shape', type(out))}"
        rel = ((out.double() - ref.double()).abs() / ref.double().abs().clamp_min(1e-12))
        if not bool(torch.isfinite(rel).all()):
            return "non-finite losses"
        if rel.mean().item() > max_mean_rel or rel.max().item() > max_rel:
            return (f"final losses differ from eager's: mean relative difference {rel.mean().item():.2e}, "
                    f"max {rel.max().item():.2e}")
        return None
    return check


# Run as ``python -m bench.cases.anogan_search``, this file is imported twice (as a case of bench.cases, and as
# __main__): register the cases once.
if __name__ != "__main__":
    register(Case(
        "anogan_search", "float32", SIZES, setup,
        {EAGER: Provider(EAGER, "cpu", _eager), COMPILE: Provider(COMPILE, "cpu", _compiled),
         "cpu": Provider("cpu", "cpu", _fused())},
        items=lambda s: s["n"], item_unit="sample", check=_loss_check(1e-3, 5e-2), smoke=SMOKE,
        description="AnoGAN latent search, 1024 samples x 100 Adam iterations, G 32-128-128-64, f 64-128-128"))

    register(Case(
        "anogan_search", "bfloat16", SIZES, setup,
        {EAGER: Provider(EAGER, "cpu", _eager), "cpu": Provider("cpu", "cpu", _fused(torch.bfloat16))},
        items=lambda s: s["n"], item_unit="sample", check=_loss_check(2e-2, 2e-1), smoke=SMOKE,
        description="the same search with bfloat16 products (fused) against the float32 eager loop"))


# ---- the figures of issue 5 (python -m bench.cases.anogan_search) ------------------------------------------

def _time(fn, repeats: int = 5) -> float:
    return best_of(fn, repeats)[0]


def gemm_floor(G, D, n: int, iterations: int, dtype=torch.float32):
    """The search's matrix products alone: per iteration the 5 forward and 5 backward products of
    [n, in] x [in, out] (G's three layers, f's two), into preallocated outputs, nothing else."""
    from genad_fast.nn.gan.search import linear_stack

    weights = [layer.weight.detach().to(dtype) for layer in linear_stack(G.net) + linear_stack(D.body)]
    fwd = [w.t().contiguous() for w in weights]
    bwd = [w.contiguous() for w in weights]
    outs = [torch.empty(n, w.shape[1], dtype=dtype) for w in fwd]
    grads = [torch.empty(n, w.shape[0], dtype=dtype) for w in fwd]
    z = torch.randn(n, weights[0].shape[1]).to(dtype)

    def run():
        for _ in range(iterations):
            h = z
            for w, o in zip(fwd, outs):
                torch.mm(h, w, out=o)
                h = o
            g = outs[-1]
            for w, o in zip(reversed(bwd), reversed(grads)):
                torch.mm(g, w, out=o)
                g = o
    flops = 2 * 2 * n * iterations * sum(w.numel() for w in weights)
    return run, flops


def _auroc(det, data, **params) -> tuple[float, float, float]:
    """AUROC, AUPRC and seconds of ``decision_function`` on the whole test series (after one warm-up call
    on a short piece, so one-off costs such as oneDNN's kernel generation are not timed)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    saved = det.get_params()
    det.set_params(**params)
    try:
        det.decision_function(data.test[:64])
        t = time.perf_counter()
        scores = det.decision_function(data.test)
        elapsed = time.perf_counter() - t
    finally:
        det.set_params(**{k: saved[k] for k in params})
    return roc_auc_score(data.labels, scores), average_precision_score(data.labels, scores), elapsed


def _show(key: str, value) -> None:
    """Print a figure as soon as it is measured (a long report cut short still leaves what it measured)."""
    print(f"[{time.strftime('%H:%M:%S')}] {key}: {value}", flush=True)


def report(one_sample_subset: int = 16, repeats: int = 5, tolerances=(0.0, 1e-3, 3e-3, 1e-2, 3e-2)) -> dict:
    """Every figure of issue 5's benchmark list, in one run on this machine."""
    from genad_fast.detectors.anogan import FAnoGANDetector

    det, data = fitted()
    inputs = setup(SIZES[0], torch.device("cpu"))
    G, D, x, z0, it = inputs["G"], inputs["D"], inputs["x"], inputs["z0"], inputs["iterations"]
    n = x.shape[0]
    out: dict = {"threads": torch.get_num_threads(), "n": n, "iterations": it}

    eager_loss = eager_search(G, D, x, z0, it)
    fused_loss = fused_search(G, D, x, z0, it).loss
    rel = (fused_loss - eager_loss).abs() / eager_loss
    _show("trained; final loss check", "start")
    out["final_loss"] = {"eager_mean": eager_loss.mean().item(), "fused_mean": fused_loss.mean().item(),
                         "mean_rel_diff": rel.mean().item(), "max_rel_diff": rel.max().item()}

    t_eager = _time(lambda: eager_search(G, D, x, z0, it), repeats)
    t_fused = _time(lambda: fused_search(G, D, x, z0, it), repeats)
    t_bf16 = _time(lambda: fused_search(G, D, x, z0, it, matmul_dtype=torch.bfloat16), repeats)
    floor_run, flops = gemm_floor(G, D, n, it)
    t_floor = _time(floor_run, repeats)
    floor_bf16, _ = gemm_floor(G, D, n, it, torch.bfloat16)
    t_floor_bf16 = _time(floor_bf16, repeats)
    k = one_sample_subset
    t_one = _time(lambda: one_sample_search(G, D, x[:k], z0[:k], it), repeats=1) * n / k
    out["seconds"] = {"one_sample_extrapolated": t_one, "one_sample_subset": k, "eager_batched": t_eager,
                      "fused_float32": t_fused, "fused_bfloat16": t_bf16, "gemm_floor_float32": t_floor,
                      "gemm_floor_bfloat16": t_floor_bf16}
    out["gemm_gflops_float32"] = flops / t_floor / 1e9
    _show("seconds", out["seconds"])
    out["speedup"] = {"fused_vs_one_sample": t_one / t_fused, "fused_vs_eager": t_eager / t_fused,
                      "bf16_vs_eager_float32": t_eager / t_bf16}
    out["fraction_of_gemm_floor"] = {"float32": t_floor / t_fused, "bfloat16": t_floor_bf16 / t_bf16}

    # Early stopping: time against tolerance at the paper's 500 iterations (and the loss it costs), plus the
    # detector's AUROC over the whole test series at each tolerance.
    full500 = fused_search(G, D, x, z0, 500).loss
    out["early_stopping"] = []
    for tol in tolerances:
        t = _time(lambda: fused_search(G, D, x, z0, 500, tol=tol), max(1, repeats // 2))
        res = fused_search(G, D, x, z0, 500, tol=tol)
        auroc, auprc, t_det = _auroc(det, data, init="random", iterations=500, tol=tol)
        out["early_stopping"].append({
            "tol": tol, "iterations": 500, "seconds": t, "mean_iterations": res.iterations.double().mean().item(),
            "loss_increase_mean_rel": ((res.loss - full500) / full500).mean().item(),
            "detector_auroc": auroc, "detector_seconds": t_det})
        _show("early stopping", out["early_stopping"][-1])

    # Detector level: AUROC of float32 and bfloat16 products, AnoGAN (random and encoder start) and f-AnoGAN.
    auc = {}
    _show("final loss", out["final_loss"])
    auc["anogan_float32"] = _auroc(det, data, matmul_dtype="float32", init="random", iterations=it)
    auc["anogan_bfloat16"] = _auroc(det, data, matmul_dtype="bfloat16", init="random", iterations=it)
    auc["anogan_encoder_start_20it"] = _auroc(det, data, init="encoder", iterations=20)
    _show("detector AUROC/AUPRC/seconds so far", auc)
    fdet = FAnoGANDetector(window=WINDOW, latent_dim=LATENT, epochs=30, encoder_epochs=20, seed=0, verbose=False)
    fdet.fit(data.train)                # same seed and settings: the same GAN and encoder as det's
    auc["fanogan"] = _auroc(fdet, data)
    auc["fanogan_bfloat16"] = _auroc(fdet, data, matmul_dtype="bfloat16")
    n_test_windows = data.test.shape[0] - WINDOW + 1
    out["detector"] = {name: {"auroc": a, "auprc": p, "seconds": s, "windows_per_s": n_test_windows / s}
                       for name, (a, p, s) in auc.items()}
    return out


def main() -> None:
    import json
    import platform
    import subprocess
    from pathlib import Path

    t0 = time.perf_counter()
    out = report(repeats=3, tolerances=(0.0, 1e-3, 1e-2))
    out["machine"] = platform.processor() or platform.machine()
    out["load_average"] = list(__import__("os").getloadavg())
    try:
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        pass
    s, sp = out["seconds"], out["speedup"]
    print(f"threads {out['threads']}, {out['n']} samples x {out['iterations']} iterations, load {out['load_average']}")
    print(f"one-sample loop  {s['one_sample_extrapolated']:8.3f} s (extrapolated from {s['one_sample_subset']})")
    print(f"eager batched    {s['eager_batched']:8.3f} s")
    print(f"fused float32    {s['fused_float32']:8.3f} s   {sp['fused_vs_one_sample']:6.1f}x one-sample, "
          f"{sp['fused_vs_eager']:.2f}x eager, {100 * out['fraction_of_gemm_floor']['float32']:.0f}% of the GEMM "
          f"floor ({s['gemm_floor_float32']:.3f} s, {out['gemm_gflops_float32']:.0f} GFLOP/s)")
    print(f"fused bfloat16   {s['fused_bfloat16']:8.3f} s   {sp['bf16_vs_eager_float32']:.2f}x eager float32, "
          f"{100 * out['fraction_of_gemm_floor']['bfloat16']:.0f}% of the bf16 GEMM floor ({s['gemm_floor_bfloat16']:.3f} s)")
    fl = out["final_loss"]
    print(f"final losses: eager mean {fl['eager_mean']:.5f}, fused mean {fl['fused_mean']:.5f}, "
          f"relative difference mean {fl['mean_rel_diff']:.1e}, max {fl['max_rel_diff']:.1e}")
    for row in out["early_stopping"]:
        print(f"500 it, tol {row['tol']:7.0e}: {row['seconds']:.3f} s, mean iterations {row['mean_iterations']:6.1f}, "
              f"loss +{100 * row['loss_increase_mean_rel']:.2f}%; detector AUROC {row['detector_auroc']:.4f} "
              f"in {row['detector_seconds']:.2f} s")
    for name, row in out["detector"].items():
        print(f"{name:28s} AUROC {row['auroc']:.4f}  AUPRC {row['auprc']:.4f}  {row['seconds']:.2f} s "
              f"({row['windows_per_s']:.0f} windows/s, test series incl. aggregation)")
    path = Path(__file__).resolve().parents[1] / "results" / "anogan_search.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
