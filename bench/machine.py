"""What a result was measured on: machine, versions, git revision and date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from bench.bandwidth import last_level_cache_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)
    except (ValueError, OSError, AttributeError):
        return None


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "llc_bytes": last_level_cache_bytes(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "load_avg_1m": load_average(),       # others' work on a shared machine skews every timing
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / (1 << 30):.0f} GiB)"
    return info


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _dist_version("triton"),   # from metadata: importing triton is slow and not needed
        "numpy": _dist_version("numpy"),
    }
    try:
        import genad_fast

        out["genad_fast"] = genad_fast.__version__
        out["genad_fast_build"] = genad_fast.build_info()
    except Exception as exc:
        out["genad_fast"] = None
        out["genad_fast_build"] = {"loaded": False, "error": f"{type(exc).__name__}: {exc}"}
    return out


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev, "dirty": bool(status) if status is not None else None}


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class CpuMeter:
    """Share of the machine's cpu time that other processes used since the meter started.

    On a shared machine a timing is only trustworthy if nothing else ran meanwhile. This compares the
    busy time of all cpus (``/proc/stat``: user, nice, system, irq, softirq, steal) with this process's
    own cpu time (all its threads), over wall time × cpus. Linux only (None elsewhere); jiffy resolution,
    so it means little over less than a tenth of a second.
    """

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        ticks = [int(v) for v in fields[1:]]
        busy = ticks[0] + ticks[1] + ticks[2] + sum(ticks[5:8])  # user nice system | irq softirq steal
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), usage.ru_utime + usage.ru_stime

    def others_share(self) -> float | None:
        end = self._read()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        if wall <= 0:
            return None
        others = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)
