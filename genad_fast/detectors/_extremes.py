"""The one rule for finite but extreme input values, applied by the base to every detector.

A value more than ``EXTREME_SIGMAS`` = 10^6 training standard deviations from its column's training
mean is *extreme*:

    |x[t, c] - mean_c| > EXTREME_SIGMAS · scale_c

with ``mean_c`` and ``scale_c`` those of :class:`genad_fast.series.Normalizer` fitted on the training
data (always fitted, also with ``normalize=False``; a constant column has scale 1, its own units).

Why a bound, and why this one: such values are missing-value sentinels (3.4e38 = FLT_MAX in sensor
exports), stuck ADC codes and glitches. No normal point is there — by Chebyshev's inequality at most
1/k² = 1e-12 of any distribution lies k = 10^6 standard deviations out, and a training set of N points
cannot hold a point more than sqrt(N) of its own standard deviations from its mean — and a model's float32
arithmetic would overflow on them (squares, exponentials, sums of squares), turning the score into NaN,
which compares False with every threshold: the worst glitch would be called normal.

So an extreme value is never shown to the model. It is replaced by its column's training mean for the
model's forward pass, and every row (tabular) or every window (series) that holds it scores ``+inf``:
maximally anomalous, above every finite threshold. For a series, a timestamp's score combines the windows
that cover it with ``reduce``, so with ``"mean"`` or ``"max"`` every timestamp within ``window - 1`` steps of
the extreme value scores ``+inf``; with ``"min"`` only those whose every covering window holds it (the
others keep the score of their covering windows, computed with the value replaced). A warning
(:class:`ExtremeValueWarning`) says how many values were extreme and where the first one is.
Below the bound every detector must score finite, and larger deviations must not score lower (tested).
"""
from __future__ import annotations

import warnings

import torch

from genad_fast.series import Normalizer, WindowGrid, constant_columns

__all__ = ["EXTREME_SIGMAS", "ExtremeValueWarning", "ConstantColumnWarning", "constant_columns"]

#: Distance from the training mean, in training standard deviations, beyond which a value is extreme.
EXTREME_SIGMAS = 1e6


class ExtremeValueWarning(UserWarning):
    """Some input values were extreme (see :mod:`genad_fast.detectors._extremes`); their rows/windows score +inf."""


class ConstantColumnWarning(UserWarning):
    """Some training columns are constant (stuck sensors): they are centred, not scaled."""


def may_hold_extremes(x: torch.Tensor, stats: Normalizer, bounds: tuple | None = None) -> bool:
    """False when ``x[N, C]`` certainly holds no extreme value, tested against the bounds
    ``mean ± EXTREME_SIGMAS · scale`` rounded inwards to ``x``'s dtype (so the quick tests never miss a value the
    exact float64 test of :func:`extreme_entries` would flag). Clean data, the common case, costs one min/max
    pass over all of ``x`` against the tightest bounds of any column (a contiguous reduction: about a copy's
    time); only when that fails, a min/max per column. ``bounds``: :func:`extreme_bounds` for ``x``'s dtype and
    device, when the caller tests many arrays."""
    lo, hi, lo_max, hi_min = bounds if bounds is not None else extreme_bounds(stats, x.dtype, x.device)
    all_min, all_max = torch.aminmax(x)
    if bool((all_min >= lo_max) & (all_max <= hi_min)):
        return False
    col_min, col_max = torch.aminmax(x, dim=0)
    return bool(((col_min < lo) | (col_max > hi)).any())


def extreme_bounds(stats: Normalizer, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The per-column bounds of :func:`may_hold_extremes` in ``dtype`` (rounded inwards) and the tightest of them."""
    mean, reach = stats.mean.to(device=device), EXTREME_SIGMAS * stats.scale.to(device=device)
    lo, hi = _inward(mean - reach, dtype, up=True), _inward(mean + reach, dtype, up=False)
    return lo, hi, lo.max(), hi.min()


def _inward(bound: torch.Tensor, dtype: torch.dtype, up: bool) -> torch.Tensor:
    """``bound`` (float64) in ``dtype``, rounded towards the inside of the interval (up for a lower bound)."""
    b = bound.to(dtype)
    outside = b.double() < bound if up else b.double() > bound
    return torch.where(outside, torch.nextafter(b, torch.full_like(b, float("inf") if up else float("-inf"))), b)


def extreme_entries(x: torch.Tensor, stats: Normalizer) -> torch.Tensor:
    """Boolean ``[N, C]``: where ``|x - mean| > EXTREME_SIGMAS · scale`` (computed in float64)."""
    xd = x.to(torch.float64)
    mean = stats.mean.to(device=x.device)
    scale = stats.scale.to(device=x.device)
    return (xd - mean).abs() > EXTREME_SIGMAS * scale


def replace_extremes(x: torch.Tensor, entries: torch.Tensor, stats: Normalizer) -> torch.Tensor:
    """``x`` with its extreme entries replaced by their column's training mean (a copy; ``x`` is untouched)."""
    mean = stats.mean.to(device=x.device, dtype=x.dtype).expand_as(x)
    return torch.where(entries, mean, x)


def warn_extremes(entries: torch.Tensor, what: str, columns: list | None, where: str = "",
                  count: int | None = None, stacklevel: int = 4) -> None:
    """Warn about the extreme ``entries`` (``[rows, C]``); ``where`` names the part of a collection they are in
    (the first one holding any) and ``count`` the total over all parts."""
    count = int(entries.sum()) if count is None else count
    row, col = (int(i) for i in entries.nonzero()[0].tolist())
    name = repr(columns[col]) if columns is not None else str(col)
    warnings.warn(f"X holds {count} extreme value{'s' if count != 1 else ''} (more than {EXTREME_SIGMAS:.0e} "
                  f"training standard deviations from the training mean; the first at row {row}, column {name}"
                  f"{' of ' + where if where else ''}): the {what} holding them score +inf", ExtremeValueWarning,
                  stacklevel=stacklevel)


def infinite_timestamps(extreme_rows: torch.Tensor, grid: WindowGrid, reduce: str) -> torch.Tensor:
    """Boolean ``[T]``: timestamps whose score is ``+inf`` because windows covering them hold an extreme value.

    The windows are the scoring ``grid`` (every window of :meth:`genad_fast.series.WindowGrid.starts`); a window
    holding an extreme timestamp scores +inf, and :meth:`~genad_fast.series.WindowGrid.to_timestamps` with
    ``reduce`` decides which timestamps that reaches.
    """
    counts = torch.zeros(grid.T + 1, dtype=torch.int64, device=extreme_rows.device)
    counts[1:] = torch.cumsum(extreme_rows.to(torch.int64), 0)
    starts = grid.starts(device=extreme_rows.device)
    holds = (counts[starts + grid.W] - counts[starts]) > 0
    window_scores = torch.where(holds, float("inf"), 0.0).to(torch.float64)
    return torch.isposinf(grid.to_timestamps(window_scores, reduce))


def warn_constant(mask: torch.Tensor, columns: list | None, detector: str) -> None:
    idx = mask.nonzero().flatten().tolist()
    names = [repr(columns[i]) if columns is not None else str(i) for i in idx]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    warnings.warn(f"{detector}: {len(idx)} training column{'s are' if len(idx) != 1 else ' is'} constant "
                  f"({shown}): a stuck sensor or an unused feature. Such a column is centred, not scaled (its "
                  f"own units), so a change in it at scoring time still counts", ConstantColumnWarning, stacklevel=4)
