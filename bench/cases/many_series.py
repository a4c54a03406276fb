"""Many series in one call (issue #14): one fitted detector scoring N series of T timestamps x 8 channels.

Providers (the same fitted detector, the same data):

- ``loop``: a Python loop over ``decision_function``, one series per call (the reference: outputs are checked
  against it, and ``speedup_vs_eager`` is the speed-up over it);
- ``packed``: one ``decision_function`` call on the list of the N series (their windows, or tiles, share the
  model's batches: :mod:`genad_fast.detectors._collection`);
- ``one_long``: one series of N·T timestamps, the same work in one piece: the throughput to approach.

Goals (issue #14): packed >= 3x the loop, and >= 80 % of one_long's throughput. On the CPU the loop already runs
near one_long's throughput (its per-call cost is small next to a series' work), so the first goal is where a call's
fixed cost dominates: on a GPU, where every small call of the loop waits on kernel launches. The case runs on
either device (``--devices cuda``: the detectors are fitted and score there). Cases ``many_series:flow``
(FlowDetector, window 16, stride 1) and ``many_series:diffusion`` (DiffusionDetector, its defaults: window 100,
tiles of 1,024, 2 draws, 10 DDPM steps back from t0 = 10 of 50), both otherwise at their defaults, trained for
one or two epochs in setup (outside the timing: timing does not depend on how well). The full size is 2,000
series x 5,000 timestamps (hours on 2 cores for the diffusion detector); the scaled ones (``--sizes``) keep the
series length and scale the count, and the first (``--quick``) runs in seconds. Items: timestamps.

``python -m bench.cases.many_series [--series 200] [--length 5000] [--repeats 3] [--threads 1]`` prints the
ratios of the three providers in one run (best of ``repeats``, wall and process CPU time), with the CPU and the
load average. On a shared machine use ``--threads 1``: two OpenMP threads on oversubscribed cores spin-wait at
every parallel region, which inflates the per-call cost (and the CPU time) of small calls several times.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from bench.registry import Case, Provider, Size, Unavailable, register
from bench.timing import best_of

C = 8
FULL = Size("2000x5000x8", {"n": 2000, "T": 5000})
#: Per case; the first runs in seconds (--quick, and bench/test_bench_cases.py). Diffusion costs about 1,000x
#: more per timestamp than the flow (10 steps x 2 draws of a 64-channel, 8-layer network), so its scaled sizes
#: are smaller; 20 x 500 shows series shorter than one tile (1,024 + 2 halos), 20 x 5,000 longer ones.
SIZES = {"flow": [Size("4x200x8", {"n": 4, "T": 200}), Size("200x5000x8", {"n": 200, "T": 5000}), FULL],
         "diffusion": [Size("4x200x8", {"n": 4, "T": 200}), Size("20x500x8", {"n": 20, "T": 500}),
                       Size("20x5000x8", {"n": 20, "T": 5000}), FULL]}
DETECTORS = {
    "flow": ("flow", dict(window=16, epochs=2)),
    "diffusion": ("diffusion", dict(epochs=1, stride=4)),  # stride: fewer training windows; scoring is tiled
}


def make_series(T: int, seed: int) -> np.ndarray:
    """A [T, 8] float32 series: three sinusoids of incommensurate periods mixed into 8 channels, 10 % noise. The
    mix is the same for every seed (one process: the scored series are normal data for the fitted model)."""
    mix = np.random.default_rng(12345).normal(size=(3, C)).astype(np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float64)
    latent = np.stack([np.sin(2 * np.pi * t / p + rng.uniform(0, 6.3)) for p in (64.0, 27.5, 198.0)], 1)
    return (latent.astype(np.float32) @ mix + 0.1 * rng.standard_normal(size=(T, C), dtype=np.float32))


@functools.lru_cache(maxsize=4)
def fitted(kind: str, device: str = "cpu"):
    from genad_fast.detectors import get_detector

    name, params = DETECTORS[kind]
    det = get_detector(name)(seed=0, verbose=False, val_fraction=0.0, device=device, **params)
    return det.fit(make_series(2000, seed=1))


@functools.lru_cache(maxsize=1)
def _data(n: int, T: int) -> tuple[list[np.ndarray], np.ndarray]:
    series = [make_series(T, seed=100 + i) for i in range(n)]
    return series, np.concatenate(series)


def setup_for(kind: str):
    def setup(size: Size, device: torch.device) -> dict:
        if device.type == "cuda" and not torch.cuda.is_available():
            raise Unavailable("no CUDA device is visible")
        series, long = _data(size["n"], size["T"])
        return {"det": fitted(kind, str(device)), "series": series, "long": long, "device": device.type}
    return setup


class DeviceScores(list):
    """The loop's or the packed call's score arrays, with the device that computed them (for :func:`check`)."""

    def __init__(self, scores, device: str):
        super().__init__(scores)
        self.device = device


PROVIDERS = {
    "loop": Provider("loop", "any", lambda i: lambda: DeviceScores(
        [i["det"].decision_function(s) for s in i["series"]], i["device"])),
    "packed": Provider("packed", "any", lambda i: lambda: DeviceScores(i["det"].decision_function(i["series"]),
                                                                       i["device"])),
    "one_long": Provider("one_long", "any", lambda i: lambda: i["det"].decision_function(i["long"])),
}
#: On a GPU the packed call's products have other shapes than the loop's, so cuBLAS may sum in another order:
#: packed equals the loop within this relative tolerance there (bitwise on the CPU).
CUDA_RTOL = 1e-4


def check(ref, out) -> str | None:
    """packed must equal the loop, series by series (bitwise on the CPU, within :data:`CUDA_RTOL` on a GPU);
    one_long scores another series (the windows across the joins are new), so only its length and finiteness are
    checked."""
    if isinstance(out, np.ndarray):
        n = sum(r.shape[0] for r in ref)
        if out.shape != (n,) or not np.isfinite(out).all():
            return f"one_long: expected {n} finite scores, got {out.shape}"
        return None
    if len(out) != len(ref):
        return f"{len(out)} score arrays for {len(ref)} series"
    rtol = CUDA_RTOL if getattr(out, "device", "cpu") == "cuda" else 0.0
    for i, (r, o) in enumerate(zip(ref, out)):
        if o.shape != r.shape or not np.allclose(o, r, rtol=rtol, atol=0.0):
            err = float(np.abs(o - r).max()) if o.shape == r.shape else float("nan")
            return f"series {i}: scores differ from the loop's (max abs {err:.3g})"
    return None


if __name__ != "__main__":  # run as a script, the package import has registered the cases already
    for _kind in DETECTORS:
        register(Case("many_series", _kind, SIZES[_kind], setup_for(_kind), PROVIDERS,
                      items=lambda s: s["n"] * s["T"], item_unit="timestamp", check=check, reference="loop",
                      description=f"{_kind} detector on N series x T x 8: loop over decision_function vs one "
                                  f"call on the collection vs one series of N*T"))


def main(argv: list[str] | None = None) -> None:
    import argparse
    import os

    from genad_fast.provenance import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--length", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--detectors", default="flow,diffusion")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the detectors are fitted and score")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{cpu_model()}, {len(os.sched_getaffinity(0))} cpus, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()}")
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}")
    size = Size(f"{args.series}x{args.length}x{C}", {"n": args.series, "T": args.length})
    n_items = args.series * args.length
    for kind in args.detectors.split(","):
        inputs = setup_for(kind)(size, torch.device(args.device))
        problem = check(PROVIDERS["loop"].build(inputs)(), PROVIDERS["packed"].build(inputs)())
        times = {name: best_of(p.build(inputs), args.repeats) for name, p in PROVIDERS.items()}
        print(f"{kind} {size.label}: " + ", ".join(f"{name} {w:.2f} s wall ({n_items / w:,.0f} timestamps/s), "
                                                  f"{c:.2f} s cpu" for name, (w, c) in times.items()))
        for basis in (0, 1):  # wall, process CPU
            loop, packed, long = (times[k][basis] for k in ("loop", "packed", "one_long"))
            print(f"   {('wall', 'cpu')[basis]}: packed / loop {loop / packed:.2f}x, packed / one_long throughput "
                  f"{100 * long / packed:.0f} %")
        same = "bitwise" if args.device == "cpu" else f"within rtol {CUDA_RTOL:g}"
        print(f"   packed equals the loop: {problem or f'yes ({same})'}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
