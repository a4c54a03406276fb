"""Where a check runs: a (device, backend) target and the size of the runner that runs it.

Sizes: ``SMALL`` cases run everywhere (the Triton interpreter evaluates every program in numpy, one at a time);
``MEDIUM`` cases need a compiled kernel (the CPU runner and the GPU runner); ``LARGE`` cases are the benchmark's
shapes (thousands of GPU blocks), run by the GPU runner only. Without CUDA the GPU runner runs its logic on the
CPU pairs, with the large shapes cut to what the eager oracle computes in seconds on a CPU (:func:`on_gpu`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pytest
import torch

import genad_fast

SMALL, MEDIUM, LARGE = 0, 1, 2
HAS_CUDA = torch.cuda.is_available()
HAS_CPU_OP = bool(genad_fast.build_info()["loaded"])
NO_CUDA = "no CUDA device: this test runs on a GPU"
needs_cpu_op = pytest.mark.skipif(not HAS_CPU_OP, reason="genad_fast._C is not built")
DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Target:
    """A backend on a device, run at a runner's size (``SMALL``, ``MEDIUM`` or ``LARGE``)."""

    device: str
    backend: str
    size: int = MEDIUM

    @property
    def dev(self) -> torch.device:
        return torch.device(self.device)

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def kind(self) -> str:
        """The backend's arithmetic: 'interpreter' for Triton on CPU tensors (numpy), else the backend's name."""
        return "interpreter" if self.backend == "triton" and self.device == "cpu" else self.backend

    @property
    def ops(self):
        """The namespace of this backend's registered ops (opcheck, direct calls), or None for eager."""
        if self.backend == "eager":
            return None
        return torch.ops.genad_fast_triton if self.backend == "triton" else torch.ops.genad_fast

    def pick(self, small, medium, large=None):
        """The value for this runner's size (``large`` defaults to ``medium``)."""
        return (small, medium, medium if large is None else large)[self.size]

    def __str__(self) -> str:
        return f"{self.device}-{self.backend}"


def params(*targets: Target) -> list:
    """``pytest.param`` per target, id ``device-backend``; the cpu backend is skipped where _C is not built."""
    return [pytest.param(t, id=str(t), marks=[needs_cpu_op] if t.backend == "cpu" else []) for t in targets]


def upto(cases: Sequence, size: int) -> list:
    """The cases a runner of ``size`` runs: the plain values (every runner) and those :func:`sized` at most
    ``size``, unwrapped."""
    return [c.value if isinstance(c, _Sized) else c for c in cases if not isinstance(c, _Sized) or c.size <= size]


@dataclass(frozen=True)
class _Sized:
    value: object
    size: int


def sized(value, size: int) -> _Sized:
    """A case that only runners of at least ``size`` run."""
    return _Sized(value, size)


def on_gpu(gpu_value, cpu_value):
    """A large case: its GPU size with CUDA, a CPU-sized stand-in when the GPU runner runs on the CPU pairs."""
    return gpu_value if HAS_CUDA else cpu_value


def cpu_backend() -> str:
    """The backend that scores on CPU tensors here: the C++ kernels when built, else eager."""
    return "cpu" if HAS_CPU_OP else "eager"


def need_ops(target: Target):
    """The target's registered op namespace, or skip: the eager backend is plain PyTorch with no op to opcheck."""
    if target.ops is None:
        pytest.skip("the eager backend is plain PyTorch: it has no registered op to opcheck")
    return target.ops


def run_opcheck(target: Target, samples: Callable[[Target], dict], names: Sequence[str] | None = None) -> None:
    """``torch.library.opcheck`` of each registered op on each of its samples (``samples(target)``: name -> list of
    argument tuples on the target's device), on the target's namespace."""
    ns = need_ops(target)
    for name, cases in samples(target).items():
        if names is not None and name not in names:
            continue
        for args in cases:
            torch.library.opcheck(getattr(ns, name), args)


CPU_TARGETS = params(Target("cpu", "eager", MEDIUM), Target("cpu", "cpu", MEDIUM))
INTERPRETER = Target("cpu", "triton", SMALL)
