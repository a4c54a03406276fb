"""Local Outlier Factor as a detector; its model is the training data, refitted (deterministically) on loading.

See :class:`LOFDetector` (Breunig et al., 2000) for the formula and for how the training scores are
scikit-learn's leave-self-out ``negative_outlier_factor_``.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from genad_fast.detectors.sklearn_baselines._wrapper import _SklearnDetector, _numpy
from genad_fast.series import window_starts, windows_to_timestamps


class LOFDetector(_SklearnDetector):
    """Local Outlier Factor (Breunig et al., SIGMOD 2000; ``sklearn.neighbors.LocalOutlierFactor`` with
    ``novelty=True``).

    score(x) = mean over the k nearest training points o of lrd(o) / lrd(x), with the local reachability
    density lrd(x) = 1 / mean_o max(k-distance(o), d(x, o)); about 1 inside a cluster, larger outside.
    The training scores (``decision_scores_``, hence ``threshold_``) are scikit-learn's
    ``negative_outlier_factor_``: each training point's LOF among the *other* training points (scoring
    the training data as new points would count every point as its own nearest neighbour and bias the
    scores, and the threshold, low). Model files store the training data; loading refits on it
    (deterministic: exact neighbour search).

    Parameters
    ----------
    n_neighbors : int, default 20
        k; fitting needs more than k rows (windows).
    algorithm, leaf_size, metric, p
        As for scikit-learn's ``LocalOutlierFactor``.
    reduce : "min", "mean" or "max", default "min"
        Series: how the window scores covering a timestamp combine (see the module docstring).
    **kwargs
        The shared detector parameters (window, stride, contamination, seed, ...).
    """

    def __init__(self, n_neighbors: int = 20, algorithm: str = "auto", leaf_size: int = 30, metric: str = "minkowski",
                 p: float = 2, reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p

    def _check_params(self) -> None:
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_neighbors must be an int >= 1, got {k!r}")

    def _min_fit_samples(self) -> int:
        self._check_params()
        return int(self.n_neighbors) + 1

    def _make_estimator(self, random_state: int = 0):
        from sklearn.neighbors import LocalOutlierFactor

        return LocalOutlierFactor(n_neighbors=self.n_neighbors, algorithm=self.algorithm, leaf_size=self.leaf_size,
                                  metric=self.metric, p=self.p, novelty=True)

    def _extract_state(self, est, X: np.ndarray) -> dict:
        return {"data": torch.as_tensor(X)}

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        self.estimator_ = self._make_estimator().fit(_numpy(self.state_["data"]))

    def _score_state(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(-self.estimator_.score_samples(_numpy(x)), device=x.device)

    # The base scores the training data right after fitting, passing the very tensor it fitted on:
    # recognise it (by identity: scoring calls always pass a freshly normalised tensor) and answer with
    # the leave-self-out LOF scikit-learn computed at fit.
    def _fit_model(self, data: torch.Tensor) -> None:
        super()._fit_model(data)
        if not self.is_series:
            self._fitted_on = data

    def _fit_series(self, series: torch.Tensor) -> None:
        super()._fit_series(series)
        self._fitted_on = series

    def _training_lof(self) -> torch.Tensor:
        return torch.as_tensor(-self.estimator_.negative_outlier_factor_, dtype=torch.float64, device=self.device_)

    def _score_rows(self, rows: torch.Tensor) -> torch.Tensor:
        if self.__dict__.pop("_fitted_on", None) is rows:
            return self._training_lof()
        return super()._score_rows(rows)

    def _score_series(self, series: torch.Tensor) -> torch.Tensor:
        if self.__dict__.pop("_fitted_on", None) is not series:
            return super()._score_series(series)
        T, W, S = series.shape[0], int(self.window), int(self.stride)
        scores = self._training_lof()                      # the grid windows, which LOF was fitted on
        if len(window_starts(T, W, S)) > scores.shape[0]:  # the end-aligned window is new to the model
            tail = series[T - W:].unsqueeze(0)
            scores = torch.cat([scores, self._score_model(tail)])
        return windows_to_timestamps(scores, T, W, S, reduce=self.reduce)
