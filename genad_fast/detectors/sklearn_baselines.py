"""The classic baselines as detectors: PCA, One-Class SVM, Isolation Forest and LOF from scikit-learn.

Each wrapper fits its scikit-learn estimator on the rows ``[N, D]`` (tabular) or on the flattened
windows ``[n, W·C]`` of a series (the base class windows and normalises the data), and scores with
the sign flipped so that higher means more anomalous:

    score(x) = -estimator.score_samples(x)

which is, per model: the negative log-likelihood under probabilistic PCA (Tipping & Bishop, 1999) or
the squared reconstruction error (``PCADetector(anomaly_score="reconstruction")``); ``-Σ_i α_i K(s_i, x)`` for
the One-Class SVM (Schölkopf et al., 2001); ``2^(-E[h(x)] / c(ψ))`` for the Isolation Forest (Liu, Ting &
Zhou, 2008); the local outlier factor (Breunig et al., 2000).

Model files hold plain data only (they are read with ``torch.load(weights_only=True)``, which cannot
read pickled estimators), so each wrapper keeps what it needs to score and scores from that, exactly
as scikit-learn does, in float64:

- PCA: ``mean_``, ``components_``, ``explained_variance_``, ``noise_variance_``;
- One-Class SVM: the support vectors, their dual coefficients and the resolved kernel parameters;
- Isolation Forest: every tree as arrays (children, split feature, threshold, and per leaf
  depth + c(n_leaf)), traversed for all trees at once;
- LOF: the training data (its model *is* the data); loading refits ``LocalOutlierFactor`` on it,
  which is deterministic (exact neighbour search, no randomness), so the scores are the same.

Series: a window gets one score; ``reduce`` defaults to "min" (a timestamp scores high only if every
window covering it does), which keeps a window-level score on the anomaly instead of smearing it over
the W - 1 normal timestamps on either side (as for :class:`genad_fast.detectors.flow.FlowDetector`).

The scores after a save/load round trip are identical to those before it (the same arrays and the
same code); the tests also hold each wrapper's scores against the scikit-learn estimator's own.
``estimator_`` is the fitted scikit-learn object (None after loading, except for LOF).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from genad_fast.detectors._renamed import take_renamed
from genad_fast.detectors.base import BaseDetector
from genad_fast.series import window_starts, windows_to_timestamps

__all__ = ["IsolationForestDetector", "LOFDetector", "OCSVMDetector", "PCADetector"]


def _rows(data: torch.Tensor) -> torch.Tensor:
    """Rows ``[N, D]`` or windows ``[n, W, C]`` as float64 rows ``[n, F]`` (windows flattened time-major)."""
    return data.reshape(data.shape[0], -1).to(torch.float64)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


class _SklearnDetector(BaseDetector):
    """Fits ``_make_estimator()`` on rows or flattened windows; scores from ``state_`` (plain tensors)."""

    min_fit_samples = 2

    # ---- what each wrapper provides -----------------------------------------------------------
    def _check_params(self) -> None:
        """The wrapper's own parameter checks (scikit-learn validates its estimator's parameters at fit)."""

    def _make_estimator(self, random_state: int) -> Any:
        raise NotImplementedError

    def _extract_state(self, estimator: Any, X: np.ndarray) -> dict:
        """Plain data (tensors on ``device_``, numbers, strings) from which ``_score_state`` scores."""
        raise NotImplementedError

    def _score_state(self, x: torch.Tensor) -> torch.Tensor:
        """``-score_samples`` of float64 rows ``x`` ``[b, F]``, from ``self.state_``."""
        raise NotImplementedError

    # ---- hooks ----------------------------------------------------------------------------------
    def _fit_model(self, data: torch.Tensor) -> None:
        self._check_params()
        X = _numpy(_rows(data))
        # scikit-learn seeds from an int; derive one from the detector's seed (its own stream).
        random_state = int(self._numpy_rng("estimator").integers(0, 2**31 - 1))
        estimator = self._make_estimator(random_state)
        estimator.fit(X)
        self.estimator_ = estimator
        self.state_ = self._to_device(self._extract_state(estimator, X))

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        return self._score_state(_rows(batch))

    def _get_state(self) -> dict:
        return dict(self.state_)

    def _set_state(self, state: dict) -> None:
        self.estimator_ = None
        self.state_ = self._to_device(dict(state))

    def _to_device(self, state: dict) -> dict:
        return {k: v.to(self.device_) if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _t(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


# ================================================================================================ PCA
PCA_SCORES = ("likelihood", "reconstruction")
#: Smallest variance the likelihood uses, relative to the largest (see PCADetector._extract_state).
PCA_VARIANCE_FLOOR = 1e-6


class PCADetector(_SklearnDetector):
    """Principal component analysis (``sklearn.decomposition.PCA``).

    With the top k principal directions V (``[D, k]``), their variances λ_1..λ_k and the mean μ:

    - ``anomaly_score="likelihood"``: the negative log-likelihood under probabilistic PCA (Tipping & Bishop,
      1999), ``C = V diag(λ) Vᵀ + σ² (I - V Vᵀ)``, σ² the mean of the D - k discarded variances
      (``-PCA.score_samples``)::

          score(x) = ½ [ Σ_j p_j²/λ_j + (||x - μ||² - Σ_j p_j²)/σ²
                         + Σ_j log λ_j + (D - k) log σ² + D log 2π ],
          p = Vᵀ (x - μ)

      (with all components kept, σ² = 0 and the residual terms vanish: a full-covariance Gaussian). Every
      variance is floored at 1e-6 times the largest, so rank-deficient training data (constant columns,
      dependent columns) give a proper, if very narrow, Gaussian across the missing directions;
    - ``anomaly_score="reconstruction"``: the squared distance to the principal subspace (the SPE or Q
      statistic, Jackson & Mudholkar, 1979), ``||x - μ - V Vᵀ (x - μ)||²``; needs k < D.

    Parameters
    ----------
    n_components : int, float or None, default 0.95
        As for scikit-learn's PCA: an int k, a fraction in (0, 1) of the variance to keep, or None
        for all components.
    anomaly_score : "likelihood" or "reconstruction", default "likelihood"
        Formerly ``score`` (still accepted, with a DeprecationWarning: an attribute ``score`` hid
        scikit-learn's ``score()`` method).
    svd_solver : str, default "auto"
        As for scikit-learn's PCA (its randomized solver is seeded from ``seed``).
    reduce : "min", "mean" or "max", default "min"
        Series: how the window scores covering a timestamp combine (see the module docstring).
    **kwargs
        The shared detector parameters (window, stride, contamination, seed, ...).
    """

    def __init__(self, n_components: int | float | None = 0.95, anomaly_score: str = "likelihood",
                 svd_solver: str = "auto", reduce: str = "min", **kwargs):
        anomaly_score = take_renamed(kwargs, "score", "anomaly_score", anomaly_score, "likelihood",
                                     type(self).__name__)
        super().__init__(reduce=reduce, **kwargs)
        self.n_components = n_components
        self.anomaly_score = anomaly_score
        self.svd_solver = svd_solver

    def _check_params(self) -> None:
        if self.anomaly_score not in PCA_SCORES:
            raise ValueError(f"anomaly_score must be one of {PCA_SCORES}, got {self.anomaly_score!r}")

    def _make_estimator(self, random_state: int):
        from sklearn.decomposition import PCA

        return PCA(n_components=self.n_components, svd_solver=self.svd_solver, random_state=random_state)

    def _extract_state(self, est, X: np.ndarray) -> dict:
        lam, noise = np.asarray(est.explained_variance_, dtype=np.float64), float(est.noise_variance_)
        top = float(lam.max(initial=0.0))
        if not top > 0:
            raise ValueError("PCADetector: every training column is constant; there is no variance to model")
        # Rank-deficient data (a constant column, a column that is a sum of others, fewer rows than columns) have
        # zero variances, where the likelihood is undefined. Variances are floored at PCA_VARIANCE_FLOOR times the
        # largest one (the covariance's condition number is at most 1/PCA_VARIANCE_FLOOR): a point off the
        # training data's subspace is then very unlikely instead of infinitely so.
        floor = PCA_VARIANCE_FLOOR * top
        return {"mean": _t(est.mean_), "components": _t(est.components_),
                "explained_variance": _t(np.maximum(lam, floor)), "noise_variance": max(noise, floor)}

    def _score_state(self, x: torch.Tensor) -> torch.Tensor:
        s = self.state_
        if self.anomaly_score not in PCA_SCORES:
            raise ValueError(f"anomaly_score must be one of {PCA_SCORES}, got {self.anomaly_score!r}")
        V, lam, noise = s["components"], s["explained_variance"], float(s["noise_variance"])
        xc = x - s["mean"]
        p = xc @ V.T                                    # [b, k] coordinates in the principal directions
        if self.anomaly_score == "reconstruction":
            if V.shape[0] == V.shape[1]:
                raise ValueError("anomaly_score='reconstruction' needs fewer components than dimensions "
                                 f"(n_components < {V.shape[1]}): with all of them every error is 0")
            return (xc - p @ V).square().sum(1)
        D, k = V.shape[1], V.shape[0]
        maha = (p.square() / lam).sum(1)
        logdet = lam.log().sum()
        if k < D:
            maha = maha + (xc.square().sum(1) - p.square().sum(1)) / noise
            logdet = logdet + (D - k) * math.log(noise)
        return 0.5 * (maha + logdet + D * math.log(2.0 * math.pi))


# ================================================================================================ OC-SVM
OCSVM_KERNELS = ("rbf", "linear", "poly", "sigmoid")


class OCSVMDetector(_SklearnDetector):
    """One-Class SVM (Schölkopf et al., Neural Computation 2001; ``sklearn.svm.OneClassSVM``).

    score(x) = -Σ_i α_i K(s_i, x) over the support vectors s_i (``-OneClassSVM.score_samples``; the
    decision boundary is at score = -ρ). Kernels: rbf ``exp(-γ||x - y||²)``, linear ``x·y``, poly
    ``(γ x·y + coef0)^degree``, sigmoid ``tanh(γ x·y + coef0)``.

    Parameters
    ----------
    kernel : "rbf", "linear", "poly" or "sigmoid", default "rbf"
    nu : float in (0, 1], default 0.1
        Upper bound on the fraction of training errors and lower bound on the fraction of support
        vectors (scikit-learn's default is 0.5; 0.1 matches the base default contamination and keeps
        scoring cheap: cost is proportional to the number of support vectors).
    gamma : "scale", "auto" or float, default "scale"
        As for scikit-learn ("scale" = 1 / (F · Var(X)), F the features or W·C).
    degree, coef0, tol, max_iter
        As for scikit-learn.
    reduce : "min", "mean" or "max", default "min"
        Series: how the window scores covering a timestamp combine (see the module docstring).
    **kwargs
        The shared detector parameters (window, stride, contamination, seed, ...).
    """

    def __init__(self, kernel: str = "rbf", nu: float = 0.1, gamma: str | float = "scale", degree: int = 3,
                 coef0: float = 0.0, tol: float = 1e-3, max_iter: int = -1,
                 reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.tol = tol
        self.max_iter = max_iter

    def _check_params(self) -> None:
        if self.kernel not in OCSVM_KERNELS:
            raise ValueError(f"kernel must be one of {OCSVM_KERNELS}, got {self.kernel!r}")

    def _make_estimator(self, random_state: int):
        from sklearn.svm import OneClassSVM

        est = OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma, degree=self.degree, coef0=self.coef0,
                          tol=self.tol, max_iter=self.max_iter)
        # libsvm's one-class solver uses no random numbers, but scikit-learn's fit still draws a seed for it from
        # check_random_state(self.random_state), which OneClassSVM leaves None: the global numpy RNG, shared by
        # every thread. Its own int keeps that draw off the global stream.
        est.random_state = random_state
        return est

    def _extract_state(self, est, X: np.ndarray) -> dict:
        return {"support_vectors": _t(est.support_vectors_), "dual_coef": _t(est.dual_coef_[0]),
                "kernel": str(self.kernel), "gamma": float(est._gamma), "degree": int(self.degree),
                "coef0": float(self.coef0)}

    def _score_state(self, x: torch.Tensor) -> torch.Tensor:
        s = self.state_
        sv, alpha, kernel = s["support_vectors"], s["dual_coef"], s["kernel"]
        gamma, coef0 = float(s["gamma"]), float(s["coef0"])
        if kernel == "rbf":
            sq = (x.square().sum(1, keepdim=True) + sv.square().sum(1) - 2.0 * (x @ sv.T)).clamp_min_(0.0)
            k = torch.exp(-gamma * sq)
        elif kernel == "linear":
            k = x @ sv.T
        elif kernel == "poly":
            k = (gamma * (x @ sv.T) + coef0).pow(int(s["degree"]))
        else:
            k = torch.tanh(gamma * (x @ sv.T) + coef0)
        return -(k @ alpha)


# ================================================================================================ iForest
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
    n_estimators : int, default 100
    max_samples : "auto", int or float, default "auto"
        ψ: "auto" = min(256, n).
    max_features : int or float, default 1.0
    bootstrap : bool, default False
        As for scikit-learn; the random choices are seeded from ``seed``.
    reduce : "min", "mean" or "max", default "min"
        Series: how the window scores covering a timestamp combine (see the module docstring).
    **kwargs
        The shared detector parameters (window, stride, contamination, seed, ...).
    """

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


# ================================================================================================ LOF
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
