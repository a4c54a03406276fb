"""What a result was measured on: machine, load, versions, build and git revision.

``genad-fast eval`` and the benchmark suite (``python -m bench``) both write these facts next to their
numbers (DESIGN.md: "results go to CSV/JSON with the machine, versions and git revision"); they read them
here, so the two reports say the same thing the same way. Every function answers None (or a "not ..."
string) for a fact it cannot learn, rather than raising: a report is never lost for want of a version.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["ISA_FLAGS", "SOURCE_ROOT", "cpu_flags", "cpu_model", "dist_version", "git_info", "git_revision", "gpu_name", "load_average",
           "memory_gib", "now_utc", "versions"]

#: The folder above the genad_fast package: the repository root in a source checkout (site-packages in a wheel).
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second (``2025-01-31T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The /proc/cpuinfo flags that decide which kernels and products a CPU runs fast (AVX2 and FMA, AVX-512 and its
#: bfloat16/fp16 parts, AMX; NEON/SVE on aarch64): what a figure needs beside the CPU's model name.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "asimd", "sve")


def cpu_flags() -> list[str]:
    """The :data:`ISA_FLAGS` this CPU has (``/proc/cpuinfo``; empty where the OS does not say)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in ISA_FLAGS if flag in have]
    except OSError:
        pass
    return []


def memory_gib() -> float | None:
    """Physical memory in GiB (one decimal), or None where the OS does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)
    except (ValueError, OSError, AttributeError):
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: others' work on a shared machine skews every timing."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def gpu_name(with_details: bool = False) -> str | None:
    """The first visible CUDA device's name (with its compute capability and memory if asked), or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    if not with_details:
        return props.name
    return f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / (1 << 30):.0f} GiB)"


def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name`` from its metadata, without importing it, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Python, torch (and its CUDA), triton, numpy, genad_fast and its compiled extension's build facts."""
    import torch

    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": dist_version("triton"),  # from metadata: importing triton is slow and not needed
        "numpy": dist_version("numpy"),
    }
    try:
        # The two leaf modules, not the package: provenance sits below the package's re-exports.
        from genad_fast._ext import build_info
        from genad_fast._version import __version__

        out["genad_fast"] = __version__
        out["genad_fast_build"] = build_info()
    except Exception as exc:  # the benchmarks report on a package that fails to import, too
        out["genad_fast"] = None
        out["genad_fast_build"] = {"loaded": False, "error": f"{type(exc).__name__}: {exc}"}
    return out


def git_info(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"revision": commit or None, "dirty": tracked files changed, or None}`` of the checkout at ``root``.

    ``root`` defaults to :data:`SOURCE_ROOT`; a folder that is not a git checkout (an installed wheel) or a
    machine without git gives Nones.
    """
    root = Path(SOURCE_ROOT if root is None else root)
    if not (root / ".git").exists():  # a file in a git worktree, a folder in a clone
        return {"revision": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev, "dirty": bool(status) if rev is not None and status is not None else None}


def git_revision(root: str | os.PathLike | None = None) -> str | None:
    """:func:`git_info` as one string for a report: the commit, and whether tracked files had changed."""
    info = git_info(root)
    if info["revision"] is None:
        return None
    return info["revision"] + (" (with uncommitted changes)" if info["dirty"] else "")
