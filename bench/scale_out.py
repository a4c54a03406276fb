"""Many series, one model, on more workers: ``genad_fast.distributed.score_many`` on this machine's processes,
Ray and Dask, against the one-worker local path on the same job.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.scale_out [--quick] [--repeats 2] [--source memory|files]
                                                               [--configs local1,local1x2,local2,ray,dask]

The job (issue #14): score ``--series`` series (400) of ``--length`` timestamps (5,000) x ``--channels`` (8)
with one fitted FlowDetector (the default architecture: 8 flow steps, hidden 128, window 16; trained for one
epoch, which does not change the cost of scoring), in chunks of ``series / 8`` series (the same 8 tasks on
every configuration), the series in memory (``--source files``: one Parquet file each, read by the workers).

Configurations:

- ``local1``: one worker in this process, 1 thread: the one-worker local path, the baseline of the speedups;
- ``local1x2``: one worker in this process, 2 threads (torch's intra-op parallelism on both cores), for context;
- ``local2``: 2 worker processes (``ProcessPoolExecutor``, spawn), 1 thread each: plain processes;
- ``ray``: 2 Ray actors of 1 CPU on ``ray.init(num_cpus=2)``; ``dask``: 2 Dask worker processes of 1 thread
  (``LocalCluster``).

What is counted. ``job_s``: the ``score_many`` call, from its start until every score is in this process:
starting the worker processes (local2) or actors (ray), their imports of torch and genad_fast, loading the
model once per worker, moving the series and the scores, and scoring. ``start_s``, reported apart and not in
``job_s``: starting the cluster (``ray.init``, ``LocalCluster`` + ``Client``); Dask's workers then import
genad_fast at their first task, inside ``job_s``, like the others. The clusters are started and shut down around
each of their runs, so none idles in the background of another configuration's run. Runs go round-robin over
the configurations, ``--repeats`` times; the table gives the median job time and the spread (min-max).

Targets (issue #14): Ray and Dask with 2 workers >= 1.6x ``local1``; their overhead, ``job_s / job_s(local2) -
1``, <= 15 %. On a shared machine every figure is only as good as its idleness: the load average is printed and
written before and after.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bench.machine import git_info, load_average, machine_info
from genad_fast import provenance

CONFIGS = ("local1", "local1x2", "local2", "ray", "dask")
CPU_FIELDS = ("cpu_driver_s", "cpu_workers_s", "cpu_max_worker_s", "cpu_infra_s", "cpu_total_s",
              "cpu_start_s", "cpu_load_s", "cpu_tasks_s")


def _data(series: int, length: int, channels: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(channels, channels)) / np.sqrt(channels)
    t = np.arange(length)[:, None]
    base = np.sin(2 * np.pi * t / (40 + 5 * np.arange(channels)))
    return [(base + 0.3 * rng.normal(size=(length, channels)) @ mix).astype(np.float32) for _ in range(series)]


def _model(path: str, channels: int):
    from genad_fast.detectors.flow import FlowDetector

    train = np.concatenate(_data(1, 4000, channels, seed=1))
    det = FlowDetector(window=16, epochs=1, seed=0, verbose=False).fit(train)
    det.save(path)
    return det


def _files(series: list[np.ndarray], directory: str) -> list[str]:
    import pandas as pd

    paths = []
    for i, s in enumerate(series):
        paths.append(os.path.join(directory, f"series-{i:04d}.parquet"))
        pd.DataFrame(s, columns=[f"c{j}" for j in range(s.shape[1])]).to_parquet(paths[-1])
    return paths


def _tree_cpu() -> dict[int, float]:
    """CPU seconds (user + system, all threads) of every live descendant of this process, by pid; {} without
    psutil. Ray's raylet and workers, Dask's nannies and workers, the pool's workers are descendants."""
    try:
        import psutil
    except ImportError:
        return {}
    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
        except psutil.Error:  # exited meanwhile
            continue
    return out


def _cpu_figures(info: dict, driver_s: float, before: dict[int, float], after: dict[int, float],
                 in_process: bool) -> dict:
    """The job's CPU seconds: this process, the workers (each from its state at the job's start, or its own
    start if it began during the job, to its last task), the rest of the engine (raylet, nannies, idle workers)."""
    phases = info["worker_phases"].values()
    # The workers' CPU seconds by phase, summed over the workers: before the job's state (process start-up and
    # imports; for a Dask worker, since the job began), the model load, the tasks.
    load, tasks = sum(p["init_cpu"] for p in phases), sum(p["tasks_cpu"] for p in phases)
    if in_process:
        return {"cpu_driver_s": driver_s, "cpu_workers_s": 0.0, "cpu_max_worker_s": driver_s, "cpu_infra_s": 0.0,
                "cpu_total_s": driver_s, "cpu_start_s": 0.0, "cpu_load_s": load, "cpu_tasks_s": tasks}
    workers = {pid: cpu - before.get(pid, 0.0) for pid, cpu in info["worker_cpu_seconds"].items()}
    infra = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items() if pid not in workers)
    total = driver_s + sum(workers.values()) + infra
    start = sum(p["before_init_cpu"] - before.get(pid, 0.0) for pid, p in info["worker_phases"].items())
    return {"cpu_driver_s": driver_s, "cpu_workers_s": sum(workers.values()), "cpu_max_worker_s": max(workers.values()),
            "cpu_infra_s": infra, "cpu_total_s": total, "cpu_start_s": start, "cpu_load_s": load,
            "cpu_tasks_s": tasks}


