"""f-AnoGAN's izi_f encoder (Schlegl et al., Medical Image Analysis 2019, Sec. 2.3): loss, training, score.

With G and the critic trained (:mod:`genad_fast.nn.gan.training`) and frozen, an encoder E: x -> z
(:func:`genad_fast.nn.gan.networks.make_izif_encoder`) is trained to make the image–latent–image round
trip reproduce both the sample and its critic features:

    L_izi_f(x) = 1/n ||x - G(E(x))||^2 + kappa / n_f ||f(x) - f(G(E(x)))||^2      (kappa = 1)

(n = entries of a sample, n_f = feature count). The same quantity is f-AnoGAN's anomaly score, one
forward pass per sample (:func:`izif_score`). The encoder is trained by the shared loop
:func:`genad_fast.nn.training.fit` (Adam, clipping, early stopping); E(x) also starts AnoGAN's latent
search with ``init="encoder"``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from genad_fast.nn import training
from genad_fast.nn.gan.networks import freeze

__all__ = ["izif_loss", "izif_score", "izif_terms", "train_izif_encoder"]


def izif_terms(encoder: nn.Module, generator: nn.Module, critic: nn.Module,
               x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(1/n ||x - G(E(x))||^2, 1/n_f ||f(x) - f(G(E(x)))||^2)``, each ``[N]`` (f-AnoGAN, eq. 4)."""
    gx = generator(encoder(x))
    residual = (x - gx).flatten(1).square().mean(1)
    feature = (critic.features(x) - critic.features(gx)).square().mean(1)
    return residual, feature


def izif_loss(encoder: nn.Module, generator: nn.Module, critic: nn.Module, x: torch.Tensor,
              kappa: float = 1.0) -> torch.Tensor:
    """Mean over the batch of the izi_f loss (the training objective of the encoder)."""
    residual, feature = izif_terms(encoder, generator, critic, x)
    return (residual + kappa * feature).mean()


def train_izif_encoder(encoder: nn.Module, generator: nn.Module, critic: nn.Module, data: torch.Tensor,
                       kappa: float, config: training.TrainConfig, rng: torch.Generator, *, verbose: bool = True,
                       desc: str = "izi_f encoder") -> training.TrainHistory:
    """Train ``encoder`` on ``data`` [N, *sample_shape] by the izi_f loss through the frozen ``generator`` and
    ``critic`` (:func:`genad_fast.nn.training.fit`, batches and split drawn from ``rng``); it ends frozen."""
    def loss_fn(enc: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return izif_loss(enc, generator, critic, batch, kappa)

    history = training.fit(encoder, loss_fn, data, config, rng, verbose=verbose, desc=desc)
    freeze(encoder)
    return history


def izif_score(encoder: nn.Module, generator: nn.Module, critic: nn.Module, x: torch.Tensor, kappa: float,
               matmul_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f-AnoGAN's anomaly score of every sample of ``x``: ``(residual + kappa * feature, residual, feature)``,
    the terms of :func:`izif_terms` in float32, each ``[N]``.

    ``matmul_dtype``: None (the networks' dtype) or a lower precision the passes run in under
    ``torch.autocast`` on ``x``'s device (bfloat16: faster products on CPUs with bf16 instructions)."""
    ctx = (torch.autocast(device_type=x.device.type, dtype=matmul_dtype) if matmul_dtype is not None
           else contextlib.nullcontext())
    with ctx:
        residual, feature = izif_terms(encoder, generator, critic, x)
    residual, feature = residual.float(), feature.float()
    return residual + float(kappa) * feature, residual, feature
