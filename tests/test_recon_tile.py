"""The CUDA recon_error tile kernel's code, run on the host: genad/recon_tile.h holds the kernel's three phases as
plain functions, and tests/cpp/recon_tile_check.cpp runs them block by block and thread by thread against the
one-thread-per-row loop, bit for bit, over tile sizes, channel counts up to the shared-memory budget, masks,
strided layouts, float and double. So the indexing of a kernel that only a GPU runs is checked on every machine
(the GPU runner, tests/gpu, checks the kernel itself against eager)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_the_tile_phases_give_the_per_row_kernel_bits(tmp_path):
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    assert compiler is not None, "a C++ compiler (CXX or c++) is needed, as for building the package"
    exe = tmp_path / "recon_tile_check"
    build = subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Werror", f"-I{REPO / 'csrc' / 'include'}",
                            str(REPO / "tests" / "cpp" / "recon_tile_check.cpp"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    words = run.stdout.split()
    assert words[0] == "ok" and int(words[1]) >= 1000, run.stdout
    # rows of C terms at an odd stride (C | 1) within 256 bytes: the kernel's shared memory stays at 36 KiB at
    # most, under the 48 KiB every CUDA GPU gives a block
    assert run.stdout.rstrip().endswith("largest C: float 63, double 31"), run.stdout
