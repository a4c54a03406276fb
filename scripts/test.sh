#!/usr/bin/env bash
# The test job, from a fresh machine: environments, builds, kernel registration, tests.
#   1. .venv with torch 2.14.1 (CUDA build): build genad_fast with its CUDA ops (nvcc on PATH, no GPU needed)
#   2. check that every op has CPU and CUDA kernels registered in the built library
#   3. the CPU test suite, the benchmark cases at their smoke sizes (bench/test_bench_cases.py), then
#      `genad-fast eval --suite small` with every detector (scripts/check_suite_report.py)
#   4. the Triton kernels in Triton's interpreter (own process: TRITON_INTERPRET=1 before triton loads)
#   5. .venv-cpu with torch 2.13.0 (CPU build): a CPU-only build, its kernel check and a smoke test
# Exits non-zero at the first failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export OPENBLAS_NUM_THREADS=1
export PYTHONDONTWRITEBYTECODE=1
start=$SECONDS
step() { echo; echo "=== [$((SECONDS - start))s] $*"; }

step "1/5 environment + build with CUDA ops (torch 2.14.1)"
scripts/setup_env.sh .venv torch==2.14.1 "${GENAD_CUDA:-ON}"

step "2/5 kernel registration (CPU + CUDA)"
.venv/bin/python scripts/check_kernels.py --expect CPU,CUDA
.venv/bin/python scripts/check_imports.py  # static: no import cycle, nothing below the CLI imports it or bench/

step "3/5 CPU tests"
.venv/bin/python -m pytest tests --ignore=tests/triton_kernels -q -p no:cacheprovider

step "3/5 (bench) every benchmark case, every provider, at its smoke size, checked against its reference"
GENAD_BENCH_SMOKE=1 .venv/bin/python -m pytest bench -q -p no:cacheprovider --benchmark-disable

step "3/5 (end) eval --suite small: every detector end to end, offline (issue #17; a few minutes on 2 cores)"
suite_out=$(mktemp -d)
.venv/bin/genad-fast eval --suite small --out "$suite_out/res" --report "$suite_out/benchmark.md" \
  --cache-dir "$suite_out/cache" --threads 1 --quiet --no-plots >/dev/null
.venv/bin/python scripts/check_suite_report.py "$suite_out/res/results.json" "$suite_out/benchmark.md"
rm -rf "$suite_out"

step "4/5 Triton kernels in the interpreter"
TRITON_INTERPRET=1 .venv/bin/python -m pytest tests/triton_kernels -q -p no:cacheprovider

step "5/5 CPU-only build against torch 2.13.0"
scripts/setup_env.sh .venv-cpu torch==2.13.0 AUTO
.venv-cpu/bin/python scripts/check_kernels.py --expect CPU
.venv-cpu/bin/python -m pytest tests/test_coupling.py tests/test_philox.py -q -p no:cacheprovider -m "not slow"

step "all test steps passed"
