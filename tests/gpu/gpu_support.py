"""What the tests of tests/gpu share: the (device, backend) pairs, CUDA-graph capture, and a record of measured
figures for the run's summary. Inputs, oracles, tolerances and the checks themselves are the op specs'
(tests/op_specs), shared with the CPU and interpreter runners.

Each test runs a fused backend on its device and compares it with the eager reference on the same device (or
with a float64 truth computed there). On a machine with CUDA the pairs are ("cuda", "cuda") and ("cuda",
"triton") — compiled Triton on the GPU, never the interpreter; without CUDA they are ("cpu", "eager") and
("cpu", "cpu"), so the logic of every test runs on any machine, and the CUDA pairs are skipped with the reason
"no CUDA device".
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable

import pytest
import torch

import genad_fast
from op_specs.targets import DTYPES, HAS_CUDA, LARGE, NO_CUDA, Target, cpu_backend, need_ops, needs_cpu_op, on_gpu

__all__ = ["BIG", "CPU_PAIRS", "CUDA_PAIRS", "DTYPES", "HAS_CUDA", "Pair", "captured", "check_pair_runs",
           "cpu_backend", "need_ops", "pair_params", "record", "record_max", "records", "skip_unless_implemented",
           "write_records"]

Pair = Target
# The benchmark's diffusion shape, 6.5 M elements (thousands of blocks), on the GPU; a smaller one with the same
# layout where the eager oracle runs on a CPU (its integer Philox takes tens of seconds per call there).
BIG = on_gpu((4096, 64, 25), (256, 64, 25))
CPU_PAIRS = [Pair("cpu", "eager", LARGE), Pair("cpu", "cpu", LARGE)]
CUDA_PAIRS = [Pair("cuda", "cuda", LARGE), Pair("cuda", "triton", LARGE)]


def pair_params() -> list:
    """CUDA pairs with a GPU; otherwise the CPU pairs plus the CUDA pairs skipped as 'no CUDA device'."""
    if HAS_CUDA:
        return [pytest.param(p, id=str(p)) for p in CUDA_PAIRS]
    return ([pytest.param(p, id=str(p), marks=[needs_cpu_op] if p.backend == "cpu" else []) for p in CPU_PAIRS]
            + [pytest.param(p, id=str(p), marks=pytest.mark.skip(reason=NO_CUDA)) for p in CUDA_PAIRS])


def check_pair_runs(pair: Pair) -> None:
    """The pair's backend can run here (genad_fast.backends() says why not), and Triton on the GPU is compiled,
    not interpreted."""
    available = {b.name: b for b in genad_fast.backends()}
    assert available[pair.backend].available, f"{pair}: {available[pair.backend].reason}"
    if pair.backend == "triton" and pair.is_cuda:
        assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), \
            "TRITON_INTERPRET is set: the GPU pairs must run compiled Triton"


# ---- CUDA graphs -----------------------------------------------------------------------------------------------

def skip_unless_implemented(pair: Pair, spec) -> None:
    """Skip a check of ``spec``'s op on a backend it has no kernel for, after checking that the backend says so
    (BackendUnavailableError naming it: ``spec.check_not_implemented_says_so``), so nothing is hidden."""
    if pair.backend not in spec.IMPLEMENTED:
        spec.check_not_implemented_says_so(pair)
        pytest.skip(f"{spec.OPS[0]} has no {pair.backend} kernel (checked that it says so)")


def captured(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` captured in a CUDA graph on CUDA devices (one warm-up run on a side stream first, as PyTorch's
    docs prescribe): returns ``replay() -> fn's outputs`` (the graph's static outputs, refreshed by each replay).
    On a CPU device there are no graphs: ``replay`` calls ``fn`` (so the tests' logic still runs)."""
    if device.type != "cuda":
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay():
        graph.replay()
        return out

    replay.graph = graph  # keeps the graph (and its memory pool) alive with the closure
    return replay


# ---- measured figures ------------------------------------------------------------------------------------------

_RECORDS: dict[str, dict] = {}


def record(key: str, **values) -> None:
    """Keep a measured figure (errors, ulps, timings) for the summary printed at the end of the run and written
    to $OUT/gpu_measurements.json when OUT is set."""
    clean = {}
    for k, v in values.items():
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        clean[k] = v
    _RECORDS.setdefault(key, {}).update(clean)


def record_max(key: str, **values: float) -> None:
    """Like :func:`record`, keeping the largest value seen under each name (a worst case over parametrized tests)."""
    have = _RECORDS.get(key, {})
    record(key, **{k: max(float(v), float(have.get(k, v))) for k, v in values.items()})


def records() -> dict[str, dict]:
    return dict(_RECORDS)


def write_records() -> str | None:
    out = os.environ.get("OUT")
    if not out or not _RECORDS:
        return None
    path = os.path.join(out, "gpu_measurements.json")
    with open(path, "w") as f:
        json.dump(_RECORDS, f, indent=1, sort_keys=True)
    return path
