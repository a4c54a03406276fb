"""One-Class SVM as a detector: ``score(x) = -Σ_i α_i K(s_i, x)`` from the stored support vectors.

See :class:`OCSVMDetector` (Schölkopf et al., 2001) for the kernels.
"""
from __future__ import annotations

import numpy as np
import torch

from genad_fast._params import Param
from genad_fast.detectors.base import REDUCE
from genad_fast.detectors.sklearn_baselines._wrapper import _SklearnDetector, _t, sklearn_param


OCSVM_KERNELS = ("rbf", "linear", "poly", "sigmoid")


class OCSVMDetector(_SklearnDetector):
    """One-Class SVM (Schölkopf et al., Neural Computation 2001; ``sklearn.svm.OneClassSVM``).

    score(x) = -Σ_i α_i K(s_i, x) over the support vectors s_i (``-OneClassSVM.score_samples``; the
    decision boundary is at score = -ρ). Kernels: rbf ``exp(-γ||x - y||²)``, linear ``x·y``, poly
    ``(γ x·y + coef0)^degree``, sigmoid ``tanh(γ x·y + coef0)``.

    Parameters
    ----------
    """

    _param_specs = (
        Param("kernel", "choice", "The kernel K (see above).", choices=OCSVM_KERNELS),
        Param("nu", "number", "Upper bound on the fraction of training errors and lower bound on the fraction of "
              "support vectors (scikit-learn's default is 0.5; 0.1 matches the base default contamination and keeps "
              "scoring cheap: cost is proportional to the number of support vectors).", low=0.0, high=1.0,
              low_open=True),
        sklearn_param("gamma", "OneClassSVM", '"scale", "auto" or float', "As for scikit-learn (\"scale\" = 1 / "
                      "(F · Var(X)), F the features or W·C)."),
        sklearn_param("degree", "OneClassSVM", "int"),
        sklearn_param("coef0", "OneClassSVM", "float"),
        sklearn_param("tol", "OneClassSVM", "float"),
        sklearn_param("max_iter", "OneClassSVM", "int"),
        REDUCE,
    )

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
