"""Many series (or tables) in one call: which inputs are collections, how their parts are checked and packed into
one tensor, and how per-part results go back in the caller's layout.

The collection rule (``fit``, ``decision_function``, ``predict``, ``fit_predict``, ``set_threshold``,
``score_samples``, ``predict_proba``):

- a ``dict`` (any mapping) ``{id: part}``: the result is a dict with the same keys in the same order;
- a ``list`` or ``tuple`` whose items are all *arrays* (numpy ndarrays and torch tensors of one dimension or
  more, pandas DataFrames and Series): the result is a list, one item per part, in order;
- a long pandas DataFrame with ``by="id_column"`` (keyword only): one series (or table) per distinct id. The id
  column is dropped from the features, the rows of a series keep their order in the frame, and the result is a
  dict id -> scores in the order the ids first appear.

Anything else is one table or series, as before: a nested Python list of numbers (a list of lists of floats)
is one table/series, and so is a DataFrame without ``by=``. A list or tuple that mixes arrays with other items
(numbers, plain lists) is a TypeError; an empty collection is a ValueError.

Each part is checked on its own with the single-input rules (:mod:`genad_fast.detectors._validation`,
:mod:`genad_fast.detectors._input`), and a bad part (NaN, too short for the window, another channel count) is a
ValueError that names it: ``X[3]`` (list index), ``X['pump-7']`` (dict key) or ``series sensor_id='b'``
(``by=``). The parts' lengths may differ; their channels (features) and column names must agree.

Packing: the checked parts, extreme values replaced (:mod:`genad_fast.detectors._extremes`, the warning names
the first part that holds one), are cast into one tensor ``[Σ T_i, C]``; for series a
:class:`genad_fast.series.SeriesBatch` windows each part on its own grid, so that the scoring hooks get windows
of many series in one batch and no window crosses from one series into the next. Labels for
``set_threshold`` follow the same layout: the result's structure (a list or dict of per-part labels), or one
flat array in the order of the concatenated parts (for ``by=``: one label per row of the frame).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genad_fast.detectors._extremes import extreme_bounds, replace_extremes, warn_extremes
from genad_fast.detectors._input import str_names
from genad_fast.detectors._validation import _frame_to_numpy, _is_pandas

__all__ = ["Collection", "Packed", "as_collection", "is_array", "map_result"]


def is_array(obj: Any) -> bool:
    """An item that makes a list/tuple a collection: a numpy array or torch tensor of one dimension or more, a
    pandas DataFrame or Series."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.ndim >= 1
    return _is_pandas(obj, "DataFrame") or _is_pandas(obj, "Series")


@dataclass
class Collection:
    """The parts of a collection input, their ids (None for a list/tuple) and, for a long frame, its layout."""

    parts: list
    keys: list | None = None
    by: Any = None
    columns: list | None = None        # by=: the frame's feature columns (the parts are arrays)
    row_order: np.ndarray | None = None  # by=: the frame row of each packed row

    def name(self, i: int) -> str:
        """What messages call part ``i``."""
        if self.keys is None:
            return f"X[{i}]"
        return f"series {self.by}={self.keys[i]!r}" if self.by is not None else f"X[{self.keys[i]!r}]"

    def wrap(self, values: list) -> list | dict:
        return list(values) if self.keys is None else dict(zip(self.keys, values))


def as_collection(X: Any, by: Any = None) -> Collection | None:
    """``X`` as a :class:`Collection`, or None when it is one table/series (see the module docstring)."""
    if by is not None:
        return _long_frame(X, by)
    if isinstance(X, Mapping):
        if not X:
            raise ValueError("X is an empty dict: a collection needs at least one series (or table)")
        return Collection(list(X.values()), list(X.keys()))
    if isinstance(X, (list, tuple)):
        if not X:
            raise ValueError(f"X is an empty {type(X).__name__}: no data")
        arrays = [is_array(item) for item in X]
        if all(arrays):
            return Collection(list(X))
        if any(arrays):
            i, j = arrays.index(True), arrays.index(False)
            raise TypeError(f"X mixes arrays (X[{i}] is a {type(X[i]).__name__}) with other items (X[{j}] is a "
                            f"{type(X[j]).__name__}): a collection of series or tables is a list/tuple of arrays "
                            f"(numpy, torch, pandas) or a dict; one table is a nested list of numbers")
    return None


def _long_frame(X: Any, by: Any) -> Collection:
    """A long DataFrame cut by its id column ``by`` (ids in order of first appearance, rows in frame order)."""
    import pandas as pd

    if not _is_pandas(X, "DataFrame"):
        raise TypeError(f"by={by!r} names the series-id column of a long pandas DataFrame, but X is a "
                        f"{type(X).__name__}; pass a DataFrame, or a list/dict of series without by=")
    if by not in X.columns:
        raise ValueError(f"by={by!r} is not a column of X (its columns: {list(X.columns)})")
    if len(X) == 0:
        raise ValueError("X has 0 rows: a collection needs at least one series (or table)")
    codes, ids = pd.factorize(X[by], sort=False)
    if (codes < 0).any():
        raise ValueError(f"the series-id column {by!r} has a missing value at row {int(np.argmax(codes < 0))}; "
                         f"every row needs an id")
    values, columns = _frame_to_numpy(X.drop(columns=[by]), "X")
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(ids))
    parts = np.split(values[order], np.cumsum(counts)[:-1])
    return Collection(parts, list(ids.tolist()), by, columns, order)


def map_result(result: Any, fn: Callable[[np.ndarray], Any]) -> Any:
    """``fn`` applied to a score array, or to each array of a list/dict of them."""
    if isinstance(result, list):
        return [fn(r) for r in result]
    if isinstance(result, dict):
        return {k: fn(v) for k, v in result.items()}
    return fn(result)


