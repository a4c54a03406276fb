"""The scoring loops of :class:`~genad_fast.detectors.base.BaseDetector`: rows in batches, series window by
window, and the training data's scores (``decision_scores_``) without a second pass where the fit has them.

Series arrive packed: one tensor ``[Σ T_i, C]`` and its :class:`genad_fast.series.SeriesBatch` (one series, or
the parts of a collection, :mod:`genad_fast.detectors._collection`). The default loop draws batches of
``score_batch_size`` windows across series boundaries, so many short series cost as few ``_score_model``
calls as one long one, and cuts the window scores back per series for ``to_timestamps``.

Every scoring pass of a call runs in one block: gradients off (unless ``score_needs_grad``), the call's scope
(:mod:`genad_fast.detectors._call`) and the detector's ``_score_context`` (e.g. an inference plan built once
per call). What the hooks return is checked here, where a wrong shape is a bug of the detector, not of the data.
"""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import numpy as np
import torch

from genad_fast.detectors._extremes import infinite_timestamps
from genad_fast.series import SeriesBatch, WindowGrid

__all__ = ["ScoringMixin"]


class ScoringMixin:
    """Default ``_score_rows`` / ``_score_series`` and the hand-over of training scores; see base.py's hooks."""

    #: Rows (tabular) or windows (series) per ``_score_model`` call. A subclass may expose it as a
    #: constructor parameter of the same name.
    score_batch_size: int = 4096
    #: True for detectors whose scoring differentiates (AnoGAN's latent search): no inference_mode.
    score_needs_grad: ClassVar[bool] = False
    #: Fewest rows or windows a ``_score_model`` call gets: a smaller batch (a series' off-grid tail window, a
    #: series of one window, the last batch) is padded with copies of its first row. BLAS takes other code paths
    #: for one or two rows (gemv), whose sums round differently, and a row's score must not depend on the batch
    #: it lands in: alone, among the windows of a collection, or at another ``score_batch_size``. 16, not 8:
    #: oneDNN's float32 convolution (the convolutional autoencoders) rounds batches of 1 to 15 differently from
    #: larger ones on AVX-512 (measured: bench.stream's autoencoder, 8 channels, W = 32; 16 to 4096 agree).
    min_score_rows: ClassVar[int] = 16

    def _grid(self, T: int) -> WindowGrid:
        """The window grid of a series of ``T`` timestamps (``window``, ``stride``)."""
        return WindowGrid(T, self._window, int(self.stride))

    def _layout(self, lengths: tuple[int, ...]) -> SeriesBatch | None:
        """The windows of the series of ``lengths`` packed one after another (None for tabular data)."""
        return SeriesBatch(tuple(lengths), self._window, int(self.stride)) if self.is_series else None

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

    def _score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """``_score_model(batch)``, with a batch of fewer than ``min_score_rows`` padded (see there)."""
        b, need = batch.shape[0], int(self.min_score_rows)
        if b >= need or b == 0:
            return self._score_model(batch)
        s = self._score_model(torch.cat([batch, batch[:1].expand(need - b, *batch.shape[1:])]))
        return s[:b] if isinstance(s, torch.Tensor) and s.dim() >= 1 and s.shape[0] == need else s

    def _score_rows(self, rows: torch.Tensor) -> torch.Tensor:
        n, bs = rows.shape[0], int(self.score_batch_size)
        out = []
        for i in self._progress(range(0, n, bs), total=-(-n // bs), desc="score", unit="batch", long_only=True):
            s = self._score_batch(rows[i:i + bs])
            self._check_hook_output("_score_model", s, (min(bs, n - i),))
            out.append(s)
        return torch.cat(out) if len(out) != 1 else out[0]

    def _score_series(self, series: torch.Tensor, layout: SeriesBatch) -> torch.Tensor:
        bs = int(self.score_batch_size)
        out = []
        for batch in self._progress(layout.batches(series, bs), total=layout.n_batches(bs), desc="score",
                                    unit="batch", long_only=True):
            s = self._check_window_scores(self._score_batch(batch), batch.shape[0], layout.W)
            if out and s.dim() != out[0].dim():
                raise RuntimeError(f"{type(self).__name__}._score_model returned scores of different ranks "
                                   f"for different batches")
            out.append(s)
        scores = torch.cat(out) if len(out) != 1 else out[0]
        return layout.to_timestamps(scores, self.reduce)

    # ------------------------------------------------------------------ the passes the base runs
    def _packed_scores(self, data: Any) -> np.ndarray:
        """float64 scores of a checked input (:class:`genad_fast.detectors._collection.Packed`), one per row or
        timestamp of the packing: normalised, scored, +inf where an extreme value was, checked."""
        layout = self._layout(data.lengths)
        scores = self._score_normalized(self._apply_normalizer(data.x), layout=layout)
        if data.extreme_rows is not None:
            rows = data.extreme_rows.cpu()
            if not self.is_series:
                scores[rows.numpy()] = np.inf
            else:  # per series, over its own windows
                offsets = torch.tensor(layout.offsets)
                for i in torch.unique(torch.searchsorted(offsets, rows.nonzero().flatten(), right=True) - 1).tolist():
                    a, b = layout.offsets[i], layout.offsets[i + 1]
                    scores[a:b][infinite_timestamps(rows[a:b], layout.grids[i], self.reduce).numpy()] = np.inf
        self._check_scores(scores)
        return scores

    def _score_normalized(self, z: torch.Tensor, training: bool = False,
                          layout: SeriesBatch | None = None) -> np.ndarray:
        """float64 scores of normalised data ``z`` (series: packed as ``layout``, default one series), one per row
        or timestamp. ``training``: the data just fitted on, whose scores come from ``_training_scores`` when the
        detector has them."""
        if self.is_series and layout is None:
            layout = self._layout((z.shape[0],))
        grad = contextlib.nullcontext() if self.score_needs_grad else torch.inference_mode()
        with grad, self._call_scope("score"), self._score_context(z.dtype):
            given = self._training_scores() if training else None
            if given is None:
                scores, hook = (self._score_series(z, layout), "_score_series") if self.is_series else \
                    (self._score_rows(z), "_score_rows")
            elif self.is_series:
                scores, hook = self._complete_series(z, layout, given), "_training_scores"
            else:
                scores, hook = given, "_training_scores"
        self._check_hook_output(hook, scores, (z.shape[0],))
        return scores.detach().to(device="cpu", dtype=torch.float64).numpy()

    def _complete_series(self, series: torch.Tensor, layout: SeriesBatch, grid_scores: torch.Tensor) -> torch.Tensor:
        """Per-timestamp scores from the training scores of the grid windows, plus each series' end window if
        off-grid (new to the model: scored as any window, all series' together)."""
        tail = layout.is_tail(series.device)
        n_tails = int(tail.sum())
        scores = self._check_window_scores(grid_scores, layout.n_windows - n_tails, layout.W, "_training_scores")
        if n_tails:
            if layout.n_series == 1:
                windows = series[series.shape[0] - layout.W:].unsqueeze(0)
            else:
                windows = layout.windows_at(series, layout.starts(series.device)[tail])
            bs = int(self.score_batch_size)
            tails = torch.cat([self._check_window_scores(self._score_batch(windows[i:i + bs]),
                                                         min(bs, n_tails - i), layout.W)
                               for i in range(0, n_tails, bs)])
            if tails.dim() != scores.dim():
                raise RuntimeError(f"{type(self).__name__}._score_model and _training_scores returned scores of "
                                   f"different ranks")
            full = scores.new_empty((layout.n_windows, *scores.shape[1:]))
            full[~tail], full[tail] = scores, tails.to(scores.dtype)
            scores = full
        return layout.to_timestamps(scores, self.reduce)

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
        if (scores > -np.inf).all():  # one pass for the common case: NaN and -inf both fail the comparison
            return
        bad = np.isnan(scores) | np.isneginf(scores)
        if bad.any():
            raise RuntimeError(f"{type(self).__name__} produced {int(bad.sum())} NaN/-inf score(s) of {scores.size} "
                               f"from finite input (the first at {'timestamp' if self.is_series else 'row'} "
                               f"{int(np.argmax(bad))}); this is a bug: please report it with the data's shape "
                               f"and value range")