def _run(config: str, model: str, job, chunk: int) -> dict:
    """One run of ``config``: the cluster's start-up (ray, dask), the job, the cluster's shut-down."""
    from genad_fast.distributed import score_many

    engine, workers, threads, start_s = "local", 1, 1, 0.0
    cleanup = []
    if config == "local1x2":
        threads = 2
    elif config == "local2":
        workers = 2
    elif config == "ray":
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        start_s = time.perf_counter() - started
        engine, workers, cleanup = "ray", 2, [ray.shutdown]
    elif config == "dask":
        import distributed

        started = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        start_s = time.perf_counter() - started
        engine, workers, threads, cleanup = "dask", 2, None, [client.close, cluster.close]
    load = load_average()
    try:
        before = _tree_cpu()
        cpu_started, started = time.process_time(), time.perf_counter()
        result = score_many(model, job, engine=engine, workers=workers, threads=threads, chunk_size=chunk,
                            verbose=False)
        job_s = time.perf_counter() - started
        cpu = _cpu_figures(result.info, time.process_time() - cpu_started, before, _tree_cpu(),
                           in_process=config in ("local1", "local1x2"))
    finally:
        for step in cleanup:
            step()
    failed = result.summary[result.summary["status"] != "ok"]
    if len(failed):
        raise RuntimeError(f"{config}: {len(failed)} series failed: {failed.iloc[0]['error']}")
    return {"config": config, "engine": engine, "workers": workers, "threads": result.info["threads"],
            "start_s": start_s, "job_s": job_s, "scores": result.scores, "load_1m": load, **cpu}


