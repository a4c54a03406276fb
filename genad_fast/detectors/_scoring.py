"""The scoring loops of :class:`~genad_fast.detectors.base.BaseDetector`: rows in batches, a series window by
window, and the training data's scores (``decision_scores_``) without a second pass where the fit has them.

Every scoring pass of a call runs in one block: gradients off (unless ``score_needs_grad``), the call's scope
(:mod:`genad_fast.detectors._call`) and the detector's ``_score_context`` (e.g. an inference plan built once
per call). What the hooks return is checked here, where a wrong shape is a bug of the detector, not of the data.
"""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import numpy as np
import torch

from genad_fast.series import WindowGrid

__all__ = ["ScoringMixin"]


class ScoringMixin:
    """Default ``_score_rows`` / ``_score_series`` and the hand-over of training scores; see base.py's hooks."""

    #: Rows (tabular) or windows (series) per ``_score_model`` call. A subclass may expose it as a
    #: constructor parameter of the same name.
    score_batch_size: int = 4096
    #: True for detectors whose scoring differentiates (AnoGAN's latent search): no inference_mode.
    score_needs_grad: ClassVar[bool] = False

    def _grid(self, T: int) -> WindowGrid:
        """The window grid of a series of ``T`` timestamps (``window``, ``stride``)."""
        return WindowGrid(T, int(self.window), int(self.stride))

    # ------------------------------------------------------------------ hooks with defaults
    def _score_context(self, dtype: torch.dtype) -> contextlib.AbstractContextManager:
        """Open around every scoring pass of a call (data of ``dtype``): the place for per-call set-up such as an
        inference plan, kept per thread (:func:`genad_fast.detectors._call.thread_value`). Default: nothing."""
        return contextlib.nullcontext()

    def _training_scores(self) -> torch.Tensor | None:
        """The scores of the training data that the fit already computed, handed over instead of a second
        scoring pass: ``[N]`` for rows, ``[n_grid]`` or ``[n_grid, W]`` for the grid windows ``_fit_model`` got
        (the base adds the off-grid end window, if any, and combines per timestamp). They must equal what
        ``_score_model`` gives those rows/windows (or be what the detector defines as its training scores,
        such as leave-one-out ones). Called once, right after the fit, in a scoring call. Default: None."""
        return None

    def _score_rows(self, rows: torch.Tensor) -> torch.Tensor:
        n, bs = rows.shape[0], int(self.score_batch_size)
        out = []
        for i in self._progress(range(0, n, bs), total=-(-n // bs), desc="score", unit="batch", long_only=True):
            s = self._score_model(rows[i:i + bs])
            self._check_hook_output("_score_model", s, (min(bs, n - i),))
            out.append(s)
        return torch.cat(out) if len(out) != 1 else out[0]

    def _score_series(self, series: torch.Tensor) -> torch.Tensor:
        grid, bs = self._grid(series.shape[0]), int(self.score_batch_size)
        out = []
        for batch in self._progress(grid.batches(series, bs), total=grid.n_batches(bs), desc="score", unit="batch",
                                    long_only=True):
            s = self._check_window_scores(self._score_model(batch), batch.shape[0], grid.W)
            if out and s.dim() != out[0].dim():
                raise RuntimeError(f"{type(self).__name__}._score_model returned scores of different ranks "
                                   f"for different batches")
            out.append(s)
        scores = torch.cat(out) if len(out) != 1 else out[0]
        return grid.to_timestamps(scores, self.reduce)

    # ------------------------------------------------------------------ the passes the base runs
    def _score_normalized(self, z: torch.Tensor, training: bool = False) -> np.ndarray:
        """float64 scores of normalised data ``z``, one per row or timestamp. ``training``: the data just fitted
        on, whose scores come from ``_training_scores`` when the detector has them."""
        grad = contextlib.nullcontext() if self.score_needs_grad else torch.inference_mode()
        with grad, self._call_scope("score"), self._score_context(z.dtype):
            given = self._training_scores() if training else None
            if given is None:
                scores, hook = (self._score_series(z), "_score_series") if self.is_series else \
                    (self._score_rows(z), "_score_rows")
            elif self.is_series:
                scores, hook = self._complete_series(z, given), "_training_scores"
            else:
                scores, hook = given, "_training_scores"
        self._check_hook_output(hook, scores, (z.shape[0],))
        return scores.detach().to(device="cpu", dtype=torch.float64).numpy()

    def _complete_series(self, series: torch.Tensor, grid_scores: torch.Tensor) -> torch.Tensor:
        """Per-timestamp scores from the training scores of the grid windows, plus the end window if off-grid."""
        grid = self._grid(series.shape[0])
        scores = self._check_window_scores(grid_scores, grid.n_grid, grid.W, "_training_scores")
        if grid.has_tail:  # the end-aligned window is new to the model: scored as any window
            tail = self._check_window_scores(self._score_model(series[grid.T - grid.W:].unsqueeze(0)), 1, grid.W)
            scores = torch.cat([scores, tail])
        return grid.to_timestamps(scores, self.reduce)

    # ------------------------------------------------------------------ checks of the hooks' output
    def _check_window_scores(self, s: Any, b: int, W: int, hook: str = "_score_model") -> torch.Tensor:
        if not (isinstance(s, torch.Tensor) and tuple(s.shape) in ((b,), (b, W))):
            raise RuntimeError(f"{type(self).__name__}.{hook} must return [{b}] or [{b}, {W}] scores "
                               f"for {b} windows, got {getattr(s, 'shape', type(s).__name__)}")
        return s

    def _check_hook_output(self, hook: str, s: Any, shape: tuple[int, ...]) -> None:
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != shape:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise RuntimeError(f"{type(self).__name__}.{hook} must return a tensor of shape {list(shape)}, got {got}")

    def _check_scores(self, scores: np.ndarray) -> None:
        """A score is finite or +inf; NaN or -inf means the model's arithmetic broke: an error, never a silent
        'normal'."""
        bad = np.isnan(scores) | np.isneginf(scores)
        if bad.any():
            raise RuntimeError(f"{type(self).__name__} produced {int(bad.sum())} NaN/-inf score(s) of {scores.size} "
                               f"from finite input (the first at {'timestamp' if self.is_series else 'row'} "
                               f"{int(np.argmax(bad))}); this is a bug: please report it with the data's shape "
                               f"and value range")
