"""A collection of series as the jobs take it: in memory (a list or dict of arrays/frames/tensors, a long
DataFrame with an id column) or on disk (file paths, a glob, a directory), cut into chunks of several series.

Files stay paths until a worker opens them: the driver never reads a file it hands on, so on a cluster the
data travels from the storage to the worker that scores it, not through the driver.
"""
from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from genad_fast.data.files import READERS, read_table, select_columns

__all__ = ["Item", "collect", "expand_paths", "chunked", "output_name", "file_name_for_id", "read_series",
           "check_unique_names"]

_GLOB_CHARS = re.compile(r"[*?\[]")
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz")


@dataclass(frozen=True)
class Item:
    """One series of a job: its position in the input, its id (list index, dict key or file path) and its
    data (an array, frame or tensor) or the path of the file holding it."""

    index: int
    id: Any
    source: Any

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str)


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def expand_paths(spec: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(paths, skipped)`` for a glob pattern, a directory or one file, sorted by name.

    A directory gives its table files (.csv, .tsv, .parquet, .pq, optionally compressed; not recursive) and
    lists the other files in ``skipped``; a glob gives every file it matches (a file of another type then
    fails by name when it is read, as asked for). Nothing matched is a ValueError naming the pattern.
    """
    text = os.fspath(spec)
    skipped: list[str] = []
    if os.path.isdir(text):
        paths = []
        for name in sorted(os.listdir(text)):
            path = os.path.join(text, name)
            if not os.path.isfile(path):
                continue
            (paths if _table_suffix(name) is not None else skipped).append(path)
        if not paths:
            raise ValueError(f"directory {text!r} holds no .csv, .tsv or .parquet files")
        return paths, skipped
    if _GLOB_CHARS.search(text):
        paths = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not paths:
            raise ValueError(f"{text!r} matches no files")
        return paths, skipped
    if not os.path.exists(text):
        raise ValueError(f"input {text!r} does not exist (give a file, a directory or a glob pattern)")
    return [text], skipped


def _table_suffix(name: str) -> str | None:
    low = name.lower()
    for comp in _COMPRESSED:
        if low.endswith(comp):
            low = low[: -len(comp)]
            break
    ext = os.path.splitext(low)[1]
    return ext if ext in READERS else None


def output_name(path: str, ext: str) -> str:
    """The file name of ``path``'s result: its stem (compression and table extension removed) + ``ext``."""
    name = os.path.basename(path)
    low = name.lower()
    for comp in _COMPRESSED:
        if low.endswith(comp):
            name = name[: -len(comp)]
            break
    stem, suffix = os.path.splitext(name)
    return (stem if suffix.lower() in READERS else name) + ext


def file_name_for_id(series_id: Any, ext: str) -> str:
    """A model or result file name for an in-memory series id: ``series_<i>`` for a list index, the key for
    a dict (str or int; a path separator or a name starting with '.' is refused: the file would land elsewhere)."""
    if isinstance(series_id, bool) or not isinstance(series_id, (str, int)):
        raise ValueError(f"series id {series_id!r} cannot name a file; use str or int keys")
    text = str(series_id)
    if not text or text.startswith(".") or "/" in text or "\\" in text or "\0" in text:
        raise ValueError(f"series id {series_id!r} cannot name a file in the output directory")
    return text + ext


def check_unique_names(names: dict[Any, str]) -> None:
    """Two inputs whose results would land in the same file: a ValueError naming both, before any work."""
    seen: dict[str, Any] = {}
    for key, name in names.items():
        if name in seen:
            raise ValueError(f"inputs {seen[name]!r} and {key!r} would both write {name!r}; rename one, or "
                             f"score them into different output directories")
        seen[name] = key


def collect(series: Any, *, id_column: str | None = None) -> tuple[list[Item], str]:
    """The items of ``series`` and the shape of the result: ``"list"`` (in input order) or ``"dict"`` (by id).

    - a list/tuple of arrays, frames, tensors or paths, or a 3-D array ``[n_series, T, C]``: ids 0..n-1, a list;
    - a dict id -> array/frame/tensor/path: a dict with the same keys;
    - a glob pattern, a directory or a file path (str or PathLike): a dict keyed by file path;
    - a long pandas DataFrame with ``id_column``: a dict keyed by id, each series its rows in frame order
      without the id column.
    """
    if _is_path(series):
        paths, _ = expand_paths(series)
        return [Item(i, p, p) for i, p in enumerate(paths)], "dict"
    if id_column is not None:
        return _from_long_frame(series, id_column), "dict"
    if _is_frame(series):
        raise TypeError("a DataFrame is one series; give id_column= for a long frame of many series, or a "
                        "list or dict of series")
    if isinstance(series, dict):
        items = [Item(i, k, _source(v, k)) for i, (k, v) in enumerate(series.items())]
        kind = "dict"
    elif isinstance(series, (list, tuple)) or _is_3d_array(series):
        items = [Item(i, i, _source(v, i)) for i, v in enumerate(series)]
        kind = "list"
    else:
        raise TypeError(f"expected a list or dict of series, a long DataFrame with id_column=, or a path, glob "
                        f"or directory; got {type(series).__name__}")
    if not items:
        raise ValueError("the collection of series is empty")
    return items, kind


def _source(value: Any, key: Any) -> Any:
    if _is_path(value):
        return os.fspath(value)
    if value is None:
        raise TypeError(f"series {key!r} is None")
    return value


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "groupby")


def _is_3d_array(value: Any) -> bool:
    return hasattr(value, "ndim") and hasattr(value, "shape") and getattr(value, "ndim", 0) == 3


def _from_long_frame(frame: Any, id_column: str) -> list[Item]:
    if not _is_frame(frame):
        raise TypeError(f"id_column= needs a pandas DataFrame, got {type(frame).__name__}")
    if id_column not in frame.columns:
        raise ValueError(f"id column {id_column!r} is not in the frame (columns: "
                         f"{', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise ValueError("the collection of series is empty")
    groups = frame.groupby(id_column, sort=False)
    return [Item(i, key, part.drop(columns=[id_column])) for i, (key, part) in enumerate(groups)]


def chunked(items: list[Item], workers: int, chunk_size: int | None) -> list[list[Item]]:
    """``items`` in chunks of ``chunk_size`` (default: about four chunks per worker, so a slow chunk at the end
    leaves little idle time and the progress bar moves, while each task still packs several series)."""
    size = chunk_size or max(1, math.ceil(len(items) / (4 * workers)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def read_series(path: str, columns: list[str] | None, time_column: str | None):
    """``(data frame, time values or None)`` of one file, through the data package's reader (same messages)."""
    frame = read_table(path)
    return select_columns(frame, columns, time_column, path)
