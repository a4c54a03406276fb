"""Fit time of every deep detector at its defaults (issue #16 point 3): eager against the project's training path.

Reference tasks: a 10,000 × 8 series (the training part of ``make_series(T=20000, C=8)``; detectors without a
default window get the evaluation runner's, one dominant period clipped to [8, 256]) and 20,000 × 32 tabular rows
(``make_tabular``). DiffusionDetector models series only. The first size of each case is a smoke size (a small
series or table, one epoch, a few search iterations) for ``--quick`` and ``bench/test_bench_cases.py``.

Providers, one whole ``fit`` per call (the training, and what fit does after it: the training scores and the
threshold):

- ``eager``: the eager backend and the training loop as it was before issue #16: every stride-1 window each
  epoch (``train_stride=1``) and float32 products (``train_dtype="float32"``), where the detector has them, the
  per-tensor Adam loop, early stopping's patience of at least ``patience`` epochs (FlowDetector now counts it in
  steps), and the defaults a detector changed for speed (FlowDetector: batch 256, lr 1e-3);
- ``cpu``: the detector's defaults (the fused CPU kernels where the detector uses them, windows sampled per epoch,
  FlowDetector's batches of 64 windows on a series, bfloat16 products where ``train_dtype="auto"`` picks them:
  FlowDetector on AMX, DiffusionDetector on AMX/AVX512-BF16).

Items are training samples (rows or timestamps), so the throughput column reads samples/s. Fits at the reference
sizes take minutes: time them with one repeat (``python -m bench --cases 'fit_time:*' --min-repeats 1 --budget 0``)
or with ``python -m bench.cases.fit_time``, which runs the providers once each, alternating, each fit in a fresh
process, and prints wall and process CPU seconds (the steadier figure on a shared machine), the machine's CPU and
load. A fresh process per fit, so that nothing one fit leaves in the process (the allocator's heap and thresholds,
which glibc adapts to the blocks a process has freed; caches) carries into the next; the harness's runs share one.
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from bench.registry import EAGER, Case, Provider, Size, Unavailable, register

#: The deep (gradient-trained) detectors, by registry name; "dte" where it is registered.
DEEP = ("flow", "diffusion", "vae", "autoencoder", "deep_svdd", "anogan", "fanogan", "dte")
#: The old training loop (before issue #16), for detectors that declare these parameters.
OLD_TRAINING = {"train_stride": 1, "train_dtype": "float32"}
#: ... and the old defaults that a detector changed with it (FlowDetector: batches of 256 at lr 1e-3).
OLD_DEFAULTS = {"flow": {"batch_size": 256, "lr": 1e-3}}
#: ... and the old loop's class-level switches (the per-tensor Adam loop, epochs of at least 8 batches, the patience
#: of at least ten epochs).
OLD_CLASS_ATTRS = {"_fused_adam": False, "_min_epoch_steps": 8, "_patience_in_steps": False}
#: Smoke sizes: one epoch (and a short latent search), without the detectors' minimum number of optimiser steps,
#: so that a fit takes seconds.
SMOKE = {"epochs": 1, "encoder_epochs": 1, "pretrain_epochs": 1, "iterations": 5, "min_steps": 0}

SIZES = {
    "series": [Size("series-600x4-smoke", {"kind": "series", "n": 600, "d": 4, "smoke": True}),
               Size("series-10000x8", {"kind": "series", "n": 10_000, "d": 8, "smoke": False})],
    "tabular": [Size("tabular-1000x8-smoke", {"kind": "tabular", "n": 1000, "d": 8, "smoke": True}),
                Size("tabular-20000x32", {"kind": "tabular", "n": 20_000, "d": 32, "smoke": False})],
}


@functools.lru_cache(maxsize=4)
def _data(kind: str, n: int, d: int) -> np.ndarray:
    from genad_fast.data.synthetic import make_series, make_tabular

    if kind == "series":
        return make_series(T=2 * n, C=d, seed=0).train
    return make_tabular(n_train=n, n_test=10, n_features=d, seed=0).train


def _params(name: str, size: Size) -> dict:
    """The detector's parameters for ``size``: defaults, a window for series, the smoke overrides."""
    from genad_fast.detectors import get_detector
    from genad_fast.evaluation.runner import estimate_period

    cls = get_detector(name)
    names = set(cls._get_param_names())
    default_window = cls._param_defaults().get("window")
    params = {"verbose": False, "seed": 0}
    if size["kind"] == "series" and default_window is None:
        train = _data("series", size["n"], size["d"])
        params["window"] = 16 if size["smoke"] else \
            int(np.clip(estimate_period(train), 8, max(8, min(256, train.shape[0] // 3))))
    if size["kind"] == "tabular" and default_window is not None:
        raise Unavailable(f"{cls.__name__} models series only")
    if size["smoke"]:
        params.update({k: v for k, v in SMOKE.items() if k in names})
    return params


def setup_for(name: str):
    def setup(size: Size, device: torch.device) -> dict:
        if device.type != "cpu":
            raise Unavailable("the fit-time cases run on the CPU")
        from genad_fast.detectors import get_detector

        return {"name": name, "cls": get_detector(name), "params": _params(name, size),
                "data": _data(size["kind"], size["n"], size["d"])}
    return setup


def _fit(old: bool):
    def build(inputs: dict):
        cls, params = inputs["cls"], dict(inputs["params"])
        if old:
            names = set(cls._get_param_names())
            params.update({k: v for k, v in OLD_TRAINING.items() if k in names}, backend="eager")
            params.update(OLD_DEFAULTS.get(inputs["name"], {}))
            attrs = {k: v for k, v in OLD_CLASS_ATTRS.items() if hasattr(cls, k)}
            cls = type(cls.__name__, (cls,), attrs) if attrs else cls  # the same detector, the old loop

        def run():
            return cls(**params).fit(inputs["data"])
        return run
    return build


PROVIDERS = {EAGER: Provider(EAGER, "cpu", _fit(old=True)), "cpu": Provider("cpu", "cpu", _fit(old=False))}


def _registered() -> list[str]:
    try:
        from genad_fast.detectors import detector_names
    except Exception:  # the harness must list the other cases when the package does not import
        return []
    known = set(detector_names())
    return [name for name in DEEP if name in known]


def _items(size: Size) -> float:
    return float(size["n"])


def _sizes(name: str) -> list[Size]:
    """Smoke sizes first (``--quick`` and the pytest smoke test take the first), then the reference tasks."""
    kinds = ("series",) if name == "diffusion" else ("series", "tabular")
    smoke = [SIZES[k][0] for k in kinds]
    return smoke[:1] + [SIZES[k][1] for k in kinds] + smoke[1:]


if __name__ not in ("__main__", "__mp_main__"):  # not when run as the script, or as its spawned child
    for _name in _registered():
        register(Case("fit_time", _name, _sizes(_name), setup_for(_name), PROVIDERS, items=_items,
                      item_unit="sample", description=f"{_name} fit at its defaults: eager and the old training "
                      "loop against the project's training path"))


# ---- one alternating run, wall and CPU seconds (python -m bench.cases.fit_time) ------------------------------
def _fit_once(name: str, label: str, provider: str, threads: int | None) -> dict:
    """One fit of ``provider`` in this (fresh) process: wall and process CPU seconds, epochs, samples per epoch."""
    if threads:
        torch.set_num_threads(threads)
    size = next(s for sizes in SIZES.values() for s in sizes if s.label == label)
    run = PROVIDERS[provider].build(setup_for(name)(size, torch.device("cpu")))
    wall, cpu = time.perf_counter(), time.process_time()
    det = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    h = getattr(det, "history_", None)
    return {"wall_s": wall, "cpu_s": cpu, "epochs": len(h.train_loss) if h else None,
            "n_train_per_epoch": h.n_train if h else None}


def main(argv: list[str] | None = None) -> int:
    from bench.machine import load_average, machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detectors", default=",".join(DEEP), help="comma-separated registry names")
    ap.add_argument("--sizes", default="series-10000x8,tabular-20000x32", help="size labels (smoke ones too)")
    ap.add_argument("--quick", action="store_true", help="the smoke sizes")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads first")
    ap.add_argument("--json", default=None, help="append one JSON line per fit to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = {s[0].label for s in SIZES.values()} if args.quick else set(args.sizes.split(","))
    info = machine_info()
    print(f"# {info.get('cpu_model')}, {torch.get_num_threads()} threads, load {load_average()}")
    print(f"{'detector':<12} {'size':<22} {'provider':<8} {'wall s':>9} {'cpu s':>9} {'samples/s':>10}")
    known = _registered()
    for name in [n for n in args.detectors.split(",") if n in known]:
        for size in [s for s in _sizes(name) if s.label in labels]:
            try:
                setup_for(name)(size, torch.device("cpu"))  # only to skip what the case cannot fit here
            except Unavailable as exc:
                print(f"{name:<12} {size.label:<22} unavailable: {exc}")
                continue
            for provider in (EAGER, "cpu"):
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    out = pool.submit(_fit_once, name, size.label, provider, args.threads).result()
                wall, cpu = out["wall_s"], out["cpu_s"]
                print(f"{name:<12} {size.label:<22} {provider:<8} {wall:9.1f} {cpu:9.1f} {size['n'] / wall:10.0f}",
                      flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({"detector": name, "size": size.label, "provider": provider,
                                            "load": os.getloadavg()[0]} | out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
