"""The base's input rules, in the order every fit and scoring call applies them: read and check the user's data
(:mod:`genad_fast.detectors._validation`), replace extreme values at scoring (:mod:`genad_fast.detectors._extremes`),
cast for the model, normalise. Nothing is dropped, clipped, imputed or reordered silently.

``feature_names_in_`` follows scikit-learn: set by a fit on a DataFrame whose column names are all strings, as
an object ndarray of them; absent otherwise (``hasattr`` is False), so a refit on an array removes it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genad_fast.detectors._auto_window import is_auto
from genad_fast.detectors._extremes import extreme_entries, may_hold_extremes, replace_extremes, warn_extremes
from genad_fast.detectors._validation import check_finite, check_rank, to_tensor
from genad_fast.series import Normalizer, SeriesBatch

__all__ = ["FeatureNames", "InputMixin"]


class FeatureNames:
    """The ``feature_names_in_`` attribute: an object ndarray of str, or absent (AttributeError).

    Assigning a sequence of str stores it as scikit-learn types it; assigning None removes it (model files
    store None or a list, and the loader assigns what the file holds)."""

    def __get__(self, det: Any, owner: type | None = None) -> Any:
        if det is None:
            return self
        try:
            return det.__dict__["_feature_names_in"]
        except KeyError:
            raise AttributeError(f"{type(det).__name__} has no feature_names_in_: it is set only by a fit on a "
                                 f"DataFrame whose column names are all strings") from None

    def __set__(self, det: Any, names: Any) -> None:
        if names is None:
            det.__dict__.pop("_feature_names_in", None)
        else:
            det.__dict__["_feature_names_in"] = np.asarray(list(names), dtype=object)

    def __delete__(self, det: Any) -> None:
        det.__dict__.pop("_feature_names_in", None)


def str_names(columns: list | None) -> list[str] | None:
    """``columns`` if they are all strings (scikit-learn's rule for feature names), else None."""
    return list(columns) if columns is not None and all(isinstance(c, str) for c in columns) else None


class InputMixin:
    """``_validate`` -> (``_guard_extremes`` at scoring) -> ``_cast`` -> ``_apply_normalizer``."""

    feature_names_in_ = FeatureNames()

    def _validate(self, X: Any, fitting: bool, name: str = "X") -> tuple[torch.Tensor, list | None]:
        """Checked data as ``[rows, features]`` (the user's float dtype and device), plus DataFrame column names.
        ``name`` is what the messages call the data (a part of a collection: ``X[3]``, ``X['pump-7']``).

        Not yet cast: :meth:`_cast` does that, after the extreme-value guard at scoring (a cast to float32
        could overflow on a value the guard replaces)."""
        t, columns = to_tensor(X, name)
        t = check_rank(t, self.is_series, name)
        what = ("timestamps", "channels") if self.is_series else ("rows", "features")
        if t.shape[0] == 0:
            raise ValueError(f"{name} has 0 {what[0]}")
        if t.shape[1] == 0:
            raise ValueError(f"{name} has 0 {what[1]}")
        if not fitting:
            if t.shape[1] != self.n_features_in_:
                raise ValueError(f"{name} has {t.shape[1]} {what[1]}, but {type(self).__name__} was fitted on "
                                 f"{self.n_features_in_}")
            fitted, names = getattr(self, "feature_names_in_", None), str_names(columns)
            if fitted is not None and names is not None and names != list(fitted):
                raise ValueError(f"{name} has columns {names}, but {type(self).__name__} was fitted on columns "
                                 f"{list(fitted)} (same names, same order)")
        check_finite(t, name, columns)
        # window="auto" is resolved after reading the training series, and checks their lengths then.
        window = None if fitting and is_auto(self.window) else self._window
        if window is not None and t.shape[0] < window:
            raise ValueError(f"{name} has {t.shape[0]} timestamps, fewer than window={window}")
        return t, columns

    def _cast(self, t: torch.Tensor, name: str = "X", out: torch.Tensor | None = None) -> torch.Tensor:
        """``t`` on ``device_`` in ``_data_dtype()``, C-contiguous (whatever layout the user's array had); with
        ``out`` (a slice of a packed buffer), written there instead."""
        if out is None:
            out = t.to(device=self.device_, dtype=self._data_dtype()).contiguous()
        else:
            out.copy_(t)  # the same rounding as .to()
        if out.dtype != t.dtype and not bool(torch.isfinite(out).all()):
            first = tuple(int(i) for i in (~torch.isfinite(out)).nonzero()[0].tolist())
            raise ValueError(f"{name} value {float(t[first])} at row {first[0]} overflows {out.dtype}; rescale the "
                             f"data")
        return out

    def _input_stats(self) -> Normalizer | None:
        """The training statistics of the extreme-value guard (files written before it: the normaliser, if any)."""
        return getattr(self, "input_stats_", None) or self.normalizer_

    def _extreme_entries(self, t: torch.Tensor, bounds: tuple | None = None) -> torch.Tensor | None:
        """Boolean ``[rows, features]``: the extreme values of validated data ``t``, or None if it holds none
        (``bounds``: :func:`~genad_fast.detectors._extremes.extreme_bounds` for ``t``, when already known)."""
        stats = self._input_stats()
        if stats is None or not may_hold_extremes(t, stats, bounds):
            return None
        entries = extreme_entries(t, stats)
        return entries if bool(entries.any()) else None

    def _guard_extremes(self, t: torch.Tensor, columns: list | None,
                        stacklevel: int = 4) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated scoring data with extreme values replaced (see :mod:`genad_fast.detectors._extremes`), cast
        for the model, and the boolean ``[rows]`` mask of the rows/timestamps that held one (None if none did)."""
        entries = self._extreme_entries(t)
        if entries is None:
            return self._cast(t), None
        warn_extremes(entries, "windows" if self.is_series else "rows", columns, stacklevel=stacklevel)
        return self._cast(replace_extremes(t, entries, self._input_stats())), entries.any(dim=1)

    def _check_enough(self, x: torch.Tensor, layout: SeriesBatch | None = None) -> None:
        need = self._min_fit_samples()
        if self.is_series:
            have = layout.n_windows - int(layout.is_tail().sum())  # the grid windows _fit_model receives
            if have < need:
                g = layout.grids[0]
                shape = f"T={g.T}" if layout.n_series == 1 else \
                    f"{layout.n_series} series of T={min(layout.lengths)}..{max(layout.lengths)}"
                raise ValueError(f"the training series give{'s' if layout.n_series == 1 else ''} {have} "
                                 f"window{'s' if have != 1 else ''} ({shape}, window={g.W}, stride={g.S}), but "
                                 f"{type(self).__name__} needs at least {need} to fit; use a longer series or a "
                                 f"smaller window/stride")
        elif x.shape[0] < need:
            raise ValueError(f"X has {x.shape[0]} rows, but {type(self).__name__} needs at least {need} to fit")

    def _apply_normalizer(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalizer_.transform(x) if self.normalizer_ is not None else x
