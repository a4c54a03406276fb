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

import numbers

import torch

from genad_fast import ops
from genad_fast.detectors._call import current_call
from genad_fast.detectors._reference_set import ReferenceSetDetector

__all__ = ["KNN_METHODS", "KNNDetector"]

KNN_METHODS = ("largest", "mean")


class KNNDetector(ReferenceSetDetector):
    """k-nearest-neighbour distance detector, tabular or over windows of a series.

    Parameters
    ----------
    n_neighbors : int, default 5
        k; fitting needs more than k rows (windows), since training points are scored among the others.
    method : "largest" or "mean", default "largest"
        The distance to the k-th neighbour, or the mean of the k distances (see the module docstring).
    reduce : "min", "mean" or "max", default "min"
        Series: how the window scores covering a timestamp combine.
    **kwargs
        The shared detector parameters (window, stride, contamination, normalize, device, backend, seed, ...).

    Fitted attributes: ``reference_`` (the training rows or flattened windows ``[n, F]``), and the base's.
    """

    def __init__(self, n_neighbors: int = 5, method: str = "largest", reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.n_neighbors = n_neighbors
        self.method = method

    def _check_params(self) -> None:
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_neighbors must be an int >= 1, got {k!r}")
        if self.method not in KNN_METHODS:
            raise ValueError(f"method must be one of {KNN_METHODS}, got {self.method!r}")

    def _min_fit_samples(self) -> int:
        self._check_params()
        return int(self.n_neighbors) + 1

    def _score_against(self, x: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        self._check_params()
        k = int(self.n_neighbors)
        available = self.reference_.shape[0] - (1 if exclude_self else 0)
        if k > available:  # only after set_params on a fitted model: fit checks this
            raise ValueError(f"n_neighbors={k} is larger than the {self.reference_.shape[0]} training "
                             f"{'windows' if self.is_series else 'rows'} the model holds; refit")
        d = ops.knn_distance(x, self.reference_, k, exclude_self, backend=current_call(self).backend)
        return d[:, -1] if self.method == "largest" else d.mean(1)
