"""The exported scorer: raw rows or windows in, one score per row or window out.

:class:`ScoreGraph` wraps a family's scorer (:mod:`genad_fast.export._families`, a module from normalised input
to scores) with what the detector's ``decision_function`` does around ``_score_model``:

1. the extreme-value guard (:mod:`genad_fast.detectors._extremes`): an entry with
   ``|x - mean| > EXTREME_SIGMAS · scale`` (training mean and standard deviation, computed in float64) is
   replaced by its column's mean before the model sees it, and its row (window) scores ``+inf``. Non-finite
   entries (NaN, ±inf) count as extreme here too: ``decision_function`` refuses them with a ValueError, but a
   server cannot raise per row, and a score must never be NaN;
2. the normaliser, ``(x - mean) / scale`` in float32 as :class:`genad_fast.series.Normalizer` applies it;
3. the scorer; its scores as float32.

Input ``x``: float32 ``[N, D]`` (tabular) or ``[N, W, C]`` (the windows of a series detector). Output: float32
``[N]``, or ``[N, W]`` for detectors that score each timestamp of a window (AE and VAE with
``per_timestamp=True``). ``N`` is dynamic.
"""
from __future__ import annotations

import torch
from torch import nn

from genad_fast.detectors._extremes import EXTREME_SIGMAS

__all__ = ["ScoreGraph"]


class ScoreGraph(nn.Module):
    """Guard, normaliser and scorer in one module (see the module docstring)."""

    def __init__(self, scorer: nn.Module, guard_stats, normalizer) -> None:
        super().__init__()
        self.scorer = scorer
        self.guarded = guard_stats is not None
        if self.guarded:  # float64, as extreme_entries compares
            self.register_buffer("guard_mean", guard_stats.mean.detach().to("cpu", torch.float64).clone())
            self.register_buffer("guard_reach", EXTREME_SIGMAS * guard_stats.scale.detach().to("cpu", torch.float64))
            self.register_buffer("fill", guard_stats.mean.detach().to("cpu", torch.float32).clone())
        self.normalized = normalizer is not None
        if self.normalized:  # float32: Normalizer.transform casts mean and scale to the data's dtype
            self.register_buffer("norm_mean", normalizer.mean.detach().to("cpu", torch.float32).clone())
            self.register_buffer("norm_scale", normalizer.scale.detach().to("cpu", torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hit = None
        if self.guarded:
            # "not within reach" rather than "beyond reach": NaN compares False, so it is caught as well
            extreme = ~((x.to(torch.float64) - self.guard_mean).abs() <= self.guard_reach)
            x = torch.where(extreme, self.fill, x)
            hit = extreme.reshape(x.shape[0], -1).any(dim=1)
        z = (x - self.norm_mean) / self.norm_scale if self.normalized else x
        scores = self.scorer(z).to(torch.float32)
        if hit is not None:
            hit = hit.reshape(hit.shape[0], *([1] * (scores.dim() - 1)))
            scores = torch.where(hit, torch.full_like(scores, float("inf")), scores)
        return scores
