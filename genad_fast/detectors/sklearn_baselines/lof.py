"""Local Outlier Factor as a detector; its model is the training data, refitted (deterministically) on loading.

See :class:`LOFDetector` (Breunig et al., 2000) for the formula and for how the training scores are
scikit-learn's leave-self-out ``negative_outlier_factor_``.
"""
from __future__ import annotations

import numpy as np
import torch

from genad_fast._params import Param
from genad_fast.detectors.base import REDUCE
from genad_fast.detectors.sklearn_baselines._wrapper import _SklearnDetector, _numpy, sklearn_param


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
    """

    _param_specs = (
        Param("n_neighbors", "int", "k; fitting needs more than k rows (windows).", low=1),
        sklearn_param("algorithm", "LocalOutlierFactor", "str"),
        sklearn_param("leaf_size", "LocalOutlierFactor", "int"),
        sklearn_param("metric", "LocalOutlierFactor", "str"),
        sklearn_param("p", "LocalOutlierFactor", "float"),
        REDUCE,
    )

    def __init__(self, n_neighbors: int = 20, algorithm: str = "auto", leaf_size: int = 30, metric: str = "minkowski",
                 p: float = 2, reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p

    def _min_fit_samples(self) -> int:
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

    def _training_scores(self) -> torch.Tensor:
        """The leave-self-out LOF scikit-learn computed at fit, for the rows (grid windows) fitted on."""
        return torch.as_tensor(-self.estimator_.negative_outlier_factor_, dtype=torch.float64, device=self.device_)
