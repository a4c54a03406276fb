"""Isolation Forest as a detector: ``score(x) = 2^(-E[h(x)] / c(ψ))`` from the forest stored as arrays.

See :class:`IsolationForestDetector` (Liu, Ting & Zhou, 2008) and :func:`average_path_length` for c(n).
"""
from __future__ import annotations

import numpy as np
import torch

from genad_fast.detectors.base import REDUCE
from genad_fast.detectors.sklearn_baselines._wrapper import _SklearnDetector, _t, sklearn_param


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al. (2008): the mean path length of an unsuccessful search in a binary search tree
    of n points, ``2 H(n - 1) - 2 (n - 1)/n`` with ``H(i) ≈ ln i + γ``; c(1) = 0, c(2) = 1."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    big = n > 2
    out[n == 2] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestDetector(_SklearnDetector):
    """Isolation Forest (Liu, Ting & Zhou, ICDM 2008; ``sklearn.ensemble.IsolationForest``).

    score(x) = 2^(-E[h(x)] / c(ψ)) in (0, 1), h(x) the path length of x in a tree (edges to its leaf
    plus c(n_leaf) for the n_leaf training points left unseparated there), E the mean over the trees,
    ψ the sub-sample size (``-IsolationForest.score_samples``). The forest is stored as arrays and
    traversed for all trees at once; thresholds are compared with the data as float32, as scikit-learn's
    trees do.

    Parameters
    ----------
    """

    _param_specs = (
        sklearn_param("n_estimators", "IsolationForest", "int", "The number of trees."),
        sklearn_param("max_samples", "IsolationForest", '"auto", int or float', 'ψ: "auto" = min(256, n).'),
        sklearn_param("max_features", "IsolationForest", "int or float"),
        sklearn_param("bootstrap", "IsolationForest", "bool", "As for scikit-learn; the random choices are seeded "
                      "from ``seed``."),
        REDUCE,
    )

    def __init__(self, n_estimators: int = 100, max_samples: str | int | float = "auto",
                 max_features: int | float = 1.0, bootstrap: bool = False, reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.bootstrap = bootstrap

    def _make_estimator(self, random_state: int):
        from sklearn.ensemble import IsolationForest

        return IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                               max_features=self.max_features, bootstrap=self.bootstrap, random_state=random_state)

    def _extract_state(self, est, X: np.ndarray) -> dict:
        left, right, feature, threshold, leaf_value, roots = [], [], [], [], [], []
        offset, max_depth = 0, 0
        for tree, features in zip(est.estimators_, est.estimators_features_):
            t = tree.tree_
            n = t.node_count
            l, r = t.children_left.astype(np.int64), t.children_right.astype(np.int64)
            depth = np.zeros(n, dtype=np.int64)
            level, d = np.array([0]), 0
            while level.size:  # breadth-first: the depth (in edges) of every node
                depth[level] = d
                kids = np.concatenate([l[level], r[level]])
                level, d = kids[kids >= 0], d + 1
            max_depth = max(max_depth, int(depth.max()))
            is_leaf = l < 0
            roots.append(offset)
            left.append(np.where(is_leaf, -1, l + offset))
            right.append(np.where(is_leaf, -1, r + offset))
            # Split features of the tree's own feature subset, mapped back to columns of X.
            feature.append(np.where(is_leaf, 0, np.asarray(features)[np.maximum(t.feature, 0)]))
            threshold.append(t.threshold.astype(np.float64))
            leaf_value.append(np.where(is_leaf, depth + average_path_length(t.n_node_samples), 0.0))
            offset += n
        denominator = len(est.estimators_) * float(average_path_length(np.array([est.max_samples_]))[0])
        cat = np.concatenate
        return {"left": torch.as_tensor(cat(left)), "right": torch.as_tensor(cat(right)),
                "feature": torch.as_tensor(cat(feature).astype(np.int64)), "threshold": _t(cat(threshold)),
                "leaf_value": _t(cat(leaf_value)), "roots": torch.as_tensor(np.array(roots, dtype=np.int64)),
                "max_depth": max_depth, "denominator": denominator}

    def _score_state(self, x: torch.Tensor) -> torch.Tensor:
        s = self.state_
        left, right, feature, threshold = s["left"], s["right"], s["feature"], s["threshold"]
        # scikit-learn's trees see X as float32; the float64 thresholds are compared with those values.
        x = x.to(torch.float32).to(torch.float64)
        nodes = s["roots"].unsqueeze(0).expand(x.shape[0], -1).contiguous()   # [b, n_trees]
        for _ in range(int(s["max_depth"])):
            value = x.gather(1, feature[nodes])
            child = torch.where(value <= threshold[nodes], left[nodes], right[nodes])
            nodes = torch.where(child < 0, nodes, child)                        # leaves stay put
        per_tree = s["leaf_value"][nodes]
        depths = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for t in range(per_tree.shape[1]):  # tree by tree, the order scikit-learn sums in
            depths += per_tree[:, t]
        denominator = float(s["denominator"])
        ratio = depths / denominator if denominator != 0 else torch.ones_like(depths)
        return torch.pow(2.0, -ratio)
