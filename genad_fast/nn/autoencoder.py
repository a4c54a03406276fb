"""Deterministic autoencoder: the DCAE baseline of Ruff et al. (ICML 2018) and Deep SVDD's pre-training.

An encoder maps a sample to a code of ``latent_dim`` numbers and a decoder maps it back; trained on
normal data to minimise the squared reconstruction error, it reconstructs normal samples well and
anomalies badly, so the error is the anomaly score (Hawkins et al., 2002; Sakurada & Yairi, 2014):

    e(x) = ||x - D(E(x))||² / D                        (mean over the D = features, or W·C, entries)

For windows ``[N, W, C]`` the error can be kept per timestamp, ``e_t = Σ_c (x_tc - x̂_tc)² / C``.
The encoder and decoder come from :mod:`genad_fast.nn.blocks` (MLP for vectors, 1-D convolutions
for windows); ``bias=False`` gives the bias-free autoencoder Deep SVDD is pre-trained with.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genad_fast.nn.blocks import make_decoder, make_encoder

__all__ = ["AutoEncoder", "reconstruction_loss"]


class AutoEncoder(nn.Module):
    """``x -> E(x) -> D(E(x))`` for samples of shape ``sample_shape`` (``(D,)`` or ``(W, C)``)."""

    def __init__(self, sample_shape: Sequence[int], latent_dim: int, hidden: Sequence[int], *,
                 kernel_size: int = 5, bias: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.encoder = make_encoder(self.sample_shape, hidden, latent_dim, kernel_size=kernel_size, bias=bias,
                                    batch_norm=batch_norm)
        self.decoder = make_decoder(self.sample_shape, hidden, latent_dim, kernel_size=kernel_size, bias=bias,
                                    batch_norm=batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def errors(self, x: torch.Tensor, per_timestamp: bool = False) -> torch.Tensor:
        """Squared reconstruction error: ``[N]`` mean over all entries, or ``[N, W]`` mean over channels."""
        sq = (x - self(x)).square()
        if per_timestamp:
            if sq.dim() != 3:
                raise ValueError(f"per-timestamp errors need windows [N, W, C], got shape {tuple(x.shape)}")
            return sq.mean(-1)
        return sq.flatten(1).mean(1)


def reconstruction_loss(model: AutoEncoder, batch: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error of a batch (the training loss of :func:`genad_fast.nn.training.fit`)."""
    return (batch - model(batch)).square().mean()
