"""One chunk of a stream, read as the batch API reads a series (:mod:`genad_fast.detectors._input`), minus the
rule that a series holds at least one window: a chunk may be a single timestamp.

``chunk``: ``[n, C]`` (numpy, pandas, torch, nested lists), or 1-D ``[n]`` (or one number) for a one-channel
model. Checked:
rank, channel count (and column names, for a DataFrame whose names are all strings, against the fit), finite
values; extreme values (:mod:`genad_fast.detectors._extremes`) are replaced for the model and their timestamps
flagged (every window holding one scores +inf, as in ``decision_function``); then cast and normalised.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genad_fast.detectors._extremes import extreme_bounds, replace_extremes, warn_extremes
from genad_fast.detectors._input import InputMixin, str_names
from genad_fast.detectors._validation import check_finite, check_rank, to_tensor

__all__ = ["ChunkReader", "read_chunk"]


class ChunkReader:
    """:func:`read_chunk` for one stream, with the extreme-value bounds computed once per input dtype (as a
    collection call computes them once per call).

    A NumPy float32/float64 chunk ``[n, C]`` (or ``[n]`` for one channel) whose values are finite and inside the
    tightest extreme-value bounds, the common case of a live stream, takes a shorter path with the same result:
    the checks on the array in NumPy (a chunk of one timestamp is a handful of numbers, where each torch call
    costs more than the arithmetic), then the cast and ``(x - mean) / scale`` as the normaliser computes them
    (the same element-wise operations in the data dtype, in NumPy, with its mean and scale cast once: the same
    bits).
    Anything else, and any chunk that fails a check (to raise the error or flag the extreme values), goes
    through :func:`read_chunk`."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self._bounds: dict = {}
        self._C = int(det.n_features_in_)
        self._dtype = det._data_dtype()
        stats = det._input_stats()
        norm = det.normalizer_
        # the fast path only where the detector reads and normalises as the base does (no hook overridden)
        # (a NumPy chunk has no column names: nothing to check against feature_names_in_)
        self._fast = stats is not None and det.device_.type == "cpu" and _reads_as_the_base(det) \
            and self._dtype in (torch.float32, torch.float64)
        self._limits: dict = {}  # numpy dtype -> (lowest upper bound, highest lower bound) of the bounds
        self._stats = stats
        # the normaliser's mean and scale cast once to the data dtype, as NumPy arrays (the short path's arithmetic)
        self._np_dtype = torch.empty(0, dtype=self._dtype).numpy().dtype if self._fast else None
        self._norm_np = None if norm is None or not self._fast else \
            tuple(v.detach().to(device="cpu", dtype=self._dtype).numpy().reshape(-1) for v in (norm.mean, norm.scale))

    def __call__(self, chunk: Any) -> tuple[torch.Tensor, np.ndarray | None]:
        if self._fast and type(chunk) is np.ndarray and chunk.dtype in _FAST_DTYPES:
            z = self._read_clean(chunk)
            if z is not None:
                return z, None
        return read_chunk(self.det, chunk, bounds=self._bounds)

    def _read_clean(self, a: np.ndarray) -> torch.Tensor | None:
        """The normalised rows of a clean NumPy chunk, or None to take :func:`read_chunk` (checks and errors)."""
        if a.ndim == 1 and self._C == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.shape[1] != self._C or a.shape[0] == 0:
            return None
        limits = self._limits.get(a.dtype)
        if limits is None:
            t_dtype = torch.from_numpy(a[:0]).dtype
            _, _, lo_max, hi_min = extreme_bounds(self._stats, t_dtype, torch.device("cpu"))
            limits = self._limits[a.dtype] = (float(lo_max), float(hi_min))
        lo, hi = a.min(), a.max()  # NaN propagates: fails the test below
        if not (lo >= limits[0] and hi <= limits[1]):
            return None  # non-finite or possibly extreme values: the full path says which
        if a.dtype != np.float32 and self._dtype == torch.float32 and max(-lo, hi) > _F32_MAX:
            return None  # overflows float32: read_chunk's _cast raises
        # the cast and (x - mean) / scale in NumPy: the same IEEE operations (a rounding cast, a correctly rounded
        # subtraction and division per element, in the data dtype) as the normaliser's torch ops, so the same bits,
        # without three torch calls' overhead on a chunk of a few numbers
        x = a.astype(self._np_dtype, order="C")  # a copy: never the caller's memory
        if self._norm_np is not None:
            mean, scale = self._norm_np
            np.subtract(x, mean, out=x)
            np.divide(x, scale, out=x)
        return torch.from_numpy(x)


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32_MAX = float(np.finfo(np.float32).max)


def _reads_as_the_base(det: Any) -> bool:
    """Whether ``det`` casts, guards and normalises with the base's hooks (none overridden)."""
    hooks = ("_apply_normalizer", "_cast", "_extreme_entries", "_input_stats")
    return all(getattr(type(det), h) is getattr(InputMixin, h) for h in hooks)


def read_chunk(det: Any, chunk: Any, name: str = "chunk",
               bounds: dict | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
    """The normalised rows ``[n, C]`` of ``chunk`` (on ``det.device_``, its data dtype) and the boolean ``[n]``
    mask of timestamps holding an extreme value (None when none does). ``bounds``: a cache of the extreme-value
    bounds per (dtype, device)."""
    t, columns = to_tensor(chunk, name)
    C = int(det.n_features_in_)
    if t.dim() == 0:  # one value: one timestamp of a one-channel model
        if C > 1:
            raise ValueError(f"{name} is one number, but {type(det).__name__} was fitted on {C} channels (one "
                             f"timestamp is a [1, {C}] array)")
        t = t.reshape(1, 1)
    if t.dim() == 1 and C > 1:
        hint = " (one timestamp of a multichannel series is a [1, C] array: x[None] or x.reshape(1, -1))" \
            if t.shape[0] == C else ""
        raise ValueError(f"{name} is 1-D ({t.shape[0]} timestamps of one channel), but {type(det).__name__} was "
                         f"fitted on {C} channels{hint}")
    t = check_rank(t, True, name)
    if t.shape[0] == 0:
        raise ValueError(f"{name} has 0 timestamps")
    if t.shape[1] != C:
        raise ValueError(f"{name} has {t.shape[1]} channels, but {type(det).__name__} was fitted on {C}")
    fitted, names = getattr(det, "feature_names_in_", None), str_names(columns)
    if fitted is not None and names is not None and names != list(fitted):
        raise ValueError(f"{name} has columns {names}, but {type(det).__name__} was fitted on columns "
                         f"{list(fitted)} (same names, same order)")
    check_finite(t, name, columns)
    # det._guard_extremes, with the bounds kept for the stream
    stats = det._input_stats()
    key = (t.dtype, t.device)
    if stats is not None and bounds is not None and key not in bounds:
        bounds[key] = extreme_bounds(stats, t.dtype, t.device)
    entries = None if stats is None else det._extreme_entries(t, None if bounds is None else bounds[key])
    if entries is None:
        return det._apply_normalizer(det._cast(t, name)), None
    warn_extremes(entries, "windows", columns, stacklevel=5)  # the caller of update()
    x = det._cast(replace_extremes(t, entries, stats), name)
    return det._apply_normalizer(x), entries.any(dim=1).cpu().numpy()