def _check(scores: list, det, job, source: str) -> None:
    """Every configuration's scores equal the in-process ones (first and last series, bit for bit)."""
    for i in (0, len(job) - 1):
        data = job[i]
        if source == "files":
            import pandas as pd

            data = pd.read_parquet(data)
        if not np.array_equal(scores[i], det.decision_function(data)):
            raise RuntimeError(f"series {i}: the scores differ from the in-process path")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=400)
    p.add_argument("--length", type=int, default=5000)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--source", choices=("memory", "files"), default="memory")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--quick", action="store_true", help="80 series of 2,000 timestamps, 1 repeat: a smoke run")
    p.add_argument("--out", default=os.path.join("bench", "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.series, args.length, args.repeats = 80, 2000, 1
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        p.error(f"unknown configurations {unknown}; known: {', '.join(CONFIGS)}")
    warnings.simplefilter("ignore")  # Ray's and Dask's start-up chatter; failures are checked below
    # The same allocator settings in every scoring process: the workers keep the memory their calls free
    # (genad_fast.distributed._worker.keep_freed_memory; GENAD_FAST_KEEP_FREED_MEMORY=0 turns it off in all of
    # them), and so does this process, where local1 and local1x2 score, so no speedup comes from malloc alone.
    from genad_fast.distributed._worker import keep_freed_memory

    kept = keep_freed_memory()
    load_before = provenance.load_average()
    chunk = max(1, args.series // 8)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as directory:
        model = os.path.join(directory, "flow.pt")
        det = _model(model, args.channels)
        job = _data(args.series, args.length, args.channels, seed=2)
        if args.source == "files":
            job = _files(job, directory)
        for repeat in range(args.repeats):
            for config in configs:
                run = _run(config, model, job, chunk)
                _check(run.pop("scores"), det, job, args.source)
                run["repeat"] = repeat
                runs.append(run)
                print(f"  {config:9s} repeat {repeat}: job {run['job_s']:7.2f} s  start {run['start_s']:5.2f} s  "
                      f"load {run['load_1m']}", file=sys.stderr)
    load_after = provenance.load_average()
    rows = _table(runs, configs, args)
    _print(rows, args, load_before, load_after, kept)
    _write(rows, args, load_before, load_after, kept)
    return 0


def _table(runs: list[dict], configs: list[str], args) -> list[dict]:
    timestamps = args.series * args.length
    rows = []
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        jobs = [r["job_s"] for r in mine]
        rows.append({"config": config, "engine": mine[0]["engine"], "workers": mine[0]["workers"],
                     "threads": mine[0]["threads"], "job_s": statistics.median(jobs), "job_min_s": min(jobs),
                     "job_max_s": max(jobs), "start_s": statistics.median(r["start_s"] for r in mine),
                     "series_per_s": args.series / statistics.median(jobs),
                     "timestamps_per_s": timestamps / statistics.median(jobs), "runs": len(mine),
                     **{k: statistics.median(r[k] for r in mine) for k in CPU_FIELDS},
                     "load_1m": statistics.median(r["load_1m"] or 0.0 for r in mine)})
    by = {r["config"]: r for r in rows}
    for r in rows:
        base, plain = by.get("local1"), by.get("local2")
        r["speedup_vs_local1"] = base["job_s"] / r["job_s"] if base else None
        r["overhead_vs_local2"] = r["job_s"] / plain["job_s"] - 1 if plain and r["engine"] != "local" else None
        # Load-proof figures: CPU seconds. The cost of the engine against plain processes, and the speedup the
        # job would have if each worker had a core of its own (the busiest worker's CPU time as its wall time).
        r["cpu_overhead_vs_local2"] = r["cpu_total_s"] / plain["cpu_total_s"] - 1 \
            if plain and r["engine"] != "local" else None
        r["cpu_bound_speedup"] = base["cpu_total_s"] / r["cpu_max_worker_s"] if base else None
    return rows


def _print(rows: list[dict], args, load_before, load_after, kept: bool) -> None:
    info = machine_info()
    print(f"\nscore_many: {args.series} series x {args.length} x {args.channels}, FlowDetector (window 16), "
          f"{args.source}, chunks of {max(1, args.series // 8)} series; {info['cpu_model']}, "
          f"{info['cpus_usable']} cores; load {load_before} -> {load_after}; freed memory kept: {kept}")
    print(f"{'config':9s} {'engine':6s} {'workers':>7s} {'threads':>7s} {'job s':>8s} {'min-max':>15s} "
          f"{'start s':>8s} {'series/s':>9s} {'vs local1':>9s} {'overhead':>9s}")
    for r in rows:
        over = f"{100 * r['overhead_vs_local2']:+.1f} %" if r["overhead_vs_local2"] is not None else ""
        print(f"{r['config']:9s} {r['engine']:6s} {r['workers']:7d} {str(r['threads']):>7s} {r['job_s']:8.2f} "
              f"{r['job_min_s']:7.2f}-{r['job_max_s']:<7.2f} {r['start_s']:8.2f} {r['series_per_s']:9.2f} "
              f"{r['speedup_vs_local1'] or 0:8.2f}x {over:>9s}")
    print("targets: ray and dask >= 1.6x local1; overhead (job time against local2, plain processes) <= 15 %")
    print(f"\nCPU seconds (all threads; load-proof):\n{'config':9s} {'driver':>7s} {'workers':>8s} {'busiest':>8s} "
          f"{'engine':>7s} {'total':>7s} {'overhead':>9s} {'cpu-bound speedup':>18s} | workers' {'start':>6s} "
          f"{'load':>6s} {'tasks':>7s}")
    for r in rows:
        over = f"{100 * r['cpu_overhead_vs_local2']:+.1f} %" if r["cpu_overhead_vs_local2"] is not None else ""
        print(f"{r['config']:9s} {r['cpu_driver_s']:7.2f} {r['cpu_workers_s']:8.2f} "
              f"{r['cpu_max_worker_s']:8.2f} {r['cpu_infra_s']:7.2f} {r['cpu_total_s']:7.2f} {over:>9s} "
              f"{r['cpu_bound_speedup'] or 0:17.2f}x | {'':8s}{r['cpu_start_s']:6.2f} {r['cpu_load_s']:6.2f} "
              f"{r['cpu_tasks_s']:7.2f}")
    print("workers' start: their CPU time before the job's state (process start-up, imports of torch and genad_fast;\n"
          "Dask: since the job began); load: building the state (the model load); tasks: running the tasks (the\n"
          "in-process routes: the driver's own load and tasks, inside its total).")
    print("busiest: the CPU time of the busiest worker, the job's wall time if each worker had a core of its own;\n"
          "cpu-bound speedup: local1's CPU time over it. On a machine shared with other sessions the kernel's\n"
          "autogroup scheduling gives this session one share of the cores however many workers it runs, so the\n"
          "wall-time speedup only shows on an idle machine.")


def _write(rows: list[dict], args, load_before, load_after, kept: bool) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"scale_out-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    meta = {"job": f"{args.series} series x {args.length} x {args.channels}, FlowDetector window 16, "
                   f"{args.source}", "repeats": args.repeats, "load_before": load_before, "load_after": load_after,
            "kept_freed_memory": kept, **{f"machine.{k}": v for k, v in machine_info().items()},
            **{f"versions.{k}": v for k, v in provenance.versions().items()},
            **{f"git.{k}": v for k, v in git_info().items()}, "date": provenance.now_utc()}
    with open(path, "w", newline="") as f:
        f.write("# genad_fast scale-out benchmark (bench/scale_out.py)\n")
        for k, v in meta.items():
            f.write(f"# {k}: {v}\n".replace("\r", " "))
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
