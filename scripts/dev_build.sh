#!/usr/bin/env bash
# Rebuild the extension into .venv after a C++/CUDA change (incremental, serialised by a lock
# so that two shells building at once do not trample each other's build directory).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
nvcc_path=$(readlink -f "$(command -v nvcc)")
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$nvcc_path")")}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0a}
exec flock /tmp/genad_fast_build.lock env GENAD_CUDA=${GENAD_CUDA:-ON} CMAKE_BUILD_PARALLEL_LEVEL=2 \
  .venv/bin/python -m pip install -q --no-build-isolation --no-deps -C build-dir=build/.venv -e .
