"""The fused CPU ops under each CPU capability of one build: ``python -m bench.capabilities``.

One build holds a variant of every CPU kernel per capability (DEFAULT, AVX2, AVX512; csrc/include/genad/
cpu_dispatch.h). For each capability this CPU runs, a child process started with ``ATEN_CPU_CAPABILITY=<cap>``
(torch's own kernels follow it too, so eager runs at that capability as well; MKL, oneDNN and OpenBLAS, under
scikit-learn, are capped with ``MKL_ENABLE_INSTRUCTIONS`` / ``ONEDNN_MAX_CPU_ISA`` / ``OPENBLAS_CORETYPE``) times the issue-#16 goal rows with the registered cases'
own inputs and providers (bench/cases/), and scikit-learn for KDE / kNN:

  randn 2^24 vs torch.randn; diffusion_step and add_noise 4096x64x25 vs eager and the copy bandwidth; coupling
  forward 1M x 32 vs eager and torch.compile; KDE / kNN N5000-M50000-D32 vs scikit-learn (KDE: 500 queries,
  scaled to 5000).

Each row has the median wall time of every provider and, beside it, the median CPU time of a call (all threads,
page faults included: ``<provider>_cpu_ms``, ratio ``cpu_time_vs_<base>``), which a shared machine disturbs far
less than the wall time. torch.randn runs on one thread and the fused ops on all, so on an idle machine the wall
ratio is up to the thread count times the CPU-time ratio.

Forcing AVX2 on an AVX-512 machine is a proxy for an AVX2-only CPU (same cores, caches and memory; an AVX2 CPU
such as AMD Zen 1 has other latencies and bandwidth). Writes bench/results/capabilities_<date>.json/.csv.

    python -m bench.capabilities                         # every capability this CPU runs
    python -m bench.capabilities --capabilities avx2,default --no-compile --quick
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORDER = ("DEFAULT", "AVX2", "AVX512")
# (case key, size label, providers)
ROWS = [
    ("randn:forward", "2^24", ("eager", "cpu")),
    ("diffusion_step:forward", "4096x64x25", ("eager", "cpu")),
    ("add_noise:forward", "4096x64x25", ("eager", "cpu")),
    ("coupling:forward", "1000000x32", ("eager", "compile", "cpu")),
]
# what issue #16 asks of each row: (ratio column, at least)
GOALS = {
    "randn:forward": [("vs_eager", 4.0)],
    "diffusion_step:forward": [("vs_eager", 6.0), ("bw_fraction", 0.6)],
    "add_noise:forward": [("vs_eager", 5.0)],
    "coupling:forward": [("vs_eager", 2.0), ("vs_compile", 1.1)],
    "kde_logpdf": [("vs_sklearn", 10.0)],
    "knn_distance": [("vs_sklearn", 4.0)],
}
# what the child caps the other libraries at, so that eager and scikit-learn run as on such a CPU too:
# (MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA, OPENBLAS_CORETYPE: numpy/scipy's OpenBLAS, under scikit-learn)
ISA_CAPS = {"DEFAULT": ("SSE4_2", "SSE41", "Nehalem"), "AVX2": ("AVX2", "AVX2", "Haswell"),
            "AVX512": ("AVX512_E4", "AVX512_CORE_AMX", "")}


def child(args: argparse.Namespace) -> dict:
    import torch

    import genad_fast
    from bench import registry
    from bench.bandwidth import copy_bandwidth
    from bench.timing import TimingConfig, first_call, measure

    cfg = TimingConfig(budget_s=0.3 if args.quick else 1.0, min_repeats=3 if args.quick else 5, warmup=1)
    dev = torch.device("cpu")
    info = genad_fast.build_info()
    out = {"capability": info["cpu_capability"], "aten": torch.backends.cpu.get_cpu_capability(),
           "load_start": os.getloadavg(), "threads": torch.get_num_threads(), "rows": []}
    bw = copy_bandwidth(dev)
    out["copy_gb_per_s"] = bw.gb_per_s
    cases = {c.key: c for c in registry.all_cases()}
    for key, label, providers in ROWS:
        case = cases[key]
        size = next(s for s in case.sizes if s.label == label)
        inputs = case.setup(size, dev)
        row = {"case": key, "size": label}
        for name in providers:
            if name == "compile" and args.no_compile:
                continue
            try:
                call = case.providers[name].build(inputs)
                first_call(call, dev)
                row[f"{name}_ms"] = measure(call, cfg, dev).median_ms
                row[f"{name}_cpu_ms"] = cpu_ms(call, 3 if args.quick else 5)
            except Exception as exc:  # e.g. inductor failing under an override: a note, not a lost run
                row["note"] = (row.get("note", "") + f" {name} failed: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}").strip()
        if case.bytes_moved is not None and "cpu_ms" in row:
            row["bw_fraction"] = case.bytes_moved(size) / (row["cpu_ms"] * 1e-3) / 1e9 / bw.gb_per_s
        for base in ("eager", "compile"):
            if f"{base}_ms" in row:
                row[f"vs_{base}"] = row[f"{base}_ms"] / row["cpu_ms"]
            if f"{base}_cpu_ms" in row and "cpu_cpu_ms" in row:
                row[f"cpu_time_vs_{base}"] = row[f"{base}_cpu_ms"] / row["cpu_cpu_ms"]
        out["rows"].append(row)
        del inputs
    if not args.no_sklearn:
        out["rows"].extend(sklearn_rows(args.quick))
    out["load_end"] = os.getloadavg()
    return out


def process_cpu_s() -> float:
    """CPU seconds of this process, every thread, user and system (page faults count)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_ms(call, repeats: int) -> float:
    """Median CPU time of one call in ms, all threads together. On a shared machine the wall time of a
    two-thread op swings with the other processes; the CPU time much less (a busy sibling hyperthread still
    slows it). A fused op on 2 threads next to a one-thread eager op (torch.randn) shows a lower CPU-time ratio
    than its wall-time ratio on an idle machine."""
    times = []
    for _ in range(repeats):
        t = process_cpu_s()
        call()
        times.append(process_cpu_s() - t)
    times.sort()
    return times[len(times) // 2] * 1e3


def sklearn_rows(quick: bool) -> list[dict]:
    import numpy as np  # noqa: F401
    from sklearn.neighbors import KernelDensity, NearestNeighbors

    import torch

    from bench.cases import distance
    from genad_fast import ops

    size = distance.SIZES[0]  # N5000-M50000-D32
    inputs = distance.setup(size, torch.device("cpu"))
    q, r, h = inputs["q"], inputs["r"], inputs["h"]
    n, k = q.shape[0], distance.K

    cpu = {}

    def best(fn, repeats, key):  # min wall seconds; the CPU seconds of that call go to cpu[key]
        times = []
        for _ in range(repeats):
            t, c = time.perf_counter(), process_cpu_s()
            fn()
            times.append((time.perf_counter() - t, process_cpu_s() - c))
        wall, cpu[key] = min(times)
        return wall

    reps = 1 if quick else 3
    ops.kde_logpdf(q[:64], r, h, backend="cpu")
    kde = best(lambda: ops.kde_logpdf(q, r, h, backend="cpu"), reps, "kde")
    sub = 500
    kd = KernelDensity(kernel="gaussian", bandwidth=h).fit(r.double().numpy())
    sk_kde = best(lambda: kd.score_samples(q[:sub].double().numpy()), 1, "sk_kde") * n / sub
    ops.knn_distance(q[:64], r, k, backend="cpu")
    knn = best(lambda: ops.knn_distance(q, r, k, backend="cpu"), reps, "knn")
    nn = NearestNeighbors(n_neighbors=k).fit(r.numpy())
    sk_knn = best(lambda: nn.kneighbors(q.numpy()), 1, "sk_knn")
    return [{"case": "kde_logpdf", "size": size.label, "cpu_ms": kde * 1e3, "sklearn_ms": sk_kde * 1e3,
             "vs_sklearn": sk_kde / kde, "cpu_cpu_ms": cpu["kde"] * 1e3, "sklearn_cpu_ms": cpu["sk_kde"] * 1e3 * n / sub,
             "cpu_time_vs_sklearn": cpu["sk_kde"] * n / sub / cpu["kde"],
             "note": f"scikit-learn on {sub} queries, scaled to {n}"},
            {"case": "knn_distance", "size": size.label, "cpu_ms": knn * 1e3, "sklearn_ms": sk_knn * 1e3,
             "vs_sklearn": sk_knn / knn, "cpu_cpu_ms": cpu["knn"] * 1e3, "sklearn_cpu_ms": cpu["sk_knn"] * 1e3,
             "cpu_time_vs_sklearn": cpu["sk_knn"] / cpu["knn"], "note": f"scikit-learn {nn._fit_method}, k={k}"}]


def run_child(cap: str, argv: list[str]) -> dict:
    mkl, onednn, openblas = ISA_CAPS[cap]
    # a private inductor cache per capability: torch.compile's cache does not key on ATEN_CPU_CAPABILITY
    env = {**os.environ, "ATEN_CPU_CAPABILITY": cap.lower(), "MKL_ENABLE_INSTRUCTIONS": mkl,
           "ONEDNN_MAX_CPU_ISA": onednn, **({"OPENBLAS_CORETYPE": openblas} if openblas else {}),
           "TORCHINDUCTOR_CACHE_DIR": os.path.join(tempfile.gettempdir(), f"genad_bench_inductor_{os.getuid()}_{cap}")}
    res = subprocess.run([sys.executable, "-m", "bench.capabilities", "--child", *argv], env=env,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if res.returncode != 0:
        raise SystemExit(f"the {cap} child failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def cpu_ratio(row: dict) -> str:
    """The CPU-time ratio against the row's baseline (eager, or scikit-learn), '-' when not measured."""
    for base in ("eager", "sklearn"):
        if f"cpu_time_vs_{base}" in row:
            return f"{row[f'cpu_time_vs_{base}']:.2f}"
    return "-"


def table(results: list[dict]) -> str:
    lines = [f"{'capability':10s} {'case':24s} {'cpu ms':>9s} {'eager ms':>9s} {'x eager':>8s} {'x compile':>9s} "
             f"{'bw frac':>7s} {'x sklearn':>9s} {'cpu-time x':>10s}  goals"]
    for res in results:
        for row in res["rows"]:
            goals = []
            for col, at_least in GOALS.get(row["case"], []):
                v = row.get(col)
                if v is not None:
                    goals.append(f"{col} {'ok' if v >= at_least else 'SHORT'} (>= {at_least:g})")
            f = lambda c, fmt: format(row[c], fmt) if c in row else "-"  # noqa: E731
            lines.append(f"{res['capability']:10s} {row['case']:24s} {f('cpu_ms', '9.2f')} {f('eager_ms', '9.2f'):>9s} "
                         f"{f('vs_eager', '8.2f'):>8s} {f('vs_compile', '9.2f'):>9s} {f('bw_fraction', '7.2f'):>7s} "
                         f"{f('vs_sklearn', '9.1f'):>9s} {cpu_ratio(row):>10s}  {', '.join(goals)}")
        lines.append(f"{res['capability']:10s} copy bandwidth {res['copy_gb_per_s']:.1f} GB/s, load "
                     f"{res['load_start'][0]:.2f} -> {res['load_end'][0]:.2f}, {res['threads']} threads")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.capabilities", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capabilities", default=None, help="comma-separated, e.g. avx2,default (default: every "
                    "compiled capability this CPU runs)")
    ap.add_argument("--quick", action="store_true", help="short timing")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compile takes a while)")
    ap.add_argument("--no-sklearn", action="store_true", help="skip the KDE / kNN rows against scikit-learn")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    import genad_fast
    from bench.machine import machine_info

    info = genad_fast.build_info()
    if not info.get("loaded"):
        print(f"genad_fast._C is not loaded: {info.get('error')}")
        return 1
    best = ORDER.index(info["cpu_capability_supported"])
    caps = ([c.strip().upper() for c in args.capabilities.split(",")] if args.capabilities
            else [c for c in reversed(info["cpu_capabilities"]) if ORDER.index(c) <= best])
    passthrough = [a for a, on in (("--quick", args.quick), ("--no-compile", args.no_compile),
                                   ("--no-sklearn", args.no_sklearn)) if on]
    results = []
    for cap in caps:
        print(f"== {cap}", flush=True)
        res = run_child(cap, passthrough)
        if res["capability"] != cap:
            print(f"   asked for {cap}, ran {res['capability']} (this CPU supports {info['cpu_capability_supported']})")
        results.append(res)
    print(table(results))
    machine = machine_info()
    print(f"machine: {machine.get('cpu_model', machine)}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"capabilities_{time.strftime('%Y%m%d_%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps({"machine": machine, "build_info": info, "results": results},
                                                    indent=1, default=str))
    cols = ["capability", "case", "size", "cpu_ms", "eager_ms", "compile_ms", "sklearn_ms", "vs_eager",
            "vs_compile", "bw_fraction", "vs_sklearn", "cpu_cpu_ms", "eager_cpu_ms", "compile_cpu_ms",
            "sklearn_cpu_ms", "cpu_time_vs_eager", "cpu_time_vs_compile", "cpu_time_vs_sklearn", "note"]
    with stem.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for res in results:
            for row in res["rows"]:
                w.writerow({"capability": res["capability"], **row})
    print(f"wrote {stem}.json and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
