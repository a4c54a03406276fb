"""What the network detectors share: architecture parameters and defaults, the training parameters
(:mod:`genad_fast.detectors._training_params`), and the scoring products' dtype.

A mixin, not a base class: each detector still spells out its own parameters in ``__init__``
(scikit-learn style); the specs here declare their rules and docs once (:mod:`genad_fast._params`).
"""
from __future__ import annotations

from typing import ClassVar

import torch

from genad_fast._params import Param, odd
from genad_fast.detectors._training_params import MIN_STEPS, TrainingParamsMixin

__all__ = ["MATMUL_DTYPE", "MATMUL_DTYPES", "MIN_STEPS", "NetworkParamsMixin", "default_code_size", "sample_shape"]

#: Hidden widths (MLP, tabular rows) or convolution channels per stage (windows) when ``hidden=None``.
DEFAULT_HIDDEN_MLP = (128, 64)
DEFAULT_HIDDEN_CONV = (32, 64)

#: ``matmul_dtype`` -> the autocast dtype of the scoring products (None: float32, no autocast).
MATMUL_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}
MATMUL_DTYPE = Param("matmul_dtype", "choice", "Dtype of the networks' matrix products at scoring (bfloat16 is "
                     "faster on CPUs with bf16 instructions; the scores stay float32).", choices=tuple(MATMUL_DTYPES),
                     scoring=True)
#: Layer widths: None (a default for the input's shape) or positive ints.
HIDDEN = Param("hidden", "widths", "Hidden widths (MLP) or convolution channels per stage (windows); None: "
               f"{DEFAULT_HIDDEN_MLP} for rows, {DEFAULT_HIDDEN_CONV} for windows.", allow_none=True)
KERNEL_SIZE = Param("kernel_size", "int", "Odd convolution kernel length (windows).", low=1, check=odd)


def default_code_size(n_dims: int) -> int:
    """Code size when ``latent_dim``/``rep_dim`` is None: half the input size, at least 2 and at most 16, and
    smaller than the input (a code as wide as its input lets an autoencoder learn the identity and reconstruct
    anomalies as well as normal data: 2 features get a code of 1), except for one feature (a code of 1)."""
    return max(1, min(16, n_dims - 1, max(2, n_dims // 2)))


class NetworkParamsMixin(TrainingParamsMixin):
    """The parameters ``hidden``, ``kernel_size``, ``batch_norm`` of the encoder/decoder detectors (autoencoder,
    VAE, Deep SVDD), plus the training ones."""

    _param_specs: ClassVar[tuple[Param, ...]] = (
        HIDDEN, KERNEL_SIZE, Param("batch_norm", "bool", "Batch normalisation after each hidden layer."))

    def _hidden_for(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.hidden is not None:
            return tuple(int(w) for w in self.hidden)
        return DEFAULT_HIDDEN_MLP if len(sample_shape) == 1 else DEFAULT_HIDDEN_CONV


def sample_shape(data: torch.Tensor) -> tuple[int, ...]:
    """Shape of one sample: ``(D,)`` for rows ``[N, D]``, ``(W, C)`` for windows ``[N, W, C]``."""
    return tuple(int(s) for s in data.shape[1:])
