"""KDEDetector: the negative log-density under a Gaussian kernel density estimate of the training data.

    score(x) = −log p̂(x),   p̂(x) = (1/N) Σ_j N(x; x_j, h²·I)

(Rosenblatt 1956; Parzen 1962) over the N training rows (or flattened training windows) x_j in d dimensions,
computed by the fused :func:`genad_fast.ops.kde_logpdf` (normalised as scikit-learn's
``KernelDensity(kernel="gaussian").score_samples``). Training scores are leave-one-out (the density of each
training point under the others, normalised by N − 1; see :mod:`genad_fast.detectors._reference_set`), so the
threshold is not set on densities that count each point's own kernel.

Bandwidth h (``bandwidth_`` after fit):

- ``"scott"`` (default): h = σ̄ · N^(−1/(d + 4)) (Scott, *Multivariate Density Estimation*, 1992);
- ``"silverman"``: h = σ̄ · (N·(d + 2)/4)^(−1/(d + 4)) (Silverman, *Density Estimation*, 1986);
- a number > 0: h itself, in the units of the data the model sees (normalised when ``normalize=True``).

σ̄ = √(mean_j Var(x_·j)) is the pooled standard deviation of the d coordinates of the training data as the
model sees it. With ``normalize=True`` (the default) every feature has unit variance, σ̄ ≈ 1 and the rules are
scikit-learn's ``bandwidth="scott"`` / ``"silverman"`` factors; with ``normalize=False`` the factor is scaled to
the data, so the scores do not depend on the unit of measurement (up to a constant).

Series: a window gets one score; ``reduce`` defaults to "min", as for the other classic baselines.
"""
from __future__ import annotations

import math

import torch

from genad_fast import ops
from genad_fast._params import Param
from genad_fast.detectors._call import current_call
from genad_fast.detectors._reference_set import ReferenceSetDetector
from genad_fast.detectors.base import REDUCE

__all__ = ["KDEDetector"]

BANDWIDTH_RULES = ("scott", "silverman")


class KDEDetector(ReferenceSetDetector):
    """Gaussian kernel density detector, tabular or over windows of a series.

    Fitted attributes: ``bandwidth_`` (h), ``reference_`` (the training rows or flattened windows ``[N, d]``),
    and the base's.

    Parameters
    ----------
    """

    _param_specs = (
        Param("bandwidth", "number", "The kernel's standard deviation h, or the rule that sets it from the training "
              "data (module docstring).", low=0.0, low_open=True, finite=True, choices=BANDWIDTH_RULES),
        REDUCE,
    )

    def __init__(self, bandwidth: str | float = "scott", reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.bandwidth = bandwidth

    def _fit_reference(self, reference: torch.Tensor) -> None:
        if not isinstance(self.bandwidth, str):
            self.bandwidth_ = float(self.bandwidth)
            return
        rule = ops.scott_bandwidth if self.bandwidth == "scott" else ops.silverman_bandwidth
        sigma = math.sqrt(float(reference.double().var(dim=0, unbiased=False).mean()))
        if not sigma > 0.0:
            raise ValueError(f"KDEDetector: the training {'windows' if self.is_series else 'rows'} are all the "
                             f"same point (zero variance), so bandwidth={self.bandwidth!r} gives h = 0; pass a "
                             f"bandwidth > 0")
        self.bandwidth_ = sigma * rule(reference)

    def _score_against(self, x: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        return -ops.kde_logpdf(x, self.reference_, self.bandwidth_, exclude_self=exclude_self,
                                backend=current_call(self).dispatch)

    def _extra_state(self) -> dict:
        return {"bandwidth": self.bandwidth_}

    def _set_extra_state(self, state: dict) -> None:
        self.bandwidth_ = float(state["bandwidth"])
