"""Users' own data: reading and writing CSV/TSV/Parquet tables, and a labelled table as a task.

The table reader lives here, below the CLI and the evaluation, so that both use the same one: a file
``genad-fast fit`` accepts is a file ``genad-fast eval --datasets file:<path>`` accepts, with the same
messages. Its errors are :class:`TableError` (a ValueError), which the CLI prints as one line.
"""
from __future__ import annotations

import os

import numpy as np

from genad_fast._extras import install_hint
from genad_fast.data.containers import ANOMALY_KINDS, TabularData
from genad_fast.data.ucr import series_from_labels
from genad_fast.detectors._validation import _frame_to_numpy

__all__ = ["READERS", "TableError", "table_kind", "read_table", "write_table", "select_columns", "load_table",
           "load_file"]

#: File extensions the reader and writer know, and the format each means.
READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


class TableError(ValueError):
    """A table that cannot be read or written, or lacks a column: the message names the file and the fix."""


def table_kind(path: str, what: str) -> str:
    """The reader/writer for ``path`` from its extension (``what`` names the option, e.g. ``--out``)."""
    p = path.lower()
    for suffix in (".gz", ".bz2", ".zip", ".xz"):
        if p.endswith(suffix):
            p = p[: -len(suffix)]
            break
    ext = os.path.splitext(p)[1]
    if ext not in READERS:
        raise TableError(f"{what} {path!r}: unknown file type {ext or '(none)'!r}; use .csv, .tsv or .parquet")
    return READERS[ext]


def read_table(path: str):
    """The table in ``path`` (.csv, .tsv, .parquet, optionally compressed); a file without rows is an error."""
    import pandas as pd  # optional until a table is read: the synthetic data and the detectors need no pandas

    kind = table_kind(path, "input")
    if not os.path.exists(path):
        raise TableError(f"input file {path!r} does not exist")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except ImportError as exc:
        raise TableError(f"cannot read {path!r}: {exc} (Parquet needs pyarrow: {install_hint('parquet')})")
    except Exception as exc:  # parser errors, permissions, empty files
        raise TableError(f"cannot read {path!r}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}")
    # A header-only CSV reads as object columns with no rows; said as it is, not as "non-numeric column".
    if len(frame) == 0:
        raise TableError(f"input file {path!r} has no data rows (columns: {', '.join(map(str, frame.columns))})")
    return frame


def write_table(frame, path: str) -> None:
    """Write ``frame`` to ``path`` in the format its extension names."""
    kind = table_kind(path, "--out")
    try:
        if kind == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, sep="\t" if kind == "tsv" else ",")
    except ImportError as exc:
        raise TableError(f"cannot write {path!r}: {exc} (Parquet needs pyarrow: {install_hint('parquet')})")
    except OSError as exc:
        raise TableError(f"cannot write {path!r}: {exc.strerror or exc}")


def _named(frame):
    """``frame`` with its column labels as strings, and those strings."""
    names = [str(c) for c in frame.columns]
    return frame.set_axis(names, axis=1), names


def _require_column(name: str, names: list[str], source: str, what: str, error: type[Exception]) -> None:
    if name not in names:
        raise error(f"{what} {name!r} is not in {source} (columns: {', '.join(names)})")


def select_columns(frame, columns: list[str] | None, time_column: str | None, source: str):
    """The data columns (named, or every column but the time column) and the time column values."""
    frame, names = _named(frame)
    time = None
    if time_column is not None:
        _require_column(time_column, names, source, "time column", TableError)
        time = frame[time_column]
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise TableError(f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in "
                             f"{source} (columns: {', '.join(names)})")
        data = frame[columns]
    else:
        data = frame.drop(columns=[time_column]) if time_column is not None else frame
    if data.shape[1] == 0:
        raise TableError(f"{source} has no data columns")
    return data, time


def load_table(path: str, *, label_column: str | None = None, columns: list[str] | None = None,
               time_column: str | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(X [N, D] float64, labels [N] int8 or None, column names)`` from a .csv/.tsv/.parquet file.

    The data columns are ``columns``, else every column but the label and time columns. Labels must be 0/1
    (or False/True). Non-numeric data, NaN/inf and a missing column raise a ValueError naming the problem.
    """
    frame, names = _named(read_table(path))
    labels = None
    if label_column is not None:
        _require_column(label_column, names, path, "label column", ValueError)
        raw = frame[label_column]
        if raw.isna().any():
            raise ValueError(f"label column {label_column!r} of {path} has missing values")
        values = raw.to_numpy()
        if values.dtype == bool:
            values = values.astype(np.int8)
        if not np.isin(values, (0, 1)).all():
            bad = sorted({str(v) for v in values[~np.isin(values, (0, 1))]})[:5]
            raise ValueError(f"label column {label_column!r} of {path} must hold 0/1, found {', '.join(bad)}")
        labels = values.astype(np.int8)
        if columns is None:
            frame = frame.drop(columns=[label_column])
        elif label_column in columns:
            raise ValueError(f"label column {label_column!r} is also listed as a data column")
    data, _ = select_columns(frame, columns, time_column, path)
    X, names = _frame_to_numpy(data, str(path))  # the detectors' own check: numeric (or bool) columns only
    if X.shape[0] == 0:
        raise ValueError(f"{path} has no rows")
    if not np.isfinite(X).all():
        raise ValueError(f"{path} holds NaN or inf values (first at row {int(np.argwhere(~np.isfinite(X))[0, 0])})")
    return X, labels, names


def load_file(path: str, *, label_column: str | None = None, train_fraction: float = 0.5, kind: str = "series",
              columns: list[str] | None = None, time_column: str | None = None,
              dtype: type = np.float32):
    """A labelled file as a task: the first ``round(train_fraction * N)`` rows train, the rest are the test part.

    ``kind="series"`` returns a :class:`~genad_fast.data.containers.SeriesData` (rows are timestamps, kept in order);
    ``"tabular"`` a :class:`~genad_fast.data.containers.TabularData`. The training rows are used as they are,
    labelled or not (``params["train_anomalies"]`` counts labelled training rows: nonzero means the detector
    trained on contaminated data). Without ``label_column`` the test labels are all zero and ``params``
    says ``labelled=False``: scores can be computed and plotted, metrics cannot.
    """
    if kind not in ("series", "tabular"):
        raise ValueError(f"kind must be 'series' or 'tabular', got {kind!r}")
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    X, labels, names = load_table(path, label_column=label_column, columns=columns, time_column=time_column)
    n = int(round(train_fraction * X.shape[0]))
    if n < 2 or X.shape[0] - n < 1:
        raise ValueError(f"{path}: {X.shape[0]} rows with train_fraction={train_fraction} leave too few rows "
                         "to train (2) or test (1)")
    labelled = labels is not None
    labels = labels if labelled else np.zeros(X.shape[0], dtype=np.int8)
    params = dict(name=path, source=path, columns=names, label_column=label_column, labelled=labelled,
                  train_anomalies=int(labels[:n].sum()), test_offset=n)
    if kind == "series":
        return series_from_labels(X[:n], X[n:], labels[n:], params, dtype)
    test_labels = labels[n:]
    return TabularData(X[:n].astype(dtype), X[n:].astype(dtype), test_labels,
                       test_labels * np.int8(ANOMALY_KINDS["labelled"]), params)
