"""Streaming latency: ``StreamScorer.update`` against the naive loop (``decision_function`` of the last window).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.stream [--quick] [--repeats 3] [--detectors flow,...]

For each detector (flow, diffusion, autoencoder, kNN; 8 channels, fitted briefly on 4000 timestamps: the
figures are about scoring, not about how good the model is) a stream (delay 0, stride 1, the fitted threshold)
takes a normal series in chunks of 1, 16 and 256 timestamps. Per chunk size: the latency of one ``update``
call (p50, p99 over the calls, after a warm-up), the cost per timestamp (the total time over the timestamps)
and the throughput. The naive loop scores, for every new timestamp, the last window with
``decision_function(x[t - W + 1 : t + 1])``: what a service without streaming does; its p50/p99 are per
timestamp. ``x naive`` is the naive loop's p50 over the stream's chunk-1 p50 (the goal: at least 10), each
figure the median over ``--repeats`` runs. One torch thread (``--threads``); the CPU model and the load average
(before/after) are printed: on a shared machine the figures move with what else runs, and the wall-clock p99
holds the scheduler's waits (another process's time slice, several ms), so the p99 of the thread's CPU time
(``time.thread_time``) is printed too.

What a chunk-1 update does: read and normalise one row, append it to the buffer, score the one window it
completes (padded to ``min_score_rows`` = 8 rows, so that its score is the batch's bit for bit), add the score
to the pending sums and hand out the due timestamp, inside the call and plans held for the stream. The naive
loop pays the same window's scoring plus the per-call set-up every time (input checks, the scoring call, the
flow's inference plan, the diffusion sampler's plan, the reduction).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

from genad_fast import provenance
from genad_fast.detectors import get_detector

CHANNELS, TRAIN = 8, 4000
#: detector -> (parameters, window): networks of the size one would stream with (a short fit only)
CASES = {
    "flow": ({"window": 32, "n_steps": 4, "hidden": 128, "epochs": 1, "batch_size": 256}, 32),
    "diffusion": ({"window": 64, "stride": 4, "n_steps": 50, "residual_channels": 32, "n_layers": 4,
                   "dilation_cycle": 4, "epochs": 1, "batch_size": 64}, 64),
    "autoencoder": ({"window": 32, "epochs": 1, "batch_size": 256}, 32),
    "knn": ({"window": 32, "stride": 2}, 32),
}
CHUNKS = (1, 16, 256)


def _series(T: int, seed: int) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * t / (50 + 7 * np.arange(CHANNELS))) + 0.3 * rng.normal(size=(T, CHANNELS))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _stream_run(det, x: np.ndarray, chunk: int, n_updates: int, warmup: int) -> dict:
    s = det.stream(stride=1)
    s.update(x[:det.window - 1])  # the stream is running: every update from here completes windows
    i, times, cpu = det.window - 1, [], []
    for k in range(warmup + n_updates):
        part = x[i:i + chunk]
        started, started_cpu = time.perf_counter(), time.thread_time()
        s.update(part)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.thread_time() - started_cpu
        if k >= warmup:
            times.append(elapsed)
            cpu.append(elapsed_cpu)
        i += chunk
    total = sum(times)
    return {"p50_ms": 1e3 * _pct(times, 50), "p99_ms": 1e3 * _pct(times, 99), "cpu_p99_ms": 1e3 * _pct(cpu, 99),
            "per_timestamp_ms": 1e3 * total / (n_updates * chunk), "throughput": n_updates * chunk / total}


def _naive_run(det, x: np.ndarray, n: int, warmup: int) -> dict:
    W, times, cpu = det.window, [], []
    for k in range(warmup + n):
        t = W - 1 + k
        started, started_cpu = time.perf_counter(), time.thread_time()
        det.decision_function(x[t - W + 1:t + 1])
        elapsed, elapsed_cpu = time.perf_counter() - started, time.thread_time() - started_cpu
        if k >= warmup:
            times.append(elapsed)
            cpu.append(elapsed_cpu)
    return {"p50_ms": 1e3 * _pct(times, 50), "p99_ms": 1e3 * _pct(times, 99), "cpu_p99_ms": 1e3 * _pct(cpu, 99),
            "per_timestamp_ms": 1e3 * sum(times) / n, "throughput": n / sum(times)}


def _median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"runs_p50_ms": [r["p50_ms"] for r in runs]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n\n")[0])
    p.add_argument("--detectors", default=",".join(CASES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="fewer updates and 1 repeat: a smoke run")
    p.add_argument("--out", default=os.path.join("bench", "results", "stream.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    repeats = 1 if args.quick else args.repeats
    n_updates = {1: 60, 16: 20, 256: 4} if args.quick else {1: 400, 16: 100, 256: 12}
    n_naive = 20 if args.quick else 100
    load_before = provenance.load_average()
    rows = []
    for name in args.detectors.split(","):
        params, W = CASES[name]
        det = get_detector(name)(**params, verbose=False, device="cpu", seed=0).fit(_series(TRAIN, 0))
        need = W + max(n * c for c, n in n_updates.items()) + 2 * 256
        x = _series(need, 1)
        row = {"detector": name, "window": W, "params": params}
        # diffusion's chunk-1 is one window's reverse chain per timestamp, as the naive loop: fewer of them
        scale = 4 if name == "diffusion" else 1
        for chunk in CHUNKS:
            runs = [_stream_run(det, x, chunk, max(2, n_updates[chunk] // scale), warmup=2) for _ in range(repeats)]
            row[f"chunk_{chunk}"] = _median_of(runs)
        row["naive"] = _median_of([_naive_run(det, x, max(5, n_naive // scale), warmup=2) for _ in range(repeats)])
        row["speedup_chunk_1"] = row["naive"]["p50_ms"] / row["chunk_1"]["p50_ms"]
        rows.append(row)
        print(f"  {name}: done", file=sys.stderr)
    load_after = provenance.load_average()
    print(f"CPU: {provenance.cpu_model()}, {os.cpu_count()} cores; {args.threads} torch thread(s); load average "
          f"before {load_before}, after {load_after}; torch {provenance.versions().get('torch')}; "
          f"{CHANNELS} channels, delay 0, stride 1; median of {repeats} run(s)")
    head = f"{'detector':<12}{'W':>4}  {'update p50/p99 ms (chunk 1 | 16 | 256)':<44} " \
           f"{'ms/timestamp (1|16|256)':<25} {'timestamps/s (1|16|256)':<25} {'naive p50/p99 ms':<18}{'x naive':>8}  " \
           f"{'CPU-time p99 ms (1 | naive)':<28}"
    print(head)
    for r in rows:
        lat = " | ".join(f"{r[f'chunk_{c}']['p50_ms']:.3g}/{r[f'chunk_{c}']['p99_ms']:.3g}" for c in CHUNKS)
        per = " | ".join(f"{r[f'chunk_{c}']['per_timestamp_ms']:.3g}" for c in CHUNKS)
        thr = " | ".join(f"{r[f'chunk_{c}']['throughput']:.3g}" for c in CHUNKS)
        nv = r["naive"]
        naive = f"{nv['p50_ms']:.3g}/{nv['p99_ms']:.3g}"
        print(f"{r['detector']:<12}{r['window']:>4}  {lat:<44} {per:<25} {thr:<25} {naive:<18}"
              f"{r['speedup_chunk_1']:>8.1f}  {r['chunk_1']['cpu_p99_ms']:.3g} | {nv['cpu_p99_ms']:.3g}")
    print("update: one update() call (wall clock); ms/timestamp: total time / timestamps; naive: decision_function of "
          "the last window, per timestamp; x naive: naive p50 / chunk-1 p50; CPU-time p99: the thread's CPU time, "
          "without the waits of a busy machine's scheduler (the wall-clock p99 includes them)")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cpu": provenance.cpu_model(), "threads": args.threads, "load_before": load_before,
                   "load_after": load_after, "versions": provenance.versions(), "date": provenance.now_utc(),
                   "rows": rows}, f, indent=1)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
