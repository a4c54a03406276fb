"""Build and run one of tests/cpp/'s host programs: code that only a GPU runs (a CUDA kernel's phases, the device
math in csrc/include/genad) checked on every machine with the host compiler the package builds with."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_host_check(source: str, workdir: Path) -> str:
    """Compiles tests/cpp/``source`` (C++17, -Wall -Werror, csrc/include on the path), runs it and returns its
    stdout; the build or a non-zero exit fails the calling test with the program's output."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    assert compiler is not None, "a C++ compiler (CXX or c++) is needed, as for building the package"
    exe = workdir / Path(source).stem
    build = subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Werror", f"-I{REPO / 'csrc' / 'include'}",
                            str(REPO / "tests" / "cpp" / source), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout
