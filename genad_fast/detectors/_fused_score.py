"""Detectors whose windows score through a fused score object on a compiled backend (the autoencoder, the VAE,
Deep SVDD).

The detector builds the object once per scoring call in :meth:`FusedScoreMixin._score_context`
(``_fused_score(dispatch, dtype)``: None where the modules score, e.g. on the eager backend, the reference, or for
tabular rows), keeps it as the thread value :data:`~genad_fast.nn.conv_plan.HELD_KEY` for the call, and its
``_score_model`` scores through it when there is one (:meth:`FusedScoreMixin._held_fused_score`). A stream holds the
same object for all its updates (:data:`genad_fast.streaming.scope.HELD_CONTEXTS`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from genad_fast.detectors._call import current_call, get_thread_value, thread_value
from genad_fast.nn.blocks import ConvEncoder
from genad_fast.nn.conv_plan import HELD_KEY

__all__ = ["FusedScoreMixin"]


class FusedScoreMixin:
    """``_score_context`` installing ``self._fused_score(dispatch, dtype)`` for the call (module docstring)."""

    def _fused_score(self, dispatch: Any, dtype: torch.dtype) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _fused_score(dispatch, dtype)")

    @staticmethod
    def _fuses(encoder: Any, dispatch: Any, dtype: torch.dtype, *ops: str) -> bool:
        """Whether a fused score can run: a convolutional encoder (windows; rows go through an MLP), float32 or
        float64 data, and compiled kernels of ``conv1d_act`` and ``ops`` in ``dispatch`` (the eager backend, the
        reference, runs the modules)."""
        return isinstance(encoder, ConvEncoder) and dtype in (torch.float32, torch.float64) and \
            all(dispatch.has(op) for op in ("conv1d_act", *ops))

    @contextlib.contextmanager
    def _score_context(self, dtype: torch.dtype) -> Iterator[None]:
        """The call's fused score (``_fused_score``) as the thread value ``HELD_KEY``, which a stream keeps."""
        with thread_value(self, HELD_KEY, self._fused_score(current_call(self).dispatch, dtype)):
            yield

    def _held_fused_score(self) -> Any:
        """The fused score of the scoring call (or stream) this thread is in, or None: score with the modules."""
        return get_thread_value(self, HELD_KEY)
