"""KNNDetector: the distance-based outlier score of the k nearest training points.

With d_1(x) <= … <= d_k(x) the Euclidean distances of x to its k nearest training rows (or flattened training
windows), from the fused :func:`genad_fast.ops.knn_distance`:

    method="largest":  score(x) = d_k(x)                    (Ramaswamy, Rastogi & Shim, SIGMOD 2000)
    method="mean":     score(x) = (1/k) Σ_{i<=k} d_i(x)     (Angiulli & Pizzuti, PKDD 2002, divided by k)

Training scores are leave-one-out (each training point's neighbours among the others; see
:mod:`genad_fast.detectors._reference_set`), as scikit-learn's ``kneighbors()`` without X gives them.
The default k = 5 is PyOD's (Zhao, Nasrullah & Li, JMLR 2019) ``KNN(n_neighbors=5, method="largest")``.

Series: a window gets one score; ``reduce`` defaults to "min", as for the other classic baselines
(:mod:`genad_fast.detectors.sklearn_baselines`): a timestamp scores high only if every window covering it does.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast._params import Param
from genad_fast.detectors._call import current_call
from genad_fast.detectors._reference_set import ReferenceSetDetector
from genad_fast.detectors.base import REDUCE

__all__ = ["KNN_METHODS", "KNNDetector"]

KNN_METHODS = ("largest", "mean")


class KNNDetector(ReferenceSetDetector):
    """k-nearest-neighbour distance detector, tabular or over windows of a series.

    Fitted attributes: ``reference_`` (the training rows or flattened windows ``[n, F]``), and the base's.

    Parameters
    ----------
    """

    _param_specs = (
        Param("n_neighbors", "int", "k; fitting needs more than k rows (windows), since training points are scored "
              "among the others.", low=1, scoring=True),
        Param("method", "choice", "The distance to the k-th neighbour, or the mean of the k distances (see the "
              "module docstring).", choices=KNN_METHODS, scoring=True),
        REDUCE,
    )

    def __init__(self, n_neighbors: int = 5, method: str = "largest", reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.n_neighbors = n_neighbors
        self.method = method

    def _min_fit_samples(self) -> int:
        return int(self.n_neighbors) + 1

    def _score_against(self, x: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        k = int(self.n_neighbors)
        available = self.reference_.shape[0] - (1 if exclude_self else 0)
        if k > available:  # only after set_params on a fitted model: fit checks this
            raise ValueError(f"n_neighbors={k} is larger than the {self.reference_.shape[0]} training "
                             f"{'windows' if self.is_series else 'rows'} the model holds; refit")
        d = ops.knn_distance(x, self.reference_, k, exclude_self, backend=current_call(self).dispatch)
        return d[:, -1] if self.method == "largest" else d.mean(1)
