"""What a stream keeps of a scoring call between updates: the call itself and the plans its hooks build.

``decision_function`` opens a call (:mod:`genad_fast.detectors._call`: the backend read once, the op layer's
dispatch, the call's generators) and the detector's ``_score_context`` (the flow's inference plan: the layers
folded, the weights laid out) around each scoring pass, and drops them when it returns. A stream scoring a
window per timestamp cannot pay that set-up per update (the flow's plan costs several times the scoring of one
window), so :class:`HeldScope` builds them once, when the stream opens, and installs the same objects around
every update, on the updating thread, in a block that ends with the update (no context is left open between
updates, so streams of one detector can interleave on one thread and other calls see nothing of them).

What may be held: the call (always: nothing in it depends on the data) and the thread values that a listed
detector class's ``_score_context`` stores (:data:`HELD_CONTEXTS`; the flow's plan: built from the fitted
weights, the data dtype and the dispatch, all fixed for the stream; kNN's and KDE's reference set held packed
for the distance kernels; the autoencoder's and Deep SVDD's fused window scores). Any other ``_score_context`` is
entered anew around each update, which is always correct. DiffusionDetector's windows are scored through its own
``_score_series``; the stream holds its sampler with the chain's plan cached
(:mod:`genad_fast.streaming.diffusion`).

Thread safety: a stream belongs to one thread at a time (its buffers and plans are not locked); several streams
of one detector may run on several threads, each with its own plans, as several ``decision_function`` calls may.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from genad_fast.detectors._call import Call, call_scope, get_thread_value, thread_values
from genad_fast.detectors._scoring import ScoringMixin

__all__ = ["HELD_CONTEXTS", "HeldScope", "class_path_in_mro"]

#: Detector class (import path) -> the thread values its ``_score_context`` stores, which a stream holds.
HELD_CONTEXTS: dict[str, tuple[str, ...]] = {
    "genad_fast.detectors.flow:FlowDetector": ("scoring",),
    # the fused window score of the autoencoder and Deep SVDD (genad_fast.nn.conv_plan.HELD_KEY): their stages'
    # folded weights, the folded heads, the autoencoder's reference codes held packed for the density kernel
    "genad_fast.detectors._fused_score:FusedScoreMixin": ("fused_score",),
    # KNN, KDE: the reference set held packed for the cpu distance kernels (genad_fast.ops.distance.hold_refs)
    "genad_fast.detectors._reference_set:ReferenceSetDetector": ("held_refs",),
}


def class_path_in_mro(det: Any, paths: dict) -> str | None:
    """The first class of ``type(det)``'s MRO whose import path is a key of ``paths`` (the detector modules are
    not imported: they sit above this package, as :mod:`genad_fast.export._families` does)."""
    for cls in type(det).__mro__:
        path = f"{cls.__module__}:{cls.__qualname__}"
        if path in paths:
            return path
    return None


def _held_keys(det: Any) -> tuple[str, ...] | None:
    """The thread values to hold, () for the default context (nothing), None: enter the context per update."""
    cls = type(det)
    if cls._score_context is ScoringMixin._score_context:
        return ()
    path = class_path_in_mro(det, HELD_CONTEXTS)
    if path is None:
        return None
    owner = next(c for c in cls.__mro__ if f"{c.__module__}:{c.__qualname__}" == path)
    return HELD_CONTEXTS[path] if cls._score_context is owner._score_context else None


class HeldScope:
    """A scoring call of ``det`` on data of ``dtype``, built once and re-entered by :meth:`enter`."""

    def __init__(self, det: Any, dtype: torch.dtype) -> None:
        self.det, self.dtype = det, dtype
        self.values: dict[str, Any] = {}
        keys = _held_keys(det)
        self.per_update_context = keys is None
        grad = contextlib.nullcontext() if det.score_needs_grad else torch.inference_mode()
        with grad, call_scope(det, "score") as call:
            self.call: Call = call
            call.dispatch  # noqa: B018 - built now (a named backend that cannot run fails when the stream opens)
            if keys:
                with det._score_context(dtype):
                    self.values = {k: get_thread_value(det, k) for k in keys}

    def hold(self, key: str, value: Any) -> None:
        """Install ``value`` as the detector's thread value ``key`` around every update as well."""
        self.values[key] = value

    @contextlib.contextmanager
    def enter(self) -> Iterator[Call]:
        """The held call, its values and (if not held) the detector's ``_score_context``, for one update."""
        grad = contextlib.nullcontext() if self.det.score_needs_grad else torch.inference_mode()
        with grad, thread_values(self.det, [("call", self.call), *self.values.items()]):
            if not self.per_update_context:
                yield self.call
                return
            with self.det._score_context(self.dtype):
                yield self.call
