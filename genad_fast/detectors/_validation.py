"""Turn user data (numpy, pandas, torch, nested lists) into a checked float tensor.

Every rejection is a ``ValueError`` (``TypeError`` for a wrong Python type) that names the
problem; nothing is dropped, clipped, imputed or reordered.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class NotFittedError(ValueError, AttributeError):
    """A detector was used before ``fit`` (a ValueError, like scikit-learn's NotFittedError)."""


def _is_pandas(X: Any, kind: str) -> bool:
    # Checked by module name so pandas is imported only when the user already has a pandas object.
    mod = type(X).__module__
    return mod.startswith("pandas") and type(X).__name__ == kind


def _numeric_kind_ok(kind: str) -> bool:
    return kind in "biuf"


def _frame_to_numpy(X: Any, name: str) -> tuple[np.ndarray, list]:
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    columns = list(X.columns)  # the labels as they are: feature names only when all are str (scikit-learn)
    for col, dtype in zip(columns, X.dtypes):
        if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)) or pd.api.types.is_complex_dtype(dtype):
            raise ValueError(f"{name} has a non-numeric column {col!r} (dtype {dtype}); "
                             f"select the numeric columns (or pass the time column separately)")
    try:
        values = X.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert the columns to numbers ({exc})") from exc
    return values, columns


def to_tensor(X: Any, name: str = "X") -> tuple[torch.Tensor, list | None]:
    """``X`` as a floating torch tensor (float64 for non-float input), plus its column labels if a DataFrame.

    Accepts torch tensors (real floating, integer or bool), numpy arrays, pandas DataFrames and
    Series, and nested sequences of numbers.
    """
    columns: list | None = None
    if isinstance(X, torch.Tensor):
        t = X.detach()
        if t.is_complex():
            raise ValueError(f"{name} must be real-valued, got a complex tensor ({t.dtype})")
        if not t.is_floating_point():
            t = t.to(torch.float64)
        return t, None
    if _is_pandas(X, "DataFrame"):
        arr, columns = _frame_to_numpy(X, name)
    elif _is_pandas(X, "Series"):
        arr, columns = _frame_to_numpy(X.to_frame(), name)
        arr = arr[:, 0]
    else:
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} cannot be read as an array: {exc}") from exc
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} holds non-numeric values (dtype object): {exc}") from exc
        if not _numeric_kind_ok(arr.dtype.kind):
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind != "f" or arr.dtype == np.float16:
        arr = arr.astype(np.float64)
    if not arr.dtype.isnative:  # big-endian '>f8' files: torch holds native byte order only
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if any(s < 0 for s in arr.strides) or not arr.flags.writeable:
        # torch.from_numpy refuses negative strides (x[::-1]) and warns on read-only memory
        arr = np.array(arr, copy=True)
    return torch.from_numpy(arr), columns


def check_finite(x: torch.Tensor, name: str = "X", columns: list | None = None) -> None:
    """Raise if ``x`` holds NaN or inf: how many, and where the first one is."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = ~finite
    count = int(bad.sum())
    first = tuple(int(i) for i in bad.nonzero()[0].tolist())
    value = float(x[first])
    where = f"row {first[0]}"
    if len(first) > 1:
        col = columns[first[1]] if columns is not None else first[1]
        where += f", column {col!r}" if columns is not None else f", column {col}"
    raise ValueError(f"{name} contains {count} non-finite value{'s' if count != 1 else ''} "
                     f"(NaN or inf); the first is {value} at {where}. Clean or impute the data first: "
                     f"detectors do not drop or fill values")


def check_rank(x: torch.Tensor, series: bool, name: str = "X") -> torch.Tensor:
    """Tabular data must be 2-D ``(n_samples, n_features)``; a series ``(T, C)`` or 1-D ``(T,)`` (one channel)."""
    if series:
        if x.dim() == 1:
            return x.unsqueeze(1)
        if x.dim() != 2:
            raise ValueError(f"{name} must be a series of shape (T, C) or (T,), got shape {tuple(x.shape)}")
        return x
    if x.dim() != 2:
        hint = " (a detector with window=None takes tabular rows; reshape(-1, 1) for one feature, " \
               "or set window= to score a series)" if x.dim() == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}{hint}")
    return x

