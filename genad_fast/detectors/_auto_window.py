"""``window="auto"``: the window a series detector resolves at fit from its training series.

The rule (:mod:`genad_fast.periodicity`): one dominant period, as TSB-AD and TimeEval use the period as the
window: TSB-AD's ACF rule on every channel, the median over the channels that have a peak (TSB-AD's fallback
period 125 when none has: constant or aperiodic series), clipped to ``[8, min(512, T // 2)]``
(:func:`~genad_fast.periodicity.window_from_period`). For a collection of series, each series' window so
resolved, then their median, clipped again to half the shortest series (at least 8). Only the first 20000
timestamps of a series are read (TSB-AD's ``max_samples``).

The detector keeps ``window="auto"`` (scikit-learn: ``__init__`` parameters are never changed by fit) and
stores the resolved int in the fitted attribute ``window_``, which model files keep; everything that needs the
window in use reads :attr:`BaseDetector._window <genad_fast.detectors.base.BaseDetector._window>`.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from genad_fast.periodicity import MAX_SAMPLES, MIN_WINDOW, dominant_period, window_from_period

__all__ = ["AUTO", "combine_windows", "is_auto", "resolve_window", "series_window"]

AUTO = "auto"


def is_auto(window: object) -> bool:
    """True for ``window="auto"`` (the parameter checks admit no other string)."""
    return isinstance(window, str) and window == AUTO


def resolve_window(window: object, stride: int, x: torch.Tensor, lengths: tuple[int, ...],
                   name: Callable[[int], str]) -> int | None:
    """The window in use for training series ``x`` (``[Σ T_i, C]``, the series of ``lengths`` packed one after
    another): None (tabular), ``int(window)``, or for ``"auto"`` the rule of the module docstring. ``name(i)``
    names series ``i`` in errors. ValueError when a series is shorter than the resolved window or ``stride``
    is longer than it."""
    if window is None:
        return None
    if not is_auto(window):
        return int(window)
    windows, start = [], 0
    for T in lengths:
        windows.append(series_window(x[start:start + T]))
        start += T
    return combine_windows(windows, lengths, stride, name)


def series_window(x: torch.Tensor) -> int:
    """One series' own window (``[T, C]``): its dominant period (the median over the channels with one, over the
    first :data:`~genad_fast.periodicity.MAX_SAMPLES` timestamps), clipped as the module docstring says."""
    T = int(x.shape[0])
    return window_from_period(dominant_period(x[:min(T, MAX_SAMPLES)], channels="median"), T)


def combine_windows(windows: list[int], lengths: tuple[int, ...], stride: int, name: Callable[[int], str]) -> int:
    """The window of a collection from its series' own windows: their median, clipped to half the shortest series
    (at least :data:`~genad_fast.periodicity.MIN_WINDOW`), checked against every series' length and ``stride``
    (ValueError naming the series, ``name(i)``). The data-parallel fit takes its shards' windows through it."""
    resolved = window_from_period(round(statistics.median(windows)), min(lengths))
    for i, T in enumerate(lengths):
        if T < resolved:
            raise ValueError(f"{name(i)} has {T} timestamps, fewer than the window window='auto' resolved to "
                             f"({resolved}; it takes at least {MIN_WINDOW})")
    if int(stride) > resolved:
        raise ValueError(f"stride={stride} is longer than the window window='auto' resolved to ({resolved}): "
                         f"timestamps between windows would get no score; use a smaller stride or an int window")
    return resolved
