"""What a result was measured on: machine, versions, git revision and date.

The facts themselves come from :mod:`genad_fast.provenance`, which ``genad-fast eval`` uses too, so both
reports describe a machine the same way; this module adds what only the benchmarks need (the last-level
cache size, the 1-minute load as one number, the cpu meter).
"""
from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch

from bench.bandwidth import last_level_cache_bytes
from genad_fast import provenance
from genad_fast.provenance import cpu_model, memory_gib, now_utc, versions  # noqa: F401  (bench's API)

#: The repository this bench/ belongs to.
REPO_ROOT = Path(__file__).resolve().parent.parent


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    """``{"revision", "dirty"}`` of the checkout the benchmarks ran from (not where genad_fast is installed)."""
    return provenance.git_info(root)


def load_average() -> float | None:
    """The 1-minute load average: others' work on a shared machine skews every timing."""
    loads = provenance.load_average()
    return loads[0] if loads else None


def machine_info() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "llc_bytes": last_level_cache_bytes(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "load_avg_1m": load_average(),
        "gpu": provenance.gpu_name(with_details=True),
    }


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
