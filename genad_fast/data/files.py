"""Users' own data: a CSV/TSV/Parquet table with an optional 0/1 label column, read with the CLI's reader."""
from __future__ import annotations

import numpy as np

from genad_fast.datasets import ANOMALY_KINDS, TabularData

__all__ = ["load_table", "load_file"]


def load_table(path: str, *, label_column: str | None = None, columns: list[str] | None = None,
               time_column: str | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(X [N, D] float64, labels [N] int8 or None, column names)`` from a .csv/.tsv/.parquet file.

    The data columns are ``columns``, else every column but the label and time columns. Labels must be 0/1
    (or False/True). Non-numeric data, NaN/inf and a missing column raise a ValueError naming the problem.
    """
    from genad_fast.cli import CLIError, read_table, select_columns
    from genad_fast.detectors._validation import _frame_to_numpy

    try:
        frame = read_table(path)
        names = [str(c) for c in frame.columns]
        frame = frame.set_axis(names, axis=1)
        labels = None
        if label_column is not None:
            if label_column not in names:
                raise ValueError(f"label column {label_column!r} is not in {path} (columns: {', '.join(names)})")
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
    except CLIError as exc:
        raise ValueError(str(exc)) from exc
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

    ``kind="series"`` returns a :class:`~genad_fast.datasets.SeriesData` (rows are timestamps, kept in order);
    ``"tabular"`` a :class:`~genad_fast.datasets.TabularData`. The training rows are used as they are,
    labelled or not (``params["train_anomalies"]`` counts labelled training rows: nonzero means the detector
    trained on contaminated data). Without ``label_column`` the test labels are all zero and ``params``
    says ``labelled=False``: scores can be computed and plotted, metrics cannot.
    """
    from genad_fast.data.ucr import series_from_labels

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
