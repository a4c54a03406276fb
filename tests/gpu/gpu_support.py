"""What the tests of tests/gpu share: the (device, backend) pairs, the namespace of a backend's registered ops,
error budgets, CUDA-graph capture, and a record of measured figures for the run's summary.

Each test runs a fused backend on its device and compares it with the eager reference on the same device (or
with a float64 truth computed there). On a machine with CUDA the pairs are ("cuda", "cuda") and ("cuda",
"triton") — compiled Triton on the GPU, never the interpreter; without CUDA they are ("cpu", "eager") and
("cpu", "cpu"), so the logic of every test runs on any machine, and the CUDA pairs are skipped with the reason
"needs a CUDA device".
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from genad_fast import _backend

HAS_CUDA = torch.cuda.is_available()
CUDA_SKIP = "needs a CUDA device"
DTYPES = [torch.float32, torch.float64]
# The benchmark's diffusion shape, 6.5 M elements (thousands of blocks), on the GPU; a smaller one with the same
# layout where the eager oracle runs on a CPU (its integer Philox takes tens of seconds per call there).
BIG = (4096, 64, 25) if HAS_CUDA else (256, 64, 25)
EPS = {torch.float32: torch.finfo(torch.float32).eps, torch.float64: torch.finfo(torch.float64).eps}


@dataclass(frozen=True)
class Pair:
    device: str
    backend: str

    @property
    def dev(self) -> torch.device:
        return torch.device(self.device)

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def ops(self):
        """The namespace of this backend's registered ops (for opcheck and direct calls), or None for eager."""
        if self.backend == "eager":
            return None
        return torch.ops.genad_fast_triton if self.backend == "triton" else torch.ops.genad_fast

    def __str__(self) -> str:
        return f"{self.device}-{self.backend}"


CPU_PAIRS = [Pair("cpu", "eager"), Pair("cpu", "cpu")]
CUDA_PAIRS = [Pair("cuda", "cuda"), Pair("cuda", "triton")]


def pair_params() -> list:
    """CUDA pairs with a GPU; otherwise the CPU pairs plus the CUDA pairs skipped as 'needs a CUDA device'."""
    if HAS_CUDA:
        return [pytest.param(p, id=str(p)) for p in CUDA_PAIRS]
    return ([pytest.param(p, id=str(p)) for p in CPU_PAIRS]
            + [pytest.param(p, id=str(p), marks=pytest.mark.skip(reason=CUDA_SKIP)) for p in CUDA_PAIRS])


def check_pair_runs(pair: Pair) -> None:
    """The pair's backend resolves on its device (an explicit backend that cannot run raises and says why), and
    Triton on the GPU is compiled, not interpreted."""
    assert _backend.resolve(pair.backend, pair.dev) == pair.backend
    if pair.backend == "triton" and pair.is_cuda:
        assert not _backend.triton_interpreted(), "TRITON_INTERPRET is set: the GPU pairs must run compiled Triton"


def need_ops(pair: Pair):
    """The registered op namespace, or skip: the eager backend is plain PyTorch with no op to opcheck."""
    if pair.ops is None:
        pytest.skip("the eager backend is plain PyTorch: it has no registered op to opcheck")
    return pair.ops


def cpu_backend() -> str:
    """The backend that scores on CPU tensors here: the C++ kernels when built, else eager."""
    import genad_fast

    return "cpu" if genad_fast.build_info()["loaded"] else "eager"


# ---- comparisons -----------------------------------------------------------------------------------------------

def assert_terms_close(got: torch.Tensor, want: torch.Tensor, scale: torch.Tensor, ulps: float = 4.0) -> None:
    """|got − want| <= ulps·eps·scale elementwise, NaN where NaN: for sums of a few products, where a fused
    multiply-add and separately rounded products differ by a few ulps of the largest term (``scale``), not of
    the (possibly cancelled) result."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    nan_got, nan_want = torch.isnan(got), torch.isnan(want)
    assert torch.equal(nan_got, nan_want), "NaN positions differ"
    ok = ~nan_want
    g, w, s = got[ok].double(), want[ok].double(), scale[ok].double()
    inf = torch.isinf(w)
    assert torch.equal(g[inf], w[inf]), "infinite values differ"
    bound = ulps * EPS[got.dtype] * s[~inf] + torch.finfo(got.dtype).tiny
    err = (g[~inf] - w[~inf]).abs()
    worst = float((err / bound).max()) if err.numel() else 0.0
    assert worst <= 1.0, f"error {worst:.2f}x the budget of {ulps} ulps of the largest term"


def assert_within_budget(got: torch.Tensor, eager: torch.Tensor, truth: torch.Tensor, rtol: float, atol: float,
                         factor: float = 2.0, what: str = "") -> float:
    """The fused result may be at most ``factor`` times further from a float64 truth than the eager result in the
    same dtype is (its largest error), plus rtol/atol (STYLE.md, flash-attention's honest error budget).
    NaN/inf must sit where the truth has them. Returns the fused result's largest error (recorded)."""
    truth = truth.double()
    g, e = got.double(), eager.double()
    finite = torch.isfinite(truth)
    eager_err = float((e - truth)[finite].abs().max()) if finite.any() else 0.0
    torch.testing.assert_close(g, truth, rtol=rtol, atol=atol + factor * eager_err, equal_nan=True)
    err = float((g - truth)[finite].abs().max()) if finite.any() else 0.0
    if what:
        record(what, max_abs_err=err, eager_max_abs_err=eager_err)
    return err


def ulp_distance(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got − want| in float32 ulps of |want| (for float32 noise, both finite)."""
    w = want.double()
    ulp = torch.finfo(torch.float32).eps * w.abs().clamp_min(torch.finfo(torch.float32).tiny)
    return (got.double() - w).abs() / ulp


# ---- CUDA graphs -----------------------------------------------------------------------------------------------

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
