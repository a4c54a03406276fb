"""Backend choice: an explicit ``backend=`` argument, else ``GENAD_FAST_BACKEND``, else ``auto``.

``auto`` takes ``cuda`` > ``triton`` on GPU tensors, ``cpu`` on CPU tensors, and ``eager``
only where no compiled op is available. A backend asked for by name that cannot run raises
:class:`BackendUnavailableError` with the reason; nothing falls back silently.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

from genad_fast import _ext
from genad_fast._extras import install_hint

BACKENDS = ("eager", "cpu", "cuda", "triton")
ENV_VAR = "GENAD_FAST_BACKEND"


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name and cannot run here; the message says why."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name:7s} {'yes' if self.available else 'no ':3s}  {self.reason}"


def triton_interpreted() -> bool:
    """True when Triton kernels run in its interpreter (CPU tensors): ``TRITON_INTERPRET=1``."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_reason() -> tuple[bool, str]:
    if importlib.util.find_spec("triton") is None:
        return False, f"triton is not installed ({install_hint('triton')})"
    if torch.cuda.is_available():
        return True, "triton installed, CUDA device visible"
    if triton_interpreted():
        return True, "triton installed, TRITON_INTERPRET=1: kernels run in the interpreter on CPU tensors"
    return False, "triton installed but no CUDA device is visible (set TRITON_INTERPRET=1 to run it on CPU tensors)"


def backends() -> list[BackendInfo]:
    """Every backend, whether it can run on this machine, and why (not)."""
    info = [BackendInfo("eager", True, "PyTorch reference ops, always available")]
    if _ext._C is None:
        info.append(BackendInfo("cpu", False, f"extension not loaded ({_ext.load_error}); {_ext.BUILD_HINT}"))
        info.append(BackendInfo("cuda", False, "extension not loaded"))
    else:
        facts = _ext._C.build_info()
        info.append(BackendInfo("cpu", True, f"fused C++ kernels ({facts['cpu_capability']}, "
                                             f"{facts['openmp_threads']} threads)"))
        if "cuda" not in facts["backends"]:
            info.append(BackendInfo("cuda", False, "extension built without CUDA ops (at build time no GPU "
                                                   "visible with GENAD_CUDA=AUTO, no nvcc, a CPU-only torch, or "
                                                   "GENAD_CUDA=OFF)"))
        elif not torch.cuda.is_available():
            info.append(BackendInfo("cuda", False, f"CUDA ops compiled for {facts['cuda_archs']} "
                                                   "but no CUDA device is visible"))
        else:
            info.append(BackendInfo("cuda", True, f"CUDA ops compiled for {facts['cuda_archs']}"))
    ok, why = _triton_reason()
    info.append(BackendInfo("triton", ok, why))
    return info


def _check_runnable(name: str, device: torch.device) -> None:
    """Raise BackendUnavailableError when backend ``name`` cannot run on ``device`` tensors."""
    if name == "eager":
        return
    if name == "cpu":
        if _ext._C is None:
            raise BackendUnavailableError(
                f"backend 'cpu' needs the compiled extension, which is not loaded "
                f"({_ext.load_error}); {_ext.BUILD_HINT}")
        if device.type != "cpu":
            raise BackendUnavailableError(f"backend 'cpu' runs on CPU tensors, got {device.type} tensors")
        return
    if name == "cuda":
        if not _ext.has_cuda_kernels():
            raise BackendUnavailableError(
                "backend 'cuda' needs the extension built with its CUDA ops "
                f"({'not loaded' if _ext._C is None else 'this build has none'}); rebuild with GENAD_CUDA=ON")
        if device.type != "cuda":
            raise BackendUnavailableError(f"backend 'cuda' runs on CUDA tensors, got {device.type} tensors")
        return
    if name == "triton":
        ok, why = _triton_reason()
        if not ok:
            raise BackendUnavailableError(f"backend 'triton' cannot run: {why}")
        if device.type == "cpu" and not triton_interpreted():
            raise BackendUnavailableError(
                "backend 'triton' got CPU tensors; they run only in Triton's interpreter (TRITON_INTERPRET=1)")
        if device.type not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"backend 'triton' cannot run on {device.type} tensors")
        return
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'")


def requested_backend(backend: str | None) -> str:
    """The backend asked for: the argument, else ``GENAD_FAST_BACKEND``, else ``'auto'``."""
    if backend is not None and not isinstance(backend, str):  # e.g. backend=5: say so, not AttributeError
        raise ValueError(f"backend must be None or one of {', '.join(BACKENDS)}, 'auto', got {backend!r}")
    name = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    name = name.strip().lower() or "auto"
    if name != "auto" and name not in BACKENDS:
        source = "backend=" if backend is not None else f"{ENV_VAR}="
        raise ValueError(f"unknown backend {source}{name!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
    return name


def resolve(backend: str | None, device: torch.device | str, implemented: tuple[str, ...] = BACKENDS,
            op: str = "this op") -> str:
    """The backend that will run an op on ``device`` tensors.

    ``implemented`` lists the backends the op has; asking for another one by name is an error. This reads
    ``GENAD_FAST_BACKEND`` when ``backend`` is None: a caller that runs several ops builds one
    :class:`genad_fast.ops.Dispatch` instead, which resolves every op once (:func:`resolve_table`).
    """
    device = torch.device(device)
    return _choose(requested_backend(backend), device, implemented, op, lambda name: _check_runnable(name, device))


def resolve_table(requested: str, device: torch.device, table: dict[str, tuple[str, ...]]
                  ) -> dict[str, str | BackendUnavailableError]:
    """:func:`resolve` for every op of ``table`` (op -> the backends it has) at once, for the backend
    ``requested`` (a name or ``"auto"``, as :func:`requested_backend` returns it): per op the backend that runs
    it, or the error that says why the requested backend cannot. Each backend's runnability is checked once.

    Raises BackendUnavailableError when a backend asked for by name cannot run on ``device`` at all.
    """
    memo: dict[str, BackendUnavailableError | None] = {}

    def check(name: str) -> None:
        if name not in memo:
            try:
                _check_runnable(name, device)
                memo[name] = None
            except BackendUnavailableError as exc:
                memo[name] = exc
        if memo[name] is not None:
            raise memo[name]

    if requested != "auto":
        check(requested)
    out: dict[str, str | BackendUnavailableError] = {}
    for op, implemented in table.items():
        try:
            out[op] = _choose(requested, device, implemented, op, check)
        except BackendUnavailableError as exc:
            out[op] = exc
    return out


def _choose(name: str, device: torch.device, implemented: tuple[str, ...], op: str, check) -> str:
    """The rule of :func:`resolve` for the requested ``name``; ``check(backend)`` raises if it cannot run."""
    if name == "auto":
        if device.type == "cuda":
            order = ("cuda", "triton", "eager")
        elif device.type == "cpu":
            order = ("cpu", "eager")
        else:
            order = ("eager",)
        for candidate in order:
            if candidate not in implemented:
                continue
            try:
                check(candidate)
            except BackendUnavailableError:
                continue
            return candidate
        return "eager"
    if name not in implemented:
        raise BackendUnavailableError(f"{op} has no {name!r} implementation (it has: {', '.join(implemented)})")
    check(name)
    return name
