#!/usr/bin/env bash
# The GPU check: one command, from the repository root, on a machine with an NVIDIA GPU (no network needed):
#
#     bash scripts/gpu_check.sh                 # logs and results in $OUT, else out/gpu_check/
#
# 1. the machine and the versions of the stack;
# 2. genad_fast built in place (editable) against the installed torch, with its CUDA ops for sm_90a;
# 3. every op in csrc/ops.cpp has a CPU and a CUDA kernel (scripts/check_kernels.py);
# 4. tests/gpu on the ("cuda", "cuda") and ("cuda", "triton") pairs: every op against its eager twin on the GPU,
#    the Philox stream against the CPU kernel's, gradcheck, opcheck, the detectors and their CUDA-graph paths;
# 5. a short CUDA throughput run of the benchmarks (coupling, diffusion, randn, KDE/kNN, the AnoGAN search's ops):
#    eager, torch.compile, cuda, triton, bounded to 150 s (no plot: matplotlib's first start builds a font cache);
# 6. many series on the GPU (issue #14): the loop over decision_function, the packed call and one long series, for
#    the flow (200 x 5,000 x 8) and the diffusion detector (20 x 5,000 x 8), 45 s each.
# Steps 3-6 run even when one of them fails, so that one run reports everything; a failed build stops the run.
# The exit status is that of the first failed step. About 6-8 minutes on 16 cores (most of it nvcc and the
# first compilation of each Triton kernel and torch.compile graph).
#
# Environment: OUT (where to write), PYTHON (default python3), PYTEST_ARGS (default "--maxfail=30"; "-x" stops
# at the first failure — the tests run grouped by pair, so with -x a failure on ("cuda", "cuda") would leave every
# ("cuda", "triton") test unrun), GPU_CHECK_SECONDS (default 570: the whole run's wall-clock budget;
# the tests are interrupted with SIGINT — pytest then still prints what failed — so that the benchmark keeps a
# minute, and the benchmark gets what is left, at most 150 s), BENCH_PROVIDERS (default
# eager,compile,cuda,triton), CMAKE_BUILD_PARALLEL_LEVEL (default 16), TORCH_CUDA_ARCH_LIST (default 9.0a).
set -uo pipefail
export PYTHONUNBUFFERED=1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export OUT=${OUT:-$root/out/gpu_check}
mkdir -p "$OUT"
py=${PYTHON:-python3}
deadline=${GPU_CHECK_SECONDS:-570}
summary=$OUT/summary.txt
: > "$summary"
first_failure=0

note() { echo "== $*" | tee -a "$summary"; }

# run_step NAME LOG COMMAND...: the command's output to the terminal and $OUT/LOG; status and time to the summary.
run_step() {
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS rc
  note "$name: $*"
  "$@" 2>&1 | tee "$OUT/$log"
  rc=${PIPESTATUS[0]}
  note "$name: exit $rc after $((SECONDS - t0)) s (log: $OUT/$log)"
  if [ "$rc" -ne 0 ] && [ "$first_failure" -eq 0 ]; then
    first_failure=$rc
  fi
  return "$rc"
}

# ---- the CUDA toolkit: nvcc on PATH, else the usual place; CUDA_HOME is the toolkit nvcc belongs to ----------
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
if command -v nvcc >/dev/null 2>&1; then
  nvcc_path=$(readlink -f "$(command -v nvcc)")
  export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$nvcc_path")")}
fi

# ---- 1. machine and versions ------------------------------------------------------------------------------------
machine() {
  date -u
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  echo "cpus: $(nproc)"
  "$py" -c "
import sys, torch
print('python', sys.version.split()[0], sys.executable)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), 'capability', torch.cuda.get_device_capability(0))
else:
    print('device: torch sees no CUDA device')
"
  "$py" -c "import triton; print('triton', triton.__version__)"
  echo "nvcc: $(command -v nvcc || echo missing) $(nvcc --version 2>/dev/null | tail -1); CUDA_HOME=${CUDA_HOME:-unset}"
  echo "cmake: $(cmake --version 2>/dev/null | head -1 || true) $("$py" -c 'import cmake; print("python package", cmake.__version__)' 2>/dev/null || true)"
  echo "ninja: $(ninja --version 2>/dev/null || "$py" -c 'import ninja; print(ninja.__version__)' 2>/dev/null || echo missing)"
  "$py" -c "import scikit_build_core, pybind11; print('scikit-build-core', scikit_build_core.__version__, 'pybind11', pybind11.__version__)"
  "$py" -m pip --version
  "$py" -c "
