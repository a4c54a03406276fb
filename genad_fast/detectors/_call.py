"""What one fit or scoring call of a detector builds, kept per thread and per call, never on the detector.

A fitted detector is shared between threads (DESIGN.md, "Scale and serve"): several threads may score it at
once. Anything a call builds (an inference plan and its buffers, random generators, the backend read from
``GENAD_FAST_BACKEND``) therefore lives in a :class:`Call`, opened by the base class around each fit and each
scoring call (``BaseDetector._call_scope``) and found again by the detector's hooks with
:func:`current_call`. Calls are kept in a thread-local table keyed by the detector, so two threads scoring
one detector each see their own call, and a call nested inside another on the same thread (none today)
gets its own and gives the outer one back when it ends.

Randomness. No detector draws from the process-global torch or numpy RNG: it is shared by every thread of
the process (a draw there changes what other threads draw, and their draws change ours). A call's random
numbers come from :meth:`Call.generator`: one ``torch.Generator`` per name and call, seeded from the
detector's ``seed_``, the call's purpose and the name, created at its first use and kept for the rest of the
call, so that the batches of one call continue one stream and every call (in any thread or process) draws
the same numbers as any other with the same seed and input.

Backend. ``Call.backend`` is the backend asked for (the ``backend`` parameter, else ``GENAD_FAST_BACKEND``,
else ``"auto"``), read once when the call opens; it is never None. ``Call.dispatch`` is the op layer's choice
for the call (:class:`genad_fast.ops.Dispatch`: per op the backend that runs it on the detector's device, and
its kernels), built from it at its first use and kept for the rest of the call. Detectors hand the dispatch to
every op, model, inference plan and loop (``backend=call.dispatch``), so nothing below resolves a backend or
reads the environment again in the middle of a call.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from genad_fast import _backend
from genad_fast.ops import Dispatch

__all__ = ["Call", "build_network", "call_scope", "current_call", "get_thread_value", "thread_value",
           "thread_values"]

_LOCAL = threading.local()


def _table() -> dict[tuple[int, str], Any]:
    table = getattr(_LOCAL, "table", None)
    if table is None:
        table = _LOCAL.table = {}
    return table


@contextlib.contextmanager
def thread_value(owner: object, key: str, value: Any) -> Iterator[Any]:
    """``value`` stored for ``owner`` under ``key`` on this thread while the block runs (:func:`get_thread_value`);
    a value stored there before comes back afterwards."""
    with thread_values(owner, [(key, value)]):
        yield value


class thread_values:  # noqa: N801 - a context manager, named like the function it generalises
    """:func:`thread_value` for several ``(key, value)`` pairs of ``owner`` in one block, without a generator per
    value: a stream installs its held call and plans around every update (a window per timestamp), where a
    context manager per value cost as much as a small model's forward. One instance per block (not reentrant)."""

    __slots__ = ("_slots", "_values", "_outer", "_table")
    _MISSING = object()

    def __init__(self, owner: object, items: list[tuple[str, Any]]) -> None:
        self._slots = [(id(owner), key) for key, _ in items]
        self._values = [value for _, value in items]

    def __enter__(self) -> "thread_values":
        table = self._table = _table()
        self._outer = [table.get(slot, self._MISSING) for slot in self._slots]
        for slot, value in zip(self._slots, self._values):
            table[slot] = value
        return self

    def __exit__(self, *exc: object) -> None:
        for slot, outer in zip(reversed(self._slots), reversed(self._outer)):
            if outer is self._MISSING:
                del self._table[slot]
            else:
                self._table[slot] = outer


def get_thread_value(owner: object, key: str, default: Any = None) -> Any:
    """What :func:`thread_value` stored for ``owner`` under ``key`` on this thread, else ``default``."""
    return _table().get((id(owner), key), default)


@dataclass
class Call:
    """One fit or scoring call: its purpose, the backend asked for, its dispatch and its generators.

    ``make_generator(purpose, device)`` is the detector's ``_torch_generator``; ``device`` the detector's
    ``device_`` when the call opened (None before a fit has chosen one). What else a hook builds for the call
    (an inference plan) it keeps with :func:`thread_value` around the work, never on the detector.
    """

    purpose: str
    backend: str
    make_generator: Callable[[str, Any], torch.Generator]
    device: torch.device | None = None
    _generators: dict[tuple[str, str], torch.Generator] = field(default_factory=dict)
    _dispatch: Dispatch | None = None

    @property
    def dispatch(self) -> Dispatch:
        """The op layer's backend choice for this call on the detector's device (built once, at first use)."""
        if self._dispatch is None:
            if self.device is None:
                raise RuntimeError("the call has no device yet: the detector chooses it when fit starts")
            self._dispatch = Dispatch.build(self.backend, self.device)
        return self._dispatch

    def generator(self, name: str, device: torch.device | str) -> torch.Generator:
        """The call's generator ``name`` on ``device``: seeded from the detector's seed and ``"<purpose>/<name>"``
        at its first use in this call, then continued (a random draw of the call's second batch follows the
        first's)."""
        key = (name, str(torch.device(device)))
        g = self._generators.get(key)
        if g is None:
            g = self._generators[key] = self.make_generator(f"{self.purpose}/{name}", device)
        return g


def _new_call(detector: Any, purpose: str) -> Call:
    return Call(purpose, _backend.requested_backend(detector.backend), detector._torch_generator,
                getattr(detector, "device_", None))


@contextlib.contextmanager
def call_scope(detector: Any, purpose: str) -> Iterator[Call]:
    """Open a :class:`Call` of ``detector`` for this thread (``purpose``: ``"fit"`` or ``"score"``)."""
    with thread_value(detector, "call", _new_call(detector, purpose)) as call:
        yield call


def current_call(detector: Any, purpose: str = "score") -> Call:
    """The call ``detector`` is in on this thread. Outside any (a hook called directly), a new call of its own,
    which lasts as long as the caller keeps it."""
    call = get_thread_value(detector, "call")
    return call if call is not None else _new_call(detector, purpose)


def build_network(detector: Any, factory: Callable[[], torch.nn.Module], name: str) -> Any:
    """``factory()`` built on the meta device, initialised from the detector's own generator for ``name`` (a CPU
    generator seeded from ``seed_`` and ``"init/<name>"``; :func:`genad_fast.nn.init.build_module`), on
    ``device_``: the same weights for the same seed on every device, thread and process, and no draw from the
    global RNG (also when a model file is loaded, whose weights then replace these)."""
    from genad_fast.nn.init import build_module

    return build_module(factory, detector._torch_generator(f"init/{name}", device="cpu"), detector.device_)
