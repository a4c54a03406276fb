"""Data-parallel training (torchrun, DistributedDataParallel on gloo): samples/s per process, 2 processes against 1.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.ddp [--repeats 3] [--quick] [--detectors flow,diffusion]

Each run is ``torchrun --standalone --nproc_per_node=P -m genad_fast.distributed.ddp`` on the same 4 shards
(``.npy`` series of 8 channels), one intra-op thread per process (``OMP_NUM_THREADS=1``), the same global batch,
no validation split; the figure is training samples per second of optimiser-step time (the median epoch after
the first, which warms up), divided by the number of processes. Runs alternate 1 and 2 processes, ``--repeats``
times; the table gives the median and the spread.

How to read it. A 2-process run does the work of a 1-process run split in halves: each process computes the
gradient of half of every global batch, then the processes average the gradients (an all-reduce of every
parameter's gradient, 4 bytes each) and all take the same Adam step. On 2 cores each process has its own core,
so with free communication the per-process rate would equal the 1-process rate (2x the total); what is lost is
the all-reduce (gloo over TCP on loopback, about 2 x the gradient bytes per process per step), the waiting for
the slower process at every step, and the fixed per-step costs (optimiser step, Python) that every process pays
on half the samples. On a busy shared machine the second process also competes with others' work.

On real clusters: compute per step scales down with the number of processes while the all-reduce does not
(ring all-reduce moves about 2 x the gradient bytes per process, whatever the count), so the efficiency depends
on the ratio of gradient bytes to per-process compute. These detectors are small (10^4 - 10^6 parameters: a
few MB of gradients), so on GPUs with NCCL over NVLink/InfiniBand (tens to hundreds of GB/s, microseconds of
latency) the all-reduce is negligible next to a batch of windows, and scaling is close to linear until the
per-process batch gets too small to keep a GPU busy; raise ``batch_size`` with the process count. Gloo over
Ethernet between CPU nodes (1-25 GB/s, ~50 us latency per message) costs milliseconds per step for a MB-sized
gradient: keep per-process batches large (thousands of windows) for CPU clusters.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from genad_fast import provenance

#: detector -> (parameters, timestamps per shard): sizes that train an epoch in seconds on one core
CASES = {
    "flow": ({"window": 32, "stride": 2, "n_steps": 4, "hidden": 128, "batch_size": 256}, 8000),
    "diffusion": ({"window": 64, "stride": 4, "n_steps": 50, "residual_channels": 32, "n_layers": 4,
                   "batch_size": 64}, 8000),
    "autoencoder": ({"window": 32, "stride": 2, "batch_size": 256, "min_steps": 0}, 8000),
}
SHARDS, CHANNELS = 4, 8


def _shards(directory: str, timestamps: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for s in range(SHARDS):
        t = np.arange(timestamps)[:, None]
        x = np.sin(2 * np.pi * t / (50 + 7 * np.arange(CHANNELS))) + 0.3 * rng.normal(size=(timestamps, CHANNELS))
        paths.append(os.path.join(directory, f"shard-{s}.npy"))
        np.save(paths[-1], x.astype(np.float32))
    return paths


def _run(detector: str, params: dict, shards: list[str], nproc: int, directory: str) -> dict:
    report = os.path.join(directory, f"{detector}-{nproc}.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "genad_fast.distributed.ddp", "--detector", detector, *[a for p in shards for a in ("--input", p)],
           "--params", json.dumps(params), "--out", os.path.join(directory, f"{detector}-{nproc}.pt"),
           "--report", report]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{detector} with {nproc} process(es) failed:\n{done.stderr[-4000:]}")
    with open(report) as f:
        return json.load(f)


def _rate(report: dict) -> float:
    """Training samples per second per process: the median epoch after the first (warm-up)."""
    epochs = report["epoch_seconds"][1:] or report["epoch_seconds"]
    return report["n_train"] / statistics.median(epochs) / report["world_size"]


def _allreduce_worker(n: int) -> None:
    """Under torchrun: the median time of an all-reduce of ``n`` float32 (a gradient of n parameters) on gloo."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    t = torch.ones(n)
    times = []
    for _ in range(25):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - started)
    if dist.get_rank() == 0:
        print(json.dumps({"seconds": statistics.median(times[5:])}))
    dist.destroy_process_group()