@dataclass
class Packed:
    """The checked input of one call: ``x`` ``[Σ N_i, C]`` (cast for the model; at scoring with extreme values
    replaced), column labels, the rows of each part, its source (None: one table/series) and the boolean
    ``[Σ N_i]`` mask of rows that held an extreme value (None if none did)."""

    x: torch.Tensor
    columns: list | None
    lengths: tuple[int, ...]
    source: Collection | None = None
    extreme_rows: torch.Tensor | None = None

    def unpack(self, values: np.ndarray) -> Any:
        """Per-row values of the packing back in the caller's layout: the array itself for one input."""
        if self.source is None:
            return values
        return self.source.wrap(np.split(values, np.cumsum(self.lengths)[:-1]))

    def labels(self, y: Any) -> Any:
        """Labels ``y`` for the packed rows (see the module docstring), flat; None stays None."""
        src = self.source
        if y is None or src is None:
            return y
        if isinstance(y, Mapping):
            if src.keys is None or set(y) != set(src.keys):
                raise ValueError(f"y is a dict, so its keys must be X's ids {src.keys}, got {list(y)}")
            parts = [y[k] for k in src.keys]
        elif isinstance(y, (list, tuple)) and src.keys is None and len(y) == len(src.parts) \
                and all(is_array(v) or isinstance(v, (list, tuple)) for v in y):
            parts = list(y)
        else:
            flat = np.asarray(y).reshape(-1)
            if src.row_order is None:
                return flat  # in the order of the concatenated parts; the caller checks the length
            if flat.shape[0] != src.row_order.shape[0]:
                raise ValueError(f"y has {flat.shape[0]} labels but the frame X has {src.row_order.shape[0]} rows")
            return flat[src.row_order]
        for i, (part, n) in enumerate(zip(parts, self.lengths)):
            if len(part) != n:
                raise ValueError(f"y for {src.name(i)} has {len(part)} labels, but {src.name(i)} gives {n} scores")
        return np.concatenate([np.asarray(p).reshape(-1) for p in parts])


class CollectionMixin:
    """``_read``: one input or a collection, checked, (at scoring) guarded against extreme values, cast, packed."""

    def _read(self, X: Any, by: Any, fitting: bool) -> Packed:
        source = as_collection(X, by)
        if source is None:
            t, columns = self._validate(X, fitting)
            if fitting:
                return Packed(self._cast(t), columns, (t.shape[0],))
            x, rows = self._guard_extremes(t, columns, stacklevel=5)
            return Packed(x, columns, (x.shape[0],), extreme_rows=rows)
        parts, part_columns = [], []
        for i, part in enumerate(source.parts):
            t, cols = self._validate(part, fitting, source.name(i))
            if parts and t.shape[1] != parts[0].shape[1]:  # at scoring _validate compared it with the fit
                what = "channels" if self.is_series else "features"
                raise ValueError(f"{source.name(i)} has {t.shape[1]} {what}, but {source.name(0)} has "
                                 f"{parts[0].shape[1]}: every part of a collection needs the same {what}")
            parts.append(t)
            part_columns.append(cols if source.columns is None else source.columns)
        columns = self._common_columns(source, part_columns, fitting)
        lengths = tuple(int(t.shape[0]) for t in parts)
        x = torch.empty(sum(lengths), parts[0].shape[1], dtype=self._data_dtype(), device=self.device_)
        rows, first, count, a = [], None, 0, 0
        stats, bounds = None if fitting else self._input_stats(), {}  # bounds once per dtype, not per part
        for i, t in enumerate(parts):
            if not fitting and stats is not None and (t.dtype, t.device) not in bounds:
                bounds[t.dtype, t.device] = extreme_bounds(stats, t.dtype, t.device)
            entries = None if fitting else self._extreme_entries(t, bounds.get((t.dtype, t.device)))
            if entries is not None:
                count += int(entries.sum())
                first = first or (i, entries)
                rows.append((a, entries.any(dim=1)))
                t = replace_extremes(t, entries, self._input_stats())
            self._cast(t, source.name(i), out=x[a:a + t.shape[0]])
            a += t.shape[0]
        extreme_rows = None
        if rows:
            extreme_rows = torch.zeros(a, dtype=torch.bool, device=rows[0][1].device)
            for start, r in rows:
                extreme_rows[start:start + r.shape[0]] = r
            i, entries = first
            warn_extremes(entries, "windows" if self.is_series else "rows", part_columns[i], where=source.name(i),
                          count=count)
        return Packed(x, columns, lengths, source, extreme_rows)

    def _common_columns(self, source: Collection, part_columns: list, fitting: bool) -> list | None:
        """The column labels of the parts that have some: one list for all (at scoring ``_validate`` compared
        each with the fitted names; a long frame's are checked here)."""
        named = [(i, c) for i, c in enumerate(part_columns) if c is not None]
        if not named:
            return None
        i0, c0 = named[0]
        for i, c in named[1:]:
            if fitting and str_names(c) is not None and str_names(c0) is not None and list(c) != list(c0):
                raise ValueError(f"{source.name(i)} has columns {list(c)}, but {source.name(i0)} has {list(c0)}: the "
                                 f"parts of a collection need the same columns in the same order")
        fitted, names = getattr(self, "feature_names_in_", None), str_names(c0)
        if not fitting and source.columns is not None and fitted is not None and names is not None \
                and names != list(fitted):
            raise ValueError(f"X has columns {names}, but {type(self).__name__} was fitted on columns {list(fitted)} "
                             f"(same names, same order)")
        return list(c0)
