"""The training hyper-parameters of the network detectors, declared once (:mod:`genad_fast._params`).

``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``, ``val_fraction`` and ``patience`` configure
:func:`genad_fast.nn.training.fit` (Adam, global gradient-norm clipping, early stopping on a held-out split).
A detector that trains that way inherits :class:`TrainingParamsMixin` and still spells the parameters out in its
``__init__`` with its own defaults (scikit-learn style); a detector that trains otherwise (the GANs) picks the
specs it has from :data:`TRAINING_SPECS`.

Two more, for the detectors that declare them in ``__init__`` (the others train as before; see
docs/training_speed.md for the measurements behind the defaults):

``train_stride``
    Series: an epoch trains on as many windows as a grid of windows ``train_stride`` timestamps apart has,
    drawn from all the training windows (``stride`` apart) in random permutations swept across the epochs (but at
    least 8 batches, or all of them: early stopping's patience counts epochs), and validates on the same fraction
    of the held-out windows (:class:`~genad_fast.nn.training.TrainConfig`'s
    ``epoch_fraction`` = min(1, stride / train_stride)). Windows at stride 1 overlap in W - 1 of their W
    timestamps: a pass over all of them shows every timestamp W times, so the number of optimiser steps per
    epoch, and with early stopping's patience in epochs the whole fit, would grow with that redundancy.
    1 trains on every window each epoch (the behaviour before the parameter); tabular data ignores it.
``train_dtype``
    The dtype of the forward passes' products in training: ``"bfloat16"`` runs them under ``torch.autocast``
    (weights, gradients, Adam's state, losses float32), ``"auto"`` does that where the CPU multiplies bfloat16 in
    hardware (AMX or AVX512-BF16: :func:`~genad_fast.nn.training.cpu_has_native_bf16`) and keeps float32
    elsewhere (on CUDA, and on CPUs that only emulate bfloat16, where it is slower).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from genad_fast._params import Param
from genad_fast.nn import training

__all__ = ["MIN_STEPS", "TRAINING_SPECS", "TRAIN_DTYPES", "TrainingParamsMixin", "epoch_fraction", "epochs_for_steps",
           "train_autocast"]

#: ``train_dtype`` -> the autocast dtype of the training forward passes (None: float32); "auto" is resolved per
#: device and CPU by :func:`train_autocast`.
TRAIN_DTYPES = ("auto", "float32", "bfloat16")

#: The spec of each training hyper-parameter, by name.
TRAINING_SPECS: dict[str, Param] = {p.name: p for p in (
    Param("epochs", "int", "Passes over the training data (at most: early stopping may end sooner).", low=1),
    Param("batch_size", "int", "Training samples per optimiser step.", low=1),
    Param("lr", "number", "Adam's learning rate.", low=0.0, low_open=True),
    Param("weight_decay", "number", "L2 penalty on the weights (Adam's weight decay).", low=0.0),
    Param("grad_clip", "number", "Bound on the global gradient norm per step; 0 disables clipping.", low=0.0),
    Param("val_fraction", "number", "Fraction of the training samples held out for early stopping; 0 trains on "
          "all of them for ``epochs``.", low=0.0, high=1.0, high_open=True),
    Param("patience", "int", "Epochs without improvement of the held-out loss before training stops (the "
          "weights of the best epoch are kept); where epochs are short (small data), at least ``patience`` · 8 "
          "optimiser steps' worth of them.", low=1),
    Param("train_stride", "int", "Series: an epoch draws as many of the training windows as a grid of windows "
          "``train_stride`` timestamps apart holds (random, swept over the epochs) and validates on that fraction "
          "of the held-out ones; 1: every window each epoch. None: window // 8 (at least 1).", low=1,
          allow_none=True),
    Param("train_dtype", "choice", "Dtype of the training forward passes' products (autocast; weights, gradients "
          "and losses stay float32). \"auto\": bfloat16 on CPUs with AMX or AVX512-BF16, else float32.",
          choices=TRAIN_DTYPES),
)}

#: Fewest optimiser steps of a fit. An optimiser converges in steps, not epochs: 50 epochs of a 60-row table at
#: batch size 128 are 50 steps, far from converged (the quality study, docs/quality_study.md: the best epoch was
#: the last one on every data set), while 50 epochs of 2,000 windows are 800. The autoencoder, the VAE and Deep
#: SVDD default to 1,000 steps, as the GANs to 1,000 generator steps (docs/quality_study.md, "Patience in steps").
MIN_STEPS = Param("min_steps", "int", "Fewest optimiser steps of training: where ``epochs`` passes over the "
                  "training samples make fewer steps (small data), the fit runs ceil(min_steps / steps per epoch) "
                  "epochs instead; early stopping (``patience``) may still end it sooner. 0: exactly ``epochs``.",
                  low=0)


class TrainingParamsMixin:
    """The specs of the seven training parameters and the :class:`~genad_fast.nn.training.TrainConfig` they make."""

    _param_specs: ClassVar[tuple[Param, ...]] = tuple(TRAINING_SPECS.values())
    #: True where the detector's loss applies ``train_dtype`` itself (the flow: bfloat16 conditioner products, the
    #: coupling and log-determinants float32), so the loop runs no autocast of its own.
    _loss_applies_train_dtype: ClassVar[bool] = False
    #: True where the detector trains with Adam's fused kernel (``TrainConfig.fused_adam``): the flow, whose ~140
    #: small parameter tensors made the per-tensor update ~20 % of a step; the others keep the loop they were
    #: measured with.
    _fused_adam: ClassVar[bool] = False
    #: ``TrainConfig.min_epoch_steps``: the fewest batches in an epoch over a share of the windows (``train_stride``)
    _min_epoch_steps: ClassVar[int] = 8
    #: ``TrainConfig.patience_in_steps``: early stopping waits ``patience`` · ``min_epoch_steps`` optimiser steps
    #: also on long epochs (the flow: 65 % of its fit on 20,000 rows was the 10 epochs of patience); the others
    #: keep the patience they were measured with.
    _patience_in_steps: ClassVar[bool] = False

    def _train_batch_size(self) -> int:
        """Training samples per optimiser step: ``batch_size`` (a detector whose default depends on the data
        resolves it here)."""
        return int(self.batch_size)

    def _train_config(self, epochs: int | None = None) -> training.TrainConfig:
        """The training configuration (``epochs`` overrides the parameter, e.g. for a pre-training phase)."""
        return training.TrainConfig(epochs=int(self.epochs if epochs is None else epochs),
                                    batch_size=self._train_batch_size(), lr=float(self.lr),
                                    weight_decay=float(self.weight_decay), grad_clip=float(self.grad_clip),
                                    val_fraction=float(self.val_fraction), patience=int(self.patience),
                                    epoch_fraction=epoch_fraction(self),
                                    autocast=None if self._loss_applies_train_dtype else train_autocast(self),
                                    min_epoch_steps=self._min_epoch_steps, fused_adam=self._fused_adam,
                                    patience_in_steps=self._patience_in_steps)

    def _fit_config(self, n_samples: int, epochs: int | None = None):
        """:meth:`_train_config`, with the epochs raised so that the fit on ``n_samples`` samples makes at least
        ``min_steps`` optimiser steps (:data:`MIN_STEPS`)."""
        config = self._train_config(epochs)
        min_steps = int(getattr(self, "min_steps", 0) or 0)
        if min_steps <= 0:
            return config
        n_train = training.split_sizes(n_samples, config.val_fraction)[0]
        # (the detectors with min_steps train on every sample each epoch: no train_stride, epoch_fraction 1)
        steps = max(1, math.ceil(n_train / config.batch_size))
        return dataclasses.replace(config, epochs=epochs_for_steps(config.epochs, min_steps, steps))


def epochs_for_steps(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """``epochs``, or ceil(min_steps / steps_per_epoch) where that is more: the epochs that make at least
    ``min_steps`` steps (``min_steps`` <= 0: ``epochs``)."""
    if min_steps <= 0 or epochs <= 0:
        return epochs
    return max(epochs, math.ceil(min_steps / max(1, steps_per_epoch)))


def training_window(det) -> int | None:
    """The window ``det`` trains on (None: it trains on rows): ``_window`` where the detector resolves one at fit
    (``window="auto"``), else its ``window`` parameter."""
    return getattr(det, "_window", None) if hasattr(type(det), "_window") else getattr(det, "window", None)


def epoch_fraction(det) -> float:
    """``min(1, stride / train_stride)`` for a series detector that declares ``train_stride`` (None: window // 8),
    else 1: the fraction of the training windows an epoch uses."""
    window = training_window(det)
    if window is None or "train_stride" not in det._get_param_names():
        return 1.0
    train_stride = det.train_stride if det.train_stride is not None else max(1, int(window) // 8)
    return min(1.0, int(getattr(det, "stride", 1)) / int(train_stride))


def train_autocast(det) -> torch.dtype | None:
    """The autocast dtype of ``det``'s training forward passes (None: float32), from ``train_dtype`` if it has it."""
    choice = getattr(det, "train_dtype", "float32") if "train_dtype" in det._get_param_names() else "float32"
    if choice == "bfloat16":
        return torch.bfloat16
    if choice == "auto":
        device = getattr(det, "device_", None)
        on_cpu = device is None or torch.device(device).type == "cpu"
        return torch.bfloat16 if on_cpu and training.cpu_has_native_bf16() else None
    return None
