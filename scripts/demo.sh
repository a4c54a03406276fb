#!/usr/bin/env bash
# The main job, from a fresh machine: build genad_fast into .venv, then run the demo
# (fit detectors on a generated series with labelled anomalies; print AUROC and scoring speed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export OPENBLAS_NUM_THREADS=1
scripts/setup_env.sh .venv torch==2.14.1 "${GENAD_CUDA:-AUTO}"
.venv/bin/genad-fast demo "$@"
