"""PyOD's and scikit-learn's names for what a fitted detector already knows (issue #13 step 7).

genad_fast keeps PyOD's conventions where the two libraries differ: ``decision_function`` and
``predict_proba`` grow with anomaly, ``predict`` gives 0 (normal) / 1 (anomaly); ``score_samples`` is
scikit-learn's opposite-signed score. Series detectors answer per timestamp throughout.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genad_fast.detectors._collection import map_result
from genad_fast.detectors._validation import NotFittedError

__all__ = ["ConventionsMixin"]


class ConventionsMixin:
    """``labels_``, ``fit_predict``, ``score_samples``, ``predict_proba`` and the outlier-detector tags."""

    #: scikit-learn < 1.6 reads the estimator type from this attribute (``sklearn.base.is_outlier_detector``).
    _estimator_type = "outlier_detector"

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 estimator tags: an unsupervised outlier detector of dense, finite, 2-D float data
        (series mode, ``window=W``, also takes a 1-D array: one channel). ``non_deterministic`` only for
        ``seed=None`` (any other seed reproduces fit and scores exactly)."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=False),
                    input_tags=InputTags(one_d_array=self.is_series, two_d_array=True, allow_nan=False),
                    non_deterministic=self.seed is None, requires_fit=True)

    @property
    def labels_(self) -> np.ndarray:
        """PyOD's training labels: 1 where ``decision_scores_ > threshold_``, else 0 (int64), one per training row
        or timestamp. Computed from the fitted attributes, so it follows :meth:`set_threshold`."""
        if "decision_scores_" not in self.__dict__ or "threshold_" not in self.__dict__:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet, so it has no labels_; call fit(X)")
        return (self.decision_scores_ > self.threshold_).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, *, by: Any = None) -> np.ndarray | list | dict:
        """``fit(X)``, then the training labels :attr:`labels_` (PyOD's ``fit_predict``); ``y`` is ignored. For a
        collection ``X``, the labels per part, laid out as ``decision_function`` lays out scores.

        These are the labels of the training scores the threshold was set on, so their mean is about
        ``contamination``. They equal ``predict(X)`` except for the reference-set detectors (kNN, KDE, LOF),
        which score their own training points leave-one-out."""
        return self._fit_input(X, by).unpack(self.labels_)

    def score_samples(self, X: Any, *, by: Any = None) -> np.ndarray | list | dict:
        """scikit-learn's outlier score: ``-decision_function(X)``, lower = more abnormal (as
        ``sklearn.ensemble.IsolationForest.score_samples``); float64, one per row or timestamp (per part for a
        collection)."""
        return map_result(self.decision_function(X, by=by), np.negative)

    def predict_proba(self, X: Any, method: str = "linear", *, by: Any = None) -> np.ndarray | list | dict:
        """``[n, 2]`` float64: ``[P(normal), P(anomaly)]`` per row (or timestamp), from the scores, as PyOD's
        ``BaseDetector.predict_proba``. With s = ``decision_function(X)`` and the training scores
        ``decision_scores_``:

        - ``method="linear"``: min-max scaling against the training scores' range, clipped,
          ``P(anomaly) = clip((s - min) / (max - min), 0, 1)``;
        - ``method="unify"``: Gaussian scaling (Kriegel et al., "Interpreting and Unifying Outlier Scores",
          SDM 2011), ``P(anomaly) = clip(erf((s - μ) / (σ √2)), 0, 1)``, μ and σ the mean and population
          standard deviation (ddof = 0) of the training scores.

        If every training score is the same (max = min, σ = 0), both give the limit of their formula:
        ``P(anomaly) = 1`` where s is above that score, else 0. A score of +inf (an extreme input) gives 1.
        ``P(normal) = 1 - P(anomaly)``. These are rescaled scores, not calibrated probabilities. For a
        collection ``X``, one ``[n_i, 2]`` array per part.
        """
        if method not in ("linear", "unify"):
            raise ValueError(f"method must be 'linear' or 'unify', got {method!r}")
        self._check_fitted()
        return map_result(self.decision_function(X, by=by), lambda scores: self._proba(scores, method))

    def _proba(self, scores: np.ndarray, method: str) -> np.ndarray:
        train = self.decision_scores_
        if method == "linear":
            low, span = float(train.min()), float(train.max() - train.min())
            centred, scale = scores - low, span
        else:
            centred, scale = scores - float(train.mean()), float(train.std()) * np.sqrt(2.0)
        if scale > 0:
            z = centred / scale
        else:  # the limit of either formula as the spread goes to 0: a step at the (single) training score
            z = np.where(centred > 0, np.inf, 0.0)
        if method == "unify":
            z = torch.special.erf(torch.from_numpy(np.asarray(z, dtype=np.float64))).numpy()
        p_anomaly = np.clip(z, 0.0, 1.0)
        return np.stack([1.0 - p_anomaly, p_anomaly], axis=1)
