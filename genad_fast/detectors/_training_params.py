"""The training hyper-parameters of the network detectors, declared once (:mod:`genad_fast._params`).

``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``, ``val_fraction`` and ``patience`` configure
:func:`genad_fast.nn.training.fit` (Adam, global gradient-norm clipping, early stopping on a held-out split).
A detector that trains that way inherits :class:`TrainingParamsMixin` and still spells the parameters out in its
``__init__`` with its own defaults (scikit-learn style); a detector that trains otherwise (the GANs) picks the
specs it has from :data:`TRAINING_SPECS`.
"""
from __future__ import annotations

from typing import ClassVar

from genad_fast._params import Param
from genad_fast.nn import training

__all__ = ["TRAINING_SPECS", "TrainingParamsMixin"]

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
          "weights of the best epoch are kept).", low=1),
)}


class TrainingParamsMixin:
    """The specs of the seven training parameters and the :class:`~genad_fast.nn.training.TrainConfig` they make."""

    _param_specs: ClassVar[tuple[Param, ...]] = tuple(TRAINING_SPECS.values())

    def _train_config(self, epochs: int | None = None) -> training.TrainConfig:
        """The training configuration (``epochs`` overrides the parameter, e.g. for a pre-training phase)."""
        return training.TrainConfig(epochs=int(self.epochs if epochs is None else epochs),
                                    batch_size=int(self.batch_size), lr=float(self.lr),
                                    weight_decay=float(self.weight_decay), grad_clip=float(self.grad_clip),
                                    val_fraction=float(self.val_fraction), patience=int(self.patience))
