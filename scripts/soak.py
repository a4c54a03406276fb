"""Soak test: fit, score, save and load real detectors in a loop for N minutes, watching memory and files.

    .venv/bin/python scripts/soak.py                 # 30 minutes, every registered detector, tiny settings
    .venv/bin/python scripts/soak.py --minutes 5 --detectors flow,knn --report-every 60

Prints the resident set size (VmRSS from /proc/self/status) and the number of open file descriptors
(/proc/self/fd) at the start, every ``--report-every`` seconds and at the end. Exits 1 when, after the warm-up
(the first full pass over the detectors plus ``--warmup`` seconds: allocator pools, oneDNN/MKL caches and
lazily imported modules settle), RSS grew by more than ``--max-rss-growth-mb`` (default 64 MiB) or the
number of open file descriptors grew at all; 0 otherwise. Linux only (reads /proc). Not run in CI.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared tiny detector settings

import genad_fast  # noqa: E402
from genad_fast.detectors import detector_names  # noqa: E402
from tiny_detectors import SERIES_ONLY, make_detector  # noqa: E402


def rss_mib() -> float:
    """Resident set size of this process in MiB (VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS line in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_round(name: str, mode: str, rng: np.random.Generator, workdir: Path) -> None:
    """Fit ``name`` on fresh data, score, save, load, score again, check the two agree."""
    if mode == "tabular":
        train, test = rng.normal(size=(400, 4)), rng.normal(size=(100, 4))
    else:
        t = np.arange(600)[:, None]
        series = np.sin(2 * np.pi * t / 25 + np.arange(3)) + 0.1 * rng.normal(size=(600, 3))
        train, test = series[:450], series[450:]
    det = make_detector(name, mode, seed=int(rng.integers(1 << 31))).fit(train)
    scores = det.decision_function(test)
    path = workdir / f"{name}-{mode}.pt"
    det.save(path)
    loaded = genad_fast.load(path)
    if not np.array_equal(loaded.decision_function(test), scores):
        raise AssertionError(f"{name}/{mode}: the loaded model scores differently")
    path.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    p.add_argument("--detectors", default="all", help="comma-separated registry names (default: all)")
    p.add_argument("--report-every", type=float, default=180.0, help="seconds between reports (default 180)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds after the first pass before the baseline")
    p.add_argument("--max-rss-growth-mb", type=float, default=64.0, help="allowed RSS growth after warm-up, MiB")
    args = p.parse_args(argv)
    names = detector_names() if args.detectors == "all" else [n.strip() for n in args.detectors.split(",")]
    unknown = sorted(set(names) - set(detector_names()))
    if unknown:
        p.error(f"unknown detectors {unknown}; registered: {', '.join(detector_names())}")
    plan = [(n, m) for n in names for m in (("series",) if n in SERIES_ONLY else ("tabular", "series"))]
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    start = time.monotonic()
    end = start + 60.0 * args.minutes
    print(f"start: rss {rss_mib():.1f} MiB, fds {open_fds()}, {len(plan)} detector/mode pairs, "
          f"{args.minutes:g} min", flush=True)
    baseline = None
    rounds = 0
    next_report = start + args.report_every
    with tempfile.TemporaryDirectory(prefix="genad-soak-") as tmp:
        while time.monotonic() < end:
            name, mode = plan[rounds % len(plan)]
            one_round(name, mode, rng, Path(tmp))
            rounds += 1
            now = time.monotonic()
            if baseline is None and rounds >= len(plan) and now - start >= args.warmup:
                gc.collect()
                baseline = (rss_mib(), open_fds())
                print(f"baseline after warm-up ({now - start:.0f} s, {rounds} rounds): rss {baseline[0]:.1f} MiB, "
                      f"fds {baseline[1]}", flush=True)
            if now >= next_report:
                print(f"{(now - start) / 60:6.1f} min: rss {rss_mib():.1f} MiB, fds {open_fds()}, {rounds} rounds",
                      flush=True)
                next_report += args.report_every
    gc.collect()
    rss, fds = rss_mib(), open_fds()
    minutes = (time.monotonic() - start) / 60
    print(f"end: rss {rss:.1f} MiB, fds {fds}, {rounds} rounds in {minutes:.1f} min", flush=True)
    if baseline is None:
        print("FAIL: the run ended before the warm-up did; give more --minutes or a shorter --warmup")
        return 1
    failed = False
    if rss - baseline[0] > args.max_rss_growth_mb:
        print(f"FAIL: RSS grew by {rss - baseline[0]:.1f} MiB after warm-up (bound {args.max_rss_growth_mb:g} MiB)")
        failed = True
    if fds > baseline[1]:
        print(f"FAIL: {fds - baseline[1]} file descriptor(s) leaked after warm-up")
        failed = True
    if not failed:
        print(f"OK: RSS growth {rss - baseline[0]:+.1f} MiB (bound {args.max_rss_growth_mb:g}), no fd leaked")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
