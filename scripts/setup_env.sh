#!/usr/bin/env bash
# Create (or reuse) a virtual environment with torch and build genad_fast into it.
#   scripts/setup_env.sh [--deps core|test] VENV TORCH_SPEC [GENAD_CUDA] [BUILD_DIR]
# torch is installed first and the package is built with --no-build-isolation, so the
# extension is compiled against exactly that torch (an isolated build would fetch another).
# --deps core: the build tools, the package's own dependencies and matplotlib (what `genad-fast demo` needs);
# --deps test (default): those and the test requirements (every extra whose tests run in CI).
# Each step prints its elapsed seconds, so a first run shows where the set-up time goes.
set -euo pipefail
deps=test
if [ "${1:-}" = "--deps" ]; then
  deps=${2:?--deps core or test}
  shift 2
fi
case "$deps" in core|test) ;; *) echo "setup_env.sh: --deps must be core or test, got '$deps'" >&2; exit 2;; esac
venv=${1:?venv path}
torch_spec=${2:?torch requirement, e.g. torch==2.14.1}
cuda=${3:-AUTO}
build_dir=${4:-build/$(basename "$venv")}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$SECONDS
elapsed() { echo "   ($((SECONDS - t0)) s)"; t0=$SECONDS; }

# pip's wheel cache would hold a second copy of torch's multi-GB CUDA wheels: not kept (a fresh CI machine once ran
# out of disk installing torch). Free space is checked first, so a full disk is named rather than failing inside pip.
export PIP_NO_CACHE_DIR=1
mkdir -p "$(dirname "$venv")"
free_mb=$(df -Pm "$(dirname "$venv")" | awk 'NR == 2 {print $4}')
need_mb=1500
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  case "$torch_spec" in
    torch==2.13.0) need_mb=2500;;   # the CPU build on this disk (~0.7 GB installed)
    *) need_mb=8000;;               # a CUDA build (torch 2.14.1's: ~5.6 GB installed)
  esac
fi
if [ "${free_mb:-0}" -lt "$need_mb" ]; then
  echo "setup_env.sh: only ${free_mb} MB free on the disk holding $venv; this step needs about ${need_mb} MB" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
  elapsed
fi
py="$venv/bin/python"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '${torch_spec#torch==}' else 1)" 2>/dev/null; then
  echo "== installing $torch_spec into $venv"
  "$py" -m pip install -q "$torch_spec"
  elapsed
fi
echo "== installing the build requirements and the package's dependencies"
"$py" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja numpy tqdm pandas scikit-learn scipy matplotlib
elapsed
if [ "$deps" = test ]; then
  echo "== installing the test requirements"
  "$py" -m pip install -q \
    pytest hypothesis expecttest pytest-benchmark matplotlib pyarrow "aeon>=1.0" "ray>=2.9" "dask[distributed]>=2024.1" \
    "onnx>=1.18" "onnxscript>=0.5" "onnxruntime>=1.22" "timeeval-gutentag>=1.5"
  # (timeeval-gutentag: the eval extra, GutenTAG series for `genad-fast eval --suite`; aeon: the data extra, so that
  # the tests of the real-data loaders run rather than skip; ray and dask: the
  # extras of genad_fast.distributed, whose tests start local clusters of both; onnx, onnxscript, onnxruntime: the export
  # extra, for tests/test_export*.py)
  elapsed
fi

if [ "$cuda" != "OFF" ] && command -v nvcc >/dev/null 2>&1; then
  nvcc_path=$(readlink -f "$(command -v nvcc)")
  export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$nvcc_path")")}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0a}
fi
echo "== building genad_fast (GENAD_CUDA=$cuda, build dir $build_dir)"
GENAD_CUDA=$cuda CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  "$py" -m pip install -q --no-build-isolation --no-deps -C build-dir="$build_dir" -e .
elapsed
"$py" -c "import genad_fast; print('genad_fast', genad_fast.__version__, genad_fast.build_info())"
