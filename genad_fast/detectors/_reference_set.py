"""The shared machinery of the detectors whose model *is* the training data (KDE, kNN): the reference set,
its save/load, and leave-one-out scores for the training data.

Fit keeps the training rows ``[N, D]`` (tabular) or the flattened grid windows ``[n, W·C]`` (series) as
``reference_``, contiguous on ``device_``. A new point is scored against all of them by
``_score_against(x, exclude_self=False)``, which the subclass implements with a fused op.

The training data's own scores (``decision_scores_``, hence ``threshold_``) are leave-one-out: training row
(window) i is scored against the others (``exclude_self=True`` of :func:`genad_fast.ops.kde_logpdf` /
:func:`genad_fast.ops.knn_distance`). Scoring it as a new point would count it as its own neighbour (distance
0, the largest kernel term) and make the training scores, and the threshold, optimistic. The base class scores
the training scores from ``_training_scores`` (as :class:`~genad_fast.detectors.sklearn_baselines.LOFDetector`
does); in series mode with an off-grid end-aligned window, the base scores that window as a new point (it is
not in the reference set).

Series: leaving one window out is not leaving its neighbourhood in time out. A training window's nearest
other windows are mostly nearby in time (overlapping ones, or a period away in a slowly changing signal),
which a new stretch of the series does not have: on ``make_series(T=8000, C=4, period=32)`` with window 16
and kNN (k = 5), 74% of the windows of a held-out clean half of the training series score above the 0.9
quantile of the leave-one-out scores of the other half (excluding the W − 1 overlapping windows as well
changes the quantile by 0.3%). The ranking (AUROC) is not affected; for a threshold that holds on new data,
use ``set_threshold`` on held-out normal data.

Scoring calls hold the reference set packed (:func:`genad_fast.ops.distance.hold_refs`): the cpu kernels pack
it for their register tile once per call, not once per batch, and a stream (which keeps the call's context for
its life, :mod:`genad_fast.streaming.scope`) packs it once per stream instead of once per update (about 6 ms for
2,000 windows of 256 values, against 0.1 ms for the distances of one window). A refit makes a new
``reference_`` tensor, which the next call holds afresh; an in-place write to ``reference_`` is seen (its
version counter moves) and repacked.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from genad_fast.detectors._call import thread_value
from genad_fast.detectors.base import BaseDetector
from genad_fast.ops.distance import hold_refs


class ReferenceSetDetector(BaseDetector):
    """A detector that scores against its training rows (or windows); see the module docstring."""

    #: The fused ops keep memory O(N + M) whatever the batch: large batches pack the references fewer times.
    score_batch_size = 65536

    # ---- what a subclass provides -----------------------------------------------------------------
    def _fit_reference(self, reference: torch.Tensor) -> None:
        """Anything fitted besides the reference set (e.g. the bandwidth); ``reference`` is ``[n, F]``."""

    def _score_against(self, x: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        """Scores ``[b]`` of rows ``x [b, F]`` against ``self.reference_`` (``x`` is the reference set itself
        when ``exclude_self``)."""
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _set_extra_state(self, state: dict) -> None:
        pass

    # ---- hooks --------------------------------------------------------------------------------------
    def _fit_model(self, data: torch.Tensor) -> None:
        self.reference_ = data.reshape(data.shape[0], -1).contiguous()
        if self.reference_.data_ptr() == data.data_ptr():  # never alias the caller's (normalised) tensor
            self.reference_ = self.reference_.clone()
        self._fit_reference(self.reference_)

    @contextlib.contextmanager
    def _score_context(self, dtype: torch.dtype) -> Iterator[None]:
        """The reference set held packed for the call (thread value ``"held_refs"``, which a stream keeps: see the
        module docstring). Not released when the block ends: the hold lives as long as a reference to it (the
        call's, or a stream's), so a stream that took it keeps it."""
        refs = getattr(self, "reference_", None)
        held = None
        if isinstance(refs, torch.Tensor) and refs.device.type == "cpu" and not refs.is_inference():
            held = hold_refs(refs)
        with thread_value(self, "held_refs", held):
            yield

    def _training_scores(self) -> torch.Tensor:
        return self._score_against(self.reference_, True)  # leave-one-out: each row (window) among the others

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        return self._score_against(batch.reshape(batch.shape[0], -1), False)

    def _get_state(self) -> dict:
        return {"reference": self.reference_, **self._extra_state()}

    def _set_state(self, state: dict) -> None:
        self.reference_ = state["reference"].to(device=self.device_, dtype=self._data_dtype()).contiguous()
        self._set_extra_state(state)
