"""Long series: sliding windows as views, window scores back to timestamps, per-channel normalisation.

A series is a tensor ``[T, C]`` (time first, channels last; a 1-D tensor is one channel).
Windows of length ``W`` start every ``S`` steps; the last window is aligned to the end of
the series, so every timestamp, the tail included, lies in at least one window::

    window_starts(T, W, S) = 0, S, 2S, ..., k*S   (k = (T - W) // S)   and T - W if k*S < T - W

(``1 <= S <= W``: a stride longer than the window would leave timestamps unscored.)

Scores computed per window (``[n_windows]``) or per window and timestamp
(``[n_windows, W]``) come back to one score per timestamp by :func:`windows_to_timestamps`:
the mean or the max over every window that covers the timestamp (no zero padding, so a
timestamp covered by one window gets that window's score).

Why the end-aligned window is separate: windows that share one memory stride must have
evenly spaced starts, and ``T - W`` is on the grid ``0, S, 2S, ...`` only when ``S`` divides
``T - W`` (always for ``S = 1``). :func:`sliding_windows` therefore returns the grid windows
as one zero-copy view, and :func:`iter_window_batches` yields views covering *all* of
:func:`window_starts`, the off-grid tail window included, for scoring.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = [
    "Normalizer",
    "SeriesBatch",
    "WindowGrid",
    "iter_window_batches",
    "n_windows",
    "sliding_windows",
    "window_starts",
    "windows_to_timestamps",
]

#: How the windows covering a timestamp combine. "min" localises window-level scores sharply: a
#: timestamp scores high only if every window that covers it does, so an anomaly no longer spreads its
#: score over the W - 1 normal timestamps on either side (the windows next to it that miss it win).
REDUCTIONS = ("mean", "max", "min")


def _check_geometry(T: int, window: int, stride: int) -> None:
    for name, value in (("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"T must be an int, got {type(T).__name__}")
    if stride > window:
        raise ValueError(f"stride={stride} is longer than window={window}: timestamps between windows "
                         f"would get no score; use stride <= window")
    if T < window:
        raise ValueError(f"a series of {T} timestamps is shorter than window={window}")


@dataclass(frozen=True)
class WindowGrid:
    """The windows of a series of ``T`` timestamps: length ``W``, a start every ``S`` steps, the last window
    aligned to the end (see the module docstring). Checked on construction (``1 <= S <= W <= T``, ints).

    ``n_grid`` windows lie on the regular grid 0, S, 2S, ... (one zero-copy view, :meth:`windows`); when
    ``S`` does not divide ``T - W``, one more (``has_tail``) starts at ``T - W``: ``n_windows`` in all.
    """

    T: int
    W: int
    S: int = 1

    def __post_init__(self) -> None:
        _check_geometry(self.T, self.W, self.S)

    @property
    def n_grid(self) -> int:
        """Windows on the regular grid 0, S, 2S, ... that fit in the series."""
        return (self.T - self.W) // self.S + 1

    @property
    def has_tail(self) -> bool:
        """Whether the end-aligned window ``T - W`` is off the grid (a window of its own)."""
        return (self.n_grid - 1) * self.S < self.T - self.W

    @property
    def n_windows(self) -> int:
        return self.n_grid + int(self.has_tail)

    def starts(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Start index of every window, int64 ``[n_windows]``, increasing; the last one is ``T - W``."""
        starts = torch.arange(self.n_grid, dtype=torch.int64, device=device) * self.S
        if self.has_tail:
            starts = torch.cat([starts, torch.tensor([self.T - self.W], dtype=torch.int64, device=device)])
        return starts

    def n_batches(self, batch_size: int) -> int:
        """How many batches :meth:`batches` yields (for progress bars)."""
        return -(-self.n_grid // batch_size) + int(self.has_tail)

    def windows(self, series: torch.Tensor) -> torch.Tensor:
        """The grid windows of ``series`` (``[T, C]`` or ``[T]``) as a view: see :func:`sliding_windows`."""
        return sliding_windows(series, self.W, self.S)

    def batches(self, series: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Views ``[b, W, C]`` over every window, in order: see :func:`iter_window_batches`."""
        return iter_window_batches(series, self.W, self.S, batch_size)

    def to_timestamps(self, scores: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
        """Window scores back to one per timestamp: see :func:`windows_to_timestamps`."""
        return windows_to_timestamps(scores, self.T, self.W, self.S, reduce=reduce)


@dataclass(frozen=True)
class SeriesBatch:
    """Many series packed one after another into one tensor ``[Σ T_i, C]`` (series i in rows ``offsets[i] ..
    offsets[i + 1]``), each windowed on its own :class:`WindowGrid` ``(T_i, W, S)``: no window crosses from one
    series into the next, and each series keeps its end-aligned tail window.

    Windows are numbered series after series, each series' grid windows followed by its tail window (if off the
    grid): the order of :meth:`starts`, :meth:`batches` and of the window scores :meth:`to_timestamps` takes.
    :meth:`grid_windows` (the training windows) are the grid windows only, in the same order. One series behaves
    exactly as its :class:`WindowGrid` (zero-copy views); many are gathered in batches across series boundaries,
    so a model sees full batches whatever the lengths.
    """

    lengths: tuple[int, ...]
    W: int
    S: int = 1

    def __post_init__(self) -> None:
        if not self.lengths:
            raise ValueError("a SeriesBatch needs at least one series")
        for i, T in enumerate(self.lengths):
            try:
                WindowGrid(T, self.W, self.S)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"series {i}: {exc}") from None

    @functools.cached_property
    def grids(self) -> tuple[WindowGrid, ...]:
        return tuple(WindowGrid(T, self.W, self.S) for T in self.lengths)

    @property
    def n_series(self) -> int:
        return len(self.lengths)

    @functools.cached_property
    def offsets(self) -> tuple[int, ...]:
        """Row where each series starts in the packing, then the total length (``n_series + 1`` values)."""
        return (0, *itertools.accumulate(self.lengths))

    @functools.cached_property
    def n_windows(self) -> int:
        """Windows of every series, tails included."""
        return sum(g.n_windows for g in self.grids)

    @functools.cached_property
    def _starts_and_tails(self) -> tuple[torch.Tensor, torch.Tensor]:
        T = torch.tensor(self.lengths, dtype=torch.int64)
        last, n_grid = T - self.W, (T - self.W) // self.S + 1   # per series: the end-aligned start, grid windows
        per = torch.tensor([g.n_windows for g in self.grids], dtype=torch.int64)
        series = torch.repeat_interleave(torch.arange(len(self.lengths)), per)
        local = torch.arange(int(per.sum())) - (torch.cumsum(per, 0) - per)[series]   # 0 .. n_windows_i - 1
        # local·S on the grid; the tail (local = n_grid) starts at T - W, which the min gives
        offset = torch.tensor(self.offsets[:-1], dtype=torch.int64)[series]
        return offset + torch.minimum(local * self.S, last[series]), local == n_grid[series]

    def starts(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Start row in the packing of every window, int64 ``[n_windows]``, in window order."""
        return self._starts_and_tails[0].to(device)

    def is_tail(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean ``[n_windows]``: which windows are off-grid end-aligned ones."""
        return self._starts_and_tails[1].to(device)

    def split(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """``packed`` (``[Σ T_i, ...]``) cut into its series (views)."""
        return list(torch.split(packed, list(self.lengths)))

    def windows_at(self, packed: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """The windows of ``packed`` starting at rows ``starts`` (int64), gathered: ``[len(starts), W, C]``."""
        return sliding_windows(packed, self.W, 1)[starts]

    def grid_windows(self, packed: torch.Tensor) -> torch.Tensor:
        """The grid windows ``[Σ n_grid_i, W, C]`` of every series: a zero-copy view for one series, else a copy
        (``Σ n_grid_i · W · C`` values)."""
        if self.n_series == 1:
            return self.grids[0].windows(packed)
        return self.windows_at(packed, self.starts(packed.device)[~self.is_tail(packed.device)])

    def n_batches(self, batch_size: int) -> int:
        """How many batches :meth:`batches` yields (for progress bars)."""
        return self.grids[0].n_batches(batch_size) if self.n_series == 1 else -(-self.n_windows // batch_size)

    def batches(self, packed: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Every window of every series in order, ``[b, W, C]``, ``b <= batch_size``: one series as
        :meth:`WindowGrid.batches` (views); many gathered in full batches across series boundaries."""
        if self.n_series == 1:
            yield from self.grids[0].batches(packed, batch_size)
            return
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        starts = self.starts(packed.device)
        for i in range(0, self.n_windows, batch_size):
            yield self.windows_at(packed, starts[i:i + batch_size])

    def to_timestamps(self, scores: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
        """Window scores (``[n_windows]`` or ``[n_windows, W]``, window order) back to one per timestamp of the
        packing, ``[Σ T_i]``: :meth:`WindowGrid.to_timestamps` series by series."""
        if self.n_series == 1:
            return self.grids[0].to_timestamps(scores, reduce)
        if not isinstance(scores, torch.Tensor) or scores.dim() not in (1, 2) or scores.shape[0] != self.n_windows:
            raise ValueError(f"scores must be [{self.n_windows}] or [{self.n_windows}, {self.W}] (the windows of "
                             f"{self.n_series} series), got {getattr(scores, 'shape', type(scores).__name__)}")
        parts = torch.split(scores, [g.n_windows for g in self.grids])
        return torch.cat([g.to_timestamps(p, reduce) for g, p in zip(self.grids, parts)])


def n_windows(T: int, window: int, stride: int = 1) -> int:
    """Number of windows :func:`window_starts` gives: the grid windows plus the end-aligned one if off-grid."""
    return WindowGrid(T, window, stride).n_windows


def window_starts(T: int, window: int, stride: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
    """Start index of every window, int64 ``[n_windows]``, increasing; the last one is ``T - window``."""
    return WindowGrid(T, window, stride).starts(device)


def _as_2d(series: torch.Tensor, name: str = "series") -> tuple[torch.Tensor, bool]:
    if not isinstance(series, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(series).__name__}")
    if series.dim() == 1:
        return series.unsqueeze(1), True
    if series.dim() != 2:
        raise ValueError(f"{name} must be 1-D [T] or 2-D [T, C], got shape {tuple(series.shape)}")
    return series, False


def sliding_windows(series: torch.Tensor, window: int, stride: int = 1) -> torch.Tensor:
    """The windows on the regular grid as a zero-copy view: ``[n_grid, window, C]`` (``[n_grid, window]`` for 1-D).

    Window ``i`` is ``series[i*stride : i*stride + window]``. The view shares storage with
    ``series`` (``Tensor.unfold``), so it costs no memory; a model that needs contiguous
    rows copies one batch at a time. When ``stride`` divides ``T - window`` (always for
    ``stride=1``) these are all the windows of :func:`window_starts`; otherwise the
    end-aligned tail window ``series[T - window:]`` is not on the grid and is left to
    :func:`iter_window_batches` (see the module docstring for why).
    """
    x, one_channel = _as_2d(series)
    _check_geometry(x.shape[0], window, stride)
    # unfold gives [n, C, W] with the window dimension last; the transpose is still a view.
    w = x.unfold(0, window, stride).transpose(1, 2)
    return w[..., 0] if one_channel else w


def iter_window_batches(series: torch.Tensor, window: int, stride: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield views ``[b, window, C]`` over all windows of :func:`window_starts`, in order, ``b <= batch_size``.

    The grid windows come in slices of the :func:`sliding_windows` view; an off-grid
    end-aligned window comes last as its own batch of one (a view of ``series[T-window:]``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    x, _ = _as_2d(series)
    grid = WindowGrid(x.shape[0], window, stride)
    view = sliding_windows(series, window, stride)
    for i in range(0, grid.n_grid, batch_size):
        yield view[i:i + batch_size]
    if grid.has_tail:
        yield series[grid.T - window:].unsqueeze(0)


def n_window_batches(T: int, window: int, stride: int, batch_size: int) -> int:
    """How many batches :func:`iter_window_batches` yields (for progress bars)."""
    return WindowGrid(T, window, stride).n_batches(batch_size)


def windows_to_timestamps(scores: torch.Tensor, T: int, window: int, stride: int = 1,
                          reduce: str = "mean") -> torch.Tensor:
    """Per-window scores back to one score per timestamp, ``[T]``.

    ``scores`` is ``[n_windows]`` (one score per window, given to each of its timestamps) or
    ``[n_windows, window]`` (one score per timestamp of each window), in the order of
    :func:`window_starts`. Timestamp ``t`` gets the mean (``reduce="mean"``), the max
    (``reduce="max"``) or the min (``reduce="min"``) of the scores that the windows covering ``t`` give it:

        out[t] = reduce{ scores[i, t - starts[i]] : starts[i] <= t < starts[i] + window }

    Every timestamp is covered, so there is no padding value; NaN propagates (max included).
    Vectorised: per-window scores at stride 1 reduce a sliding view of the padded scores;
    otherwise ``ceil(window / stride)`` strided adds (or maxima), each over all windows at once.
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    if not (scores.is_floating_point()):
        raise TypeError(f"scores must be a floating-point tensor, got {scores.dtype}")
    n = n_windows(T, window, stride)
    if scores.dim() == 1:
        if scores.shape[0] != n:
            raise ValueError(f"scores has {scores.shape[0]} windows, but T={T}, window={window}, "
                             f"stride={stride} gives {n}")
        values = scores.unsqueeze(1).expand(n, window)
    elif scores.dim() == 2:
        if tuple(scores.shape) != (n, window):
            raise ValueError(f"scores must be [n_windows, window] = [{n}, {window}] for T={T}, "
                             f"stride={stride}; got {tuple(scores.shape)}")
        values = scores
    else:
        raise ValueError(f"scores must be [n_windows] or [n_windows, window], got shape {tuple(scores.shape)}")
    if stride == 1 and scores.dim() == 1:
        # out[t] = reduce(s[t-W+1 .. t]): a sliding window over the scores, padded with a neutral value.
        fill = {"mean": 0.0, "max": float("-inf"), "min": float("inf")}[reduce]
        view = torch.nn.functional.pad(scores, (window - 1, window - 1), value=fill).unfold(0, window, 1)
        if reduce == "max":
            return view.amax(1)
        if reduce == "min":
            return view.amin(1)
        t = torch.arange(T, device=scores.device)
        counts = torch.minimum(t + 1, T - t).clamp_(max=min(window, n)).to(scores.dtype)
        return view.sum(1) / counts
    return _blocks_to_timestamps(values, T, window, stride, reduce)


def _blocks_to_timestamps(values: torch.Tensor, T: int, window: int, stride: int, reduce: str) -> torch.Tensor:
    """Scores ``[n, W]`` to ``[T]`` in ceil(W/S) vectorised steps, no index tensor.

    Offset ``k = q*S + r`` (``r < S``) of grid window ``i`` lands on ``t = (i + q)*S + r``, so the columns
    ``q*S .. q*S+S-1`` of all grid windows land on the contiguous run ``q*S .. q*S + k*S``: one strided
    add (or max) per ``q``. The off-grid tail window, if any, is added last.
    """
    W, S = window, stride
    k = WindowGrid(T, W, S).n_grid
    q_steps = -(-W // S)
    mean = reduce == "mean"
    combine = torch.maximum if reduce == "max" else torch.minimum
    length = (k + q_steps) * S  # room for the last block; trimmed to T at the end
    fill = {"mean": 0.0, "max": float("-inf"), "min": float("inf")}[reduce]
    out = torch.full((length,), fill, dtype=values.dtype, device=values.device)
    counts = torch.zeros(length, dtype=values.dtype, device=values.device) if mean else None
    grid = values[:k]
    for q in range(q_steps):
        lo, r = q * S, min(S, W - q * S)
        src = grid[:, lo:lo + r]
        dst = out[lo:lo + k * S].view(k, S)[:, :r]
        if mean:
            dst += src
            counts[lo:lo + k * S].view(k, S)[:, :r] += 1
        else:
            combine(dst, src, out=dst)
    if values.shape[0] > k:  # the end-aligned tail window
        tail = out[T - W:T]
        if mean:
            tail += values[k]
            counts[T - W:T] += 1
        else:
            combine(tail, values[k], out=tail)
    return out[:T] / counts[:T] if mean else out[:T]


def constant_columns(x: torch.Tensor) -> torch.Tensor:
    """Boolean ``[C]``: the columns of ``x[N, C]`` that are (numerically) constant,
    population std <= 10·eps(float64)·max(1, |mean|), computed in float64 (scikit-learn's StandardScaler rule)."""
    xd = x.detach().to(torch.float64)
    mean = xd.mean(dim=0)
    std = xd.std(dim=0, unbiased=False) if xd.shape[0] > 1 else torch.zeros_like(mean)
    return std <= 10 * torch.finfo(torch.float64).eps * torch.clamp(mean.abs(), min=1.0)


@dataclass
class Normalizer:
    """Per-channel standardisation fitted on training data: ``z = (x - mean) / scale``.

    ``mean`` and ``scale`` are float64 ``[C]`` tensors; ``scale`` is the population standard
    deviation, except where a channel is (numerically) constant: when
    ``std <= 10 * eps(float64) * max(1, |mean|)`` its scale is 1, so the channel is only
    centred and a deviation at scoring time shows in its own units instead of being divided
    by ~0 (the rule scikit-learn's StandardScaler follows).
    """

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> "Normalizer":
        """Fit on ``x[N, C]`` (rows or timestamps by channel), accumulating in float64."""
        x2, _ = _as_2d(x, "x")
        if x2.shape[0] == 0:
            raise ValueError("cannot fit a Normalizer on 0 rows")
        xd = x2.detach().to(torch.float64)
        mean = xd.mean(dim=0)
        std = xd.std(dim=0, unbiased=False) if xd.shape[0] > 1 else torch.zeros_like(mean)
        scale = torch.where(constant_columns(xd), torch.ones_like(std), std)
        return cls(mean=mean, scale=scale)

    @property
    def n_channels(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / scale`` over the last dimension, in ``x``'s dtype and device."""
        if x.shape[-1] != self.n_channels:
            raise ValueError(f"x has {x.shape[-1]} channels, the Normalizer was fitted on {self.n_channels}")
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        scale = self.scale.to(device=x.device, dtype=x.dtype)
        return (x - mean) / scale

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.n_channels:
            raise ValueError(f"z has {z.shape[-1]} channels, the Normalizer was fitted on {self.n_channels}")
        return z * self.scale.to(device=z.device, dtype=z.dtype) + self.mean.to(device=z.device, dtype=z.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.detach().cpu(), "scale": self.scale.detach().cpu()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        try:
            mean, scale = state["mean"], state["scale"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"normalizer state must hold 'mean' and 'scale' tensors, got {state!r}") from exc
        if not (isinstance(mean, torch.Tensor) and isinstance(scale, torch.Tensor)) or mean.shape != scale.shape \
                or mean.dim() != 1:
            raise ValueError("normalizer state: 'mean' and 'scale' must be 1-D tensors of one shape")
        return cls(mean=mean.to(torch.float64), scale=scale.to(torch.float64))
