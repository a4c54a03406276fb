"""The backend choice of one call, made once: which backend runs each op on one device, and its kernels.

The op layer owns the choice (DESIGN.md, "Backends"): ``backend=`` > ``GENAD_FAST_BACKEND`` > auto, per op
among the backends it has (:data:`genad_fast.ops.schema.IMPLEMENTED`). A caller that runs many ops — a
detector's fit or scoring call, a model, an inference plan, a sampling or search loop — builds one
:class:`Dispatch` and hands it down, so the environment is read once and nothing below resolves again::

    d = Dispatch.build(backend, device)   # reads GENAD_FAST_BACKEND here when backend is None
    d.backend_of("coupling_forward")      # "cpu", "cuda", "triton" or "eager"
    d.has("linear_act")                   # a compiled kernel runs it here (False: eager, or the backend has none)
    d.kernel("coupling_forward")          # its kernel, torch.ops.<library>.coupling_forward
    ops.coupling_forward(x, h, backend=d) # every public op takes it as its backend=

A backend asked for by name that cannot run on the device fails when the dispatch is built; one that runs but
lacks an op (``linear_act`` has no Triton kernel) fails only when that op is asked for, with the reason:
:meth:`Dispatch.has` answers the question without an exception.
"""
from __future__ import annotations

import torch

from genad_fast import _backend
from genad_fast._backend import BackendUnavailableError
from genad_fast.ops.schema import IMPLEMENTED, namespace_of

__all__ = ["Dispatch", "kernel", "kernel_or_eager", "select"]


class Dispatch:
    """Per op, the backend that runs it on ``device`` tensors; immutable, so calls and threads may share one.

    Attributes: ``requested`` (the backend asked for: a name or ``"auto"``), ``device`` (the device its
    choices are for; ops refuse tensors of another device type). Build it with :meth:`build`.
    """

    __slots__ = ("requested", "device", "_choice")

    def __init__(self, requested: str, device: torch.device,
                 choice: dict[str, str | BackendUnavailableError]) -> None:
        self.requested = requested
        self.device = device
        self._choice = dict(choice)

    @classmethod
    def build(cls, backend: str | None, device: torch.device | str) -> "Dispatch":
        """Resolve every op for ``backend`` (None: ``GENAD_FAST_BACKEND``, else ``"auto"``) on ``device``.

        Raises ValueError for an unknown backend name and BackendUnavailableError when a backend asked for by
        name cannot run on ``device`` (the message says why)."""
        requested = _backend.requested_backend(backend)
        device = torch.device(device)
        return cls(requested, device, _backend.resolve_table(requested, device, IMPLEMENTED))

    @property
    def ops(self) -> tuple[str, ...]:
        """The op names it answers for (the schemas of :mod:`genad_fast.ops.schema`)."""
        return tuple(self._choice)

    def _get(self, op: str) -> str | BackendUnavailableError:
        try:
            return self._choice[op]
        except KeyError:
            raise ValueError(f"unknown op {op!r}; the ops are {', '.join(self._choice)}") from None

    def backend_of(self, op: str, device: torch.device | None = None) -> str:
        """The backend that runs ``op``: ``"eager"``, ``"cpu"``, ``"cuda"`` or ``"triton"``.

        Raises BackendUnavailableError when the backend asked for has no kernel for ``op``, and ValueError when
        ``device`` (the tensors' device, if given) is of another type than the dispatch's."""
        if device is not None and device.type != self.device.type:
            raise ValueError(f"{op}: the tensors are on {device.type}, but the backend was chosen for "
                             f"{self.device.type} tensors; build a Dispatch for their device")
        choice = self._get(op)
        if isinstance(choice, BackendUnavailableError):
            raise BackendUnavailableError(str(choice))
        return choice

    def has(self, op: str) -> bool:
        """Whether a compiled kernel (cpu, cuda or triton) runs ``op``; False when it runs eagerly or when the
        backend asked for has no kernel for it."""
        choice = self._get(op)
        return isinstance(choice, str) and choice != "eager"

    def kernel(self, op: str):
        """The kernel that runs ``op`` (an OpOverloadPacket of ``torch.ops.genad_fast`` or
        ``torch.ops.genad_fast_triton``, taking the schema's arguments). BackendUnavailableError, saying why,
        when ``op`` runs eagerly or the backend asked for has no kernel for it."""
        chosen = self.backend_of(op)
        if chosen == "eager":
            raise BackendUnavailableError(f"{op} runs on the eager backend here (backend {self.requested!r} on "
                                          f"{self.device.type} tensors): it has no compiled kernel to call")
        return kernel(op, chosen)

    def __repr__(self) -> str:
        per_op = ", ".join(f"{op}={c if isinstance(c, str) else 'unavailable'}" for op, c in self._choice.items())
        return f"Dispatch(requested={self.requested!r}, device={str(self.device)!r}: {per_op})"


def select(op: str, backend: "str | None | Dispatch", device: torch.device) -> str:
    """The backend that runs ``op`` on ``device`` tensors: read from a :class:`Dispatch`, or resolved now from a
    name (None: ``GENAD_FAST_BACKEND``, else auto) for one direct call of a public op."""
    if isinstance(backend, Dispatch):
        return backend.backend_of(op, device)
    return _backend.resolve(backend, device, IMPLEMENTED[op], op=op)


def kernel_or_eager(op: str, backend: "str | None | Dispatch") -> "str | None | Dispatch":
    """The backend to run ``op`` with inside a call on ``backend``: ``backend`` itself where it has a kernel for
    ``op``, else ``"eager"`` (the composite of ATen ops). For a module that calls a fused op among ATen ops, as the
    Triton backend has no kernel for some of them: there the module runs them as ATen's, like its products. A name
    (or None) is resolved as the ops resolve it, so ``"CPU"``, ``"auto"`` and ``GENAD_FAST_BACKEND=triton`` mean
    what they mean to the ops."""
    if isinstance(backend, Dispatch):
        return backend if backend.has(op) else "eager"
    # a name as the ops read it: any case, None for GENAD_FAST_BACKEND (else "auto"); "auto" picks among the op's own
    name = _backend.requested_backend(backend)
    return name if name == "auto" or name in IMPLEMENTED[op] else "eager"


def kernel(op: str, backend: str):
    """``torch.ops.<library>.<op>`` of a compiled ``backend`` ("cpu", "cuda" or "triton")."""
    library = getattr(torch.ops, namespace_of(backend))
    try:
        return getattr(library, op)
    except AttributeError:
        raise BackendUnavailableError(f"the loaded {namespace_of(backend)} library has no kernel {op!r}; rebuild "
                                      f"the extension") from None
