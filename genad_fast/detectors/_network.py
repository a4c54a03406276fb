"""What the encoder/decoder detectors (autoencoder, VAE, Deep SVDD) share: architecture defaults,
parameter checks and the training configuration of :func:`genad_fast.nn.training.fit`.

A mixin, not a base class: each detector still spells out its own parameters in ``__init__``
(scikit-learn style), and these helpers read them.
"""
from __future__ import annotations

import numbers

import torch

from genad_fast.nn import training

#: Hidden widths (MLP, tabular rows) or convolution channels per stage (windows) when ``hidden=None``.
DEFAULT_HIDDEN_MLP = (128, 64)
DEFAULT_HIDDEN_CONV = (32, 64)


def default_code_size(n_dims: int) -> int:
    """Code size when ``latent_dim``/``rep_dim`` is None: half the input size, at least 2 and at most 16."""
    return min(16, max(2, n_dims // 2))


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _number(name: str, value, low: float, high: float | None = None, *, low_open: bool = False,
            high_open: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (high is None or (v < high if high_open else v <= high))
    if not ok:
        lo = "(" if low_open else "["
        hi = "inf)" if high is None else (f"{high:g})" if high_open else f"{high:g}]")
        raise ValueError(f"{name} must be a number in {lo}{low:g}, {hi}, got {value!r}")


class NetworkParamsMixin:
    """Checks and helpers for the parameters ``hidden``, ``kernel_size``, ``batch_norm``, ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``, ``val_fraction``, ``patience``."""

    def _check_network_params(self) -> None:
        h = self.hidden
        if h is not None:
            if isinstance(h, (str, bytes)) or not hasattr(h, "__iter__") or len(tuple(h)) == 0 or any(
                    isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1 for w in h):
                raise ValueError(f"hidden must be None or a non-empty sequence of positive ints, got {h!r}")
        _positive_int("kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a 'same' convolution keeps the window length), "
                             f"got {self.kernel_size}")
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _number("lr", self.lr, 0.0, low_open=True)
        _number("weight_decay", self.weight_decay, 0.0)
        _number("grad_clip", self.grad_clip, 0.0)
        _number("val_fraction", self.val_fraction, 0.0, 1.0)
        _positive_int("patience", self.patience)

    def _hidden_for(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.hidden is not None:
            return tuple(int(w) for w in self.hidden)
        return DEFAULT_HIDDEN_MLP if len(sample_shape) == 1 else DEFAULT_HIDDEN_CONV

    def _train_config(self, epochs: int | None = None) -> training.TrainConfig:
        return training.TrainConfig(epochs=int(self.epochs if epochs is None else epochs),
                                    batch_size=int(self.batch_size), lr=float(self.lr),
                                    weight_decay=float(self.weight_decay), grad_clip=float(self.grad_clip),
                                    val_fraction=float(self.val_fraction), patience=int(self.patience))


def sample_shape(data: torch.Tensor) -> tuple[int, ...]:
    """Shape of one sample: ``(D,)`` for rows ``[N, D]``, ``(W, C)`` for windows ``[N, W, C]``."""
    return tuple(int(s) for s in data.shape[1:])
