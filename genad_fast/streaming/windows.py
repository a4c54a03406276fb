"""Scores of a stream's windows, by the detector's own scoring code.

- Detectors that score windows (``_score_model``): batches of at most ``score_batch_size`` windows through
  ``_score_batch`` (batches smaller than ``min_score_rows`` padded, as the batch path pads them: a window's score
  does not depend on the batch it lands in, :mod:`genad_fast.detectors._scoring`), the same views of
  contiguous rows as ``decision_function`` passes. Scores ``[m]`` or ``[m, W]``. With ``exact=False`` (a
  stream's lowest-latency mode) ``_score_model`` gets the update's windows as they are: a chunk of one
  timestamp costs one window's forward instead of ``min_score_rows`` (16) copies of it, and its score differs
  from the padded batch's by the rounding of BLAS's/oneDNN's small-batch kernels (float32: ~1e-6 relative,
  measured for the flow and the autoencoder; tests/test_stream.py bounds it).
- Detectors that score whole series their own way (``_score_series`` overridden: DiffusionDetector): each window
  is a series of its own, all of an update's windows packed into one ``_score_series`` call
  (:class:`genad_fast.series.SeriesBatch`), per-timestamp scores ``[m, W]`` (:mod:`genad_fast.streaming.diffusion`).

Windows holding an extreme value are scored with it replaced; which timestamps score +inf is the reduction's
business (:class:`genad_fast.streaming.causal.PendingScores`), as in ``decision_function``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from genad_fast.detectors._scoring import ScoringMixin
from genad_fast.nn.flow.plan import FlowInference
from genad_fast.series import SeriesBatch
from genad_fast.streaming.diffusion import DIFFUSION, held_sampler
from genad_fast.streaming.scope import HeldScope, class_path_in_mro

__all__ = ["SMALL_BATCH", "WindowScorer"]

#: Windows per batch below which an unpadded stream (``exact=False``) runs the flow's plan without oneDNN's
#: prepacked linears (``FlowInference(prepacked=False)``): for a window or two, ``addmm`` and GELU cost less
#: (measured 1.1 against 1.5 ms CPU for one 32 x 8 window, hidden 128, 4 steps), larger batches keep the plan.
SMALL_BATCH = 16


class WindowScorer:
    """``scorer(windows [m, W, C]) -> float64 [m] or [m, W]`` inside the stream's held call; ``exact``: pad small
    batches as the batch path does (same bits), else score them as they are (module docstring)."""

    def __init__(self, det: Any, scope: HeldScope, exact: bool) -> None:
        self.det, self.scope = det, scope
        self._model = det._score_batch if exact else det._score_model
        self.whole_series = type(det)._score_series is not ScoringMixin._score_series
        if self.whole_series and class_path_in_mro(det, DIFFUSION) is not None:
            with scope.enter():
                scope.hold("sampler", held_sampler(det))
                if det._uses_window_loss():  # its inference plan, built once for the stream (about 5 ms a call)
                    scope.hold("window_loss", det._window_loss_for_call(det.device_))
        if not exact:
            _hold_small_batch_flow(det, scope)
        self._run: Callable[[torch.Tensor], torch.Tensor] = self._as_series if self.whole_series else self._as_windows

    def __call__(self, windows: torch.Tensor) -> np.ndarray:
        m = windows.shape[0]
        bs = int(self.det.score_batch_size)
        with self.scope.enter():
            if m <= bs:  # a stream's update: one batch
                scores = self._run(windows)
            else:
                scores = torch.cat([self._run(windows[i:i + bs]) for i in range(0, m, bs)])
        if scores.device.type == "cpu":  # one NumPy cast instead of a torch one (a few scores per update)
            return scores.detach().numpy().astype(np.float64)
        return scores.detach().to(device="cpu", dtype=torch.float64).numpy()

    def _as_windows(self, batch: torch.Tensor) -> torch.Tensor:
        det = self.det
        return det._check_window_scores(self._model(batch), batch.shape[0], batch.shape[1])

    def _as_series(self, batch: torch.Tensor) -> torch.Tensor:
        m, W, C = batch.shape
        layout = SeriesBatch((W,) * m, W, 1)
        scores = self.det._score_series(batch.reshape(m * W, C), layout)
        self.det._check_hook_output("_score_series", scores, (m * W,))
        return scores.reshape(m, W)


def _hold_small_batch_flow(det: Any, scope: HeldScope) -> None:
    """Where the stream holds a flow's plan with prepacked linears and float32 products (the flow's ``"scoring"``
    value is the plan's ``log_prob``), hold a second plan without them, built once, for batches under
    :data:`SMALL_BATCH` windows (scores equal to rounding, as ``exact=False`` allows)."""
    log_prob = scope.values.get("scoring")
    plan = getattr(log_prob, "__self__", None)
    if not isinstance(plan, FlowInference) or not plan.onednn or plan.mdtype != plan.dtype:
        return
    small = FlowInference(det.model_, plan.dtype, backend=scope.call.dispatch, prepacked=False).log_prob

    def scoring(x: torch.Tensor) -> torch.Tensor:
        return small(x) if x.shape[0] < SMALL_BATCH else log_prob(x)

    scope.hold("scoring", scoring)
