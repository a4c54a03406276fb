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

Layout: ``_wrapper`` (the shared fit / state / score wrapper), then one module per detector: ``pca``,
``ocsvm``, ``iforest``, ``lof``.
"""
from genad_fast.detectors.sklearn_baselines.iforest import IsolationForestDetector, average_path_length
from genad_fast.detectors.sklearn_baselines.lof import LOFDetector
from genad_fast.detectors.sklearn_baselines.ocsvm import OCSVM_KERNELS, OCSVMDetector
from genad_fast.detectors.sklearn_baselines.pca import PCA_SCORES, PCA_VARIANCE_FLOOR, PCADetector

__all__ = ["IsolationForestDetector", "LOFDetector", "OCSVMDetector", "PCADetector"]

# The detectors' public home is this package: model files record a detector's class as
# "module:QualName" (and the registry names these classes by that path), so the classes keep the path
# they had before the package was split, and files written before and after the split are the same.
for _cls in (IsolationForestDetector, LOFDetector, OCSVMDetector, PCADetector):
    _cls.__module__ = __name__
del _cls