import os, sysconfig
inc = sysconfig.get_paths()['include']
print('Python.h:', 'found' if os.path.exists(os.path.join(inc, 'Python.h')) else 'MISSING (the build needs the Python headers)', inc)
from torch.utils import cpp_extension
print('torch sees CUDA_HOME', cpp_extension.CUDA_HOME)
"
  "$py" -c "import pytest, hypothesis, numpy, sklearn; print('pytest', pytest.__version__, 'hypothesis', hypothesis.__version__, 'numpy', numpy.__version__, 'scikit-learn', sklearn.__version__)"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git checkout')"
  return 0
}
run_step machine machine.txt machine

# ---- 2. build -----------------------------------------------------------------------------------------------------
# --no-build-isolation: against the torch installed here (an isolated build would fetch another one).
# --no-deps: nothing is downloaded (pyproject asks torch>=2.13 for the wheel's users; pip may print that the
# installed torch does not satisfy it, which does not stop the build).
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} GENAD_CUDA=ON
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
if ! run_step build build.log "$py" -m pip install --no-build-isolation --no-deps -C build-dir=/tmp/genad_build -e .; then
  if grep -qi "permission denied" "$OUT/build.log"; then
    note "build: site-packages is not writable; retrying as a user install"
    first_failure=0
    run_step build-user build_user.log "$py" -m pip install --user --no-build-isolation --no-deps \
      -C build-dir=/tmp/genad_build -e . || { note "build failed: nothing else can run"; exit 1; }
  else
    note "build failed: nothing else can run"
    exit 1
  fi
fi
run_step import import.log "$py" -c "
import json, genad_fast
print(json.dumps(genad_fast.build_info()))
for b in genad_fast.backends():
    print(b)
assert genad_fast.build_info().get('loaded'), 'genad_fast._C did not load'
assert 'cuda' in genad_fast.build_info()['backends'], 'the extension has no CUDA ops'
" || { note "the built extension does not load with its CUDA ops: nothing else can run"; exit 1; }

# ---- 3. kernel registration -------------------------------------------------------------------------------------
run_step check_kernels check_kernels.log "$py" scripts/check_kernels.py --expect CPU,CUDA

# ---- 4. tests/gpu ------------------------------------------------------------------------------------------------
pytest_args=(tests/gpu -q -p no:cacheprovider --durations=15)
# shellcheck disable=SC2206  # PYTEST_ARGS is a list of flags, split on purpose
pytest_args+=(${PYTEST_ARGS---maxfail=30})
if "$py" -c "import pytest_timeout" 2>/dev/null; then
  pytest_args+=(--timeout 600)
fi
test_budget=$((deadline - SECONDS - 170))
if [ "$test_budget" -lt 60 ]; then
  test_budget=60
fi
note "tests: at most $test_budget s (then SIGINT: pytest reports what ran)"
run_step tests gpu_tests.log timeout --signal=INT --kill-after=20 "$test_budget" "$py" -m pytest "${pytest_args[@]}"

# ---- 5. benchmarks ----------------------------------------------------------------------------------------------
# One size per case (the GPU-sized one); every row is printed as it is measured, so a run cut by the timeout
# still leaves its rows in bench.log (the CSV/JSON/PNG are written at the end).
bench_budget=$((deadline - SECONDS - 100))
if [ "$bench_budget" -gt 150 ]; then
  bench_budget=150
fi
if [ "$bench_budget" -lt 30 ]; then
  note "bench: skipped, only $((deadline - SECONDS)) s of the ${deadline} s budget left"
  bench_budget=0
fi
[ "$bench_budget" -gt 0 ] && run_step bench bench.log timeout "$bench_budget" "$py" -m bench --devices cuda \
  --providers "${BENCH_PROVIDERS:-eager,compile,cuda,triton}" \
  --cases 'coupling:*,diffusion_step:*,add_noise:*,recon_error:*,randn:*,kde_logpdf:*,knn_distance:*,anogan_ops:*' \
  --sizes '65536x64,4096x64x25,2^24,N5000-M50000-D32,B65536-P64-F128-L32' --budget 0.3 --no-plot \
  --out "$OUT/bench" --name gpu_bench

# ---- 6. many series on the GPU ---------------------------------------------------------------------------------
run_step many_series many_series.log timeout 45 "$py" -m bench.cases.many_series --device cuda --series 200 \
  --length 5000 --repeats 2 --detectors flow
run_step many_series_diffusion many_series_diffusion.log timeout 45 "$py" -m bench.cases.many_series --device cuda \
  --series 20 --length 5000 --repeats 2 --detectors diffusion

note "done in $SECONDS s; first failure exit status: $first_failure; files in $OUT"
exit "$first_failure"