def _allreduce_seconds(n: int) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bench.ddp",
           "--allreduce", str(n)]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the all-reduce timing failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ddp", description=__doc__.split("\n\n")[0])
    p.add_argument("--allreduce", type=int, default=None, help=argparse.SUPPRESS)  # the timing worker
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--detectors", default="flow,diffusion")
    p.add_argument("--quick", action="store_true", help="a quarter of the data, 2 epochs, 1 repeat")
    p.add_argument("--out", default=os.path.join("bench", "results", "ddp.json"))
    args = p.parse_args(argv)
    if args.allreduce is not None:
        _allreduce_worker(args.allreduce)
        return 0
    repeats, epochs = (1, 2) if args.quick else (args.repeats, args.epochs)
    load_before = provenance.load_average()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for detector in args.detectors.split(","):
            params, timestamps = CASES[detector]
            params = {**params, "epochs": epochs, "val_fraction": 0.0, "verbose": False, "seed": 0}
            shards = _shards(directory, timestamps // 4 if args.quick else timestamps)
            rates: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(repeats):
                for nproc in (1, 2):
                    report = _run(detector, params, shards, nproc, directory)
                    rates[nproc].append(_rate(report))
            one, two = statistics.median(rates[1]), statistics.median(rates[2])
            bs = params["batch_size"]
            rows.append({"detector": detector, "parameters": report["parameters"], "n_train": report["n_train"],
                         "step_ms_1": 1e3 * bs / one, "step_ms_2": 1e3 * bs / 2 / two,
                         "allreduce_ms": 1e3 * _allreduce_seconds(report["parameters"]),
                         "batch_size": params["batch_size"], "rate_1": one, "rate_2": two, "runs_1": rates[1],
                         "runs_2": rates[2], "per_process_ratio": two / one, "total_ratio": 2 * two / one})
    load_after = provenance.load_average()
    print(f"CPU: {provenance.cpu_model()}, {os.cpu_count()} cores; load average before {load_before}, after "
          f"{load_after}; torch {provenance.versions().get('torch')}; gloo, 1 thread per process, 4 shards")
    print(f"{'detector':<12}{'params':>9}{'samples':>9}{'batch':>7}  {'1 proc (samples/s)':>20}  "
          f"{'2 procs, per proc':>20}  {'per-proc ratio':>14}  {'total ratio':>11}  {'step ms 1 / 2':>13}  "
          f"{'all-reduce ms':>13}")
    for r in rows:
        spread = lambda v: f"{statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}]"  # noqa: E731
        print(f"{r['detector']:<12}{r['parameters']:>9}{r['n_train']:>9}{r['batch_size']:>7}  "
              f"{spread(r['runs_1']):>20}  {spread(r['runs_2']):>20}  {r['per_process_ratio']:>14.2f}  "
              f"{r['total_ratio']:>11.2f}  {r['step_ms_1']:>6.1f} /{r['step_ms_2']:>6.1f}  {r['allreduce_ms']:>13.2f}")
    print("samples/s: training samples per second of optimiser steps per process (median over runs [min-max]); "
          "step ms: one optimiser step (1 process: the whole batch; 2: half of it each); all-reduce ms: gloo, 2 "
          "processes, the gradient's size (median of 20)")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cpu": provenance.cpu_model(), "load_before": load_before, "load_after": load_after,
                   "versions": provenance.versions(), "date": provenance.now_utc(), "rows": rows,
                   "time": time.time()}, f, indent=1)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
