"""The shared wrapper of the scikit-learn baselines: fit a scikit-learn estimator, keep plain data, score from it.

:class:`_SklearnDetector` fits ``_make_estimator()`` on the rows ``[N, D]`` or the flattened windows
``[n, W·C]`` (float64, :func:`_rows`), keeps in ``state_`` only what ``_extract_state`` returns (tensors,
numbers, strings: what a model file holds), and scores from that state with ``_score_state``, the sign of
``estimator.score_samples`` flipped so that higher means more anomalous. Each detector module (``pca``,
``ocsvm``, ``iforest``, ``lof``) provides those three methods.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genad_fast._params import Param
from genad_fast.detectors.base import BaseDetector


def sklearn_param(name: str, estimator: str, type_doc: str, doc: str = "") -> Param:
    """A parameter passed on to the scikit-learn estimator as it is: scikit-learn checks it at fit."""
    return Param(name, "any", doc or f"As for scikit-learn's ``{estimator}``.", type_doc=type_doc)


def _rows(data: torch.Tensor) -> torch.Tensor:
    """Rows ``[N, D]`` or windows ``[n, W, C]`` as float64 rows ``[n, F]`` (windows flattened time-major)."""
    return data.reshape(data.shape[0], -1).to(torch.float64)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


class _SklearnDetector(BaseDetector):
    """Fits ``_make_estimator()`` on rows or flattened windows; scores from ``state_`` (plain tensors)."""

    min_fit_samples = 2

    # ---- what each wrapper provides -----------------------------------------------------------
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
