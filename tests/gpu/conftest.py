"""tests/gpu: every fused op and the GPU paths of the detectors on (device, backend) pairs (see gpu_support.py);
the ops' inputs, oracles, tolerances and checks are the op specs' (tests/op_specs), shared with the other runners.

    python3 -m pytest tests/gpu -q -p no:cacheprovider          # on a GPU machine: scripts/gpu_check.sh

Without CUDA the CPU pairs run and the CUDA pairs are skipped ("no CUDA device"). With CUDA, TF32 is
switched off for the run (float32 matmuls and convolutions in full precision), so that scores of one model on
the GPU and on the CPU can be compared with float32 tolerances; Triton must not be interpreted.
"""
from __future__ import annotations

import os

import pytest
import torch

import gpu_support as gs


@pytest.fixture(scope="session", params=gs.pair_params())
def pair(request) -> gs.Pair:
    p = request.param
    gs.check_pair_runs(p)
    return p


@pytest.fixture(scope="session", autouse=True)
def _full_precision_float32():
    if not gs.HAS_CUDA:
        yield
        return
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.exit("tests/gpu must run compiled Triton on the GPU: unset TRITON_INTERPRET", returncode=2)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture(autouse=True)
def _no_leftover_cuda_error(request):
    """A CUDA kernel fault surfaces at the next synchronisation: make it fail the test that caused it."""
    yield
    if gs.HAS_CUDA:
        torch.cuda.synchronize()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    recs = gs.records()
    if not recs:
        return
    terminalreporter.write_sep("-", "tests/gpu measured figures")
    for key in sorted(recs):
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in recs[key].items())
        terminalreporter.write_line(f"{key}: {values}")
    path = gs.write_records()
    if path:
        terminalreporter.write_line(f"written to {path}")
