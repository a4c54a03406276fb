#!/usr/bin/env bash
# The main job, from a fresh machine: build genad_fast into .venv, then run the demo
# (fit a detector on a generated series with labelled anomalies; print the build facts, how many timestamps it
# flags against the true anomalies, and the fused kernels' speed against the eager twin).
# Only what the demo needs is installed (setup_env.sh --deps core), and the CUDA ops are compiled only when a GPU is
# visible (GENAD_CUDA=AUTO; GENAD_CUDA=ON compiles them anyway, as scripts/test.sh does).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
start=$SECONDS
# torch: the CUDA build (2.14.1) where a GPU is visible or the CUDA ops are asked for (GENAD_CUDA=ON: they build
# against a CUDA torch only), else 2.13.0, whose CPU build the package index here holds: ~0.2 GB of downloads instead
# of ~3 GB of CUDA wheels, and about a minute less on a fresh machine (README, "Size and time"). GENAD_TORCH
# overrides, e.g. GENAD_TORCH=torch==2.14.1.
if [ -n "${GENAD_TORCH:-}" ]; then
  torch_spec=$GENAD_TORCH
elif [ "${GENAD_CUDA:-AUTO}" = "ON" ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
  torch_spec=torch==2.14.1
else
  torch_spec=torch==2.13.0
fi
scripts/setup_env.sh --deps core .venv "$torch_spec" "${GENAD_CUDA:-AUTO}"
echo "== set-up took $((SECONDS - start)) s; running the demo"
.venv/bin/genad-fast demo "$@"
