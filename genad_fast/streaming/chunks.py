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
from genad_fast.detectors._input import str_names
from genad_fast.detectors._validation import check_finite, check_rank, to_tensor

__all__ = ["ChunkReader", "read_chunk"]


class ChunkReader:
    """:func:`read_chunk` for one stream, with the extreme-value bounds computed once per input dtype (as a
    collection call computes them once per call)."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self._bounds: dict = {}

    def __call__(self, chunk: Any) -> tuple[torch.Tensor, np.ndarray | None]:
        return read_chunk(self.det, chunk, bounds=self._bounds)


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
