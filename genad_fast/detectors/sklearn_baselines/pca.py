"""PCA as a detector: probabilistic-PCA negative log-likelihood or squared reconstruction error.

See :class:`PCADetector` for the formulas (Tipping & Bishop, 1999; Jackson & Mudholkar, 1979).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from genad_fast._params import Param
from genad_fast.detectors._renamed import take_renamed
from genad_fast.detectors.base import REDUCE
from genad_fast.detectors.sklearn_baselines._wrapper import _SklearnDetector, _t, sklearn_param


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
    """

    _param_specs = (
        sklearn_param("n_components", "PCA", "int, float or None", "As for scikit-learn's PCA: an int k, a "
                      "fraction in (0, 1) of the variance to keep, or None for all components."),
        Param("anomaly_score", "choice", "The score (see above). Formerly ``score`` (still accepted, with a "
              "DeprecationWarning: an attribute ``score`` hid scikit-learn's ``score()`` method).",
              choices=PCA_SCORES, scoring=True),
        sklearn_param("svd_solver", "PCA", "str", "As for scikit-learn's PCA (its randomized solver is seeded "
                      "from ``seed``)."),
        REDUCE,
    )

    def __init__(self, n_components: int | float | None = 0.95, anomaly_score: str = "likelihood",
                 svd_solver: str = "auto", reduce: str = "min", **kwargs):
        anomaly_score = take_renamed(kwargs, "score", "anomaly_score", anomaly_score, "likelihood",
                                     type(self).__name__)
        super().__init__(reduce=reduce, **kwargs)
        self.n_components = n_components
        self.anomaly_score = anomaly_score
        self.svd_solver = svd_solver

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
