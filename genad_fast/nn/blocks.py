"""Encoder and decoder builders shared by the autoencoder, the VAE and Deep SVDD.

Two input kinds, one builder pair each, chosen by the shape of one sample:

- a vector ``(D,)`` (tabular rows): a multilayer perceptron,
  ``Linear -> [BatchNorm] -> LeakyReLU`` per hidden width, then a last ``Linear``;
- a window ``(W, C)`` (W timestamps of C channels): 1-D convolutions over time with the
  channels as convolution channels, ``Conv1d(k, "same") -> [BatchNorm] -> LeakyReLU ->
  MaxPool1d(2)`` per hidden width (the length halves, rounded up, while it is 2 or more), then a
  ``Linear`` from the flattened feature map. The decoder mirrors it: a ``Linear`` to the smallest
  feature map, then per stage ``Upsample(nearest, to the encoder's length) -> Conv1d``, so any
  window length comes back exactly (no transposed-convolution off-by-one lengths).

The decoder's last layer has ``out_factor`` outputs per input element (2 for a Gaussian decoder's
mean and log-variance), split along the last dimension by the caller.

``bias=False`` removes every additive parameter: linear and convolution biases, and the shift and
scale of batch normalisation (``affine=False``). Deep SVDD needs that (Ruff et al., ICML 2018,
Prop. 2: a network with a bias can map every input to the centre by zeroing its weights and
learning the bias — a collapsed hypersphere that scores everything 0). The activation is the leaky
ReLU, unbounded and without saturation (Prop. 3: a bounded activation can collapse the same way).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "make_decoder", "make_encoder",
           "pooled_lengths"]

NEGATIVE_SLOPE = 0.1


def _norm(width: int, batch_norm: bool, bias: bool) -> list[nn.Module]:
    # BatchNorm1d normalises [N, F] and [N, F, L] alike. eps=1e-4 as in Ruff et al.'s networks;
    # affine=False when the network must stay bias-free (the learned shift is a bias).
    return [nn.BatchNorm1d(width, eps=1e-4, affine=bias)] if batch_norm else []


def pooled_lengths(window: int, n_stages: int) -> list[int]:
    """Lengths ``[L_0 = window, L_1, ..., L_n]`` of the feature maps of a :class:`ConvEncoder`.

    Each stage halves the length, rounding up (``MaxPool1d(2, ceil_mode=True)``), while it is >= 2.
    """
    lengths = [int(window)]
    for _ in range(n_stages):
        L = lengths[-1]
        lengths.append(-(-L // 2) if L >= 2 else L)
    return lengths


class MLPEncoder(nn.Module):
    """``[N, D] -> [N, out_dim]``: hidden layers ``Linear -> [BatchNorm] -> LeakyReLU``, then ``Linear``."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, *, bias: bool = True,
                 batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
            layers += [nn.Linear(prev, width, bias=bias), *_norm(width, batch_norm, bias),
                       nn.LeakyReLU(NEGATIVE_SLOPE)]
            prev = width
        layers.append(nn.Linear(prev, out_dim, bias=bias))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """``[N, in_dim] -> [N, out_dim * out_factor]``: the mirror of :class:`MLPEncoder` (``hidden`` reversed)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, *, out_factor: int = 1,
                 bias: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for width in reversed(tuple(hidden)):
            layers += [nn.Linear(prev, width, bias=bias), *_norm(width, batch_norm, bias),
                       nn.LeakyReLU(NEGATIVE_SLOPE)]
            prev = width
        layers.append(nn.Linear(prev, out_dim * out_factor, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvEncoder(nn.Module):
    """``[N, W, C] -> [N, out_dim]``: per hidden width ``Conv1d -> [BatchNorm] -> LeakyReLU -> MaxPool1d(2)``,
    then a ``Linear`` from the flattened ``[hidden[-1], L_n]`` map (:func:`pooled_lengths`)."""

    def __init__(self, window: int, channels: int, hidden: Sequence[int], out_dim: int, *, kernel_size: int = 5,
                 bias: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        hidden = tuple(hidden)
        self.lengths = pooled_lengths(window, len(hidden))
        layers: list[nn.Module] = []
        prev = channels
        for i, width in enumerate(hidden):
            layers += [nn.Conv1d(prev, width, kernel_size, padding=kernel_size // 2, bias=bias),
                       *_norm(width, batch_norm, bias), nn.LeakyReLU(NEGATIVE_SLOPE)]
            if self.lengths[i + 1] != self.lengths[i]:
                layers.append(nn.MaxPool1d(2, ceil_mode=True))
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * self.lengths[-1], out_dim, bias=bias)
        self.window, self.channels, self.out_dim = window, channels, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.transpose(1, 2))  # Conv1d wants [N, C, W]
        return self.head(h.flatten(1))


class ConvDecoder(nn.Module):
    """``[N, in_dim] -> [N, W, C * out_factor]``: the mirror of :class:`ConvEncoder`."""

    def __init__(self, window: int, channels: int, hidden: Sequence[int], in_dim: int, *, out_factor: int = 1,
                 kernel_size: int = 5, bias: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        hidden = tuple(hidden)
        self.lengths = pooled_lengths(window, len(hidden))
        self.start_shape = (hidden[-1], self.lengths[-1])
        self.head = nn.Sequential(nn.Linear(in_dim, hidden[-1] * self.lengths[-1], bias=bias),
                                  nn.LeakyReLU(NEGATIVE_SLOPE))
        layers: list[nn.Module] = []
        for i in reversed(range(len(hidden))):
            last = i == 0
            out = channels * out_factor if last else hidden[i - 1]
            layers += [nn.Upsample(size=self.lengths[i], mode="nearest"),
                       nn.Conv1d(hidden[i], out, kernel_size, padding=kernel_size // 2, bias=bias)]
            if not last:
                layers += [*_norm(out, batch_norm, bias), nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).view(z.shape[0], *self.start_shape)
        return self.features(h).transpose(1, 2)  # back to [N, W, C * out_factor]


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise ValueError(f"a sample must have shape (D,) or (W, C) with positive sizes, got {shape}")
    return shape


def make_encoder(sample_shape: Sequence[int], hidden: Sequence[int], out_dim: int, *, kernel_size: int = 5,
                 bias: bool = True, batch_norm: bool = False) -> nn.Module:
    """An MLP encoder for ``(D,)`` samples, a convolutional one for ``(W, C)`` windows; output ``[N, out_dim]``."""
    shape = _check_shape(sample_shape)
    if len(shape) == 1:
        return MLPEncoder(shape[0], hidden, out_dim, bias=bias, batch_norm=batch_norm)
    return ConvEncoder(shape[0], shape[1], hidden, out_dim, kernel_size=kernel_size, bias=bias,
                       batch_norm=batch_norm)


def make_decoder(sample_shape: Sequence[int], hidden: Sequence[int], in_dim: int, *, out_factor: int = 1,
                 kernel_size: int = 5, bias: bool = True, batch_norm: bool = False) -> nn.Module:
    """The mirror of :func:`make_encoder`: ``[N, in_dim] -> [N, *sample_shape[:-1], sample_shape[-1] * out_factor]``."""
    shape = _check_shape(sample_shape)
    if len(shape) == 1:
        return MLPDecoder(in_dim, hidden, shape[0], out_factor=out_factor, bias=bias, batch_norm=batch_norm)
    return ConvDecoder(shape[0], shape[1], hidden, in_dim, out_factor=out_factor, kernel_size=kernel_size,
                       bias=bias, batch_norm=batch_norm)
