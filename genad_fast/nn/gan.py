"""Generators and critics (discriminators) for AnoGAN / f-AnoGAN, with the critic's features f(x).

Two sample kinds, one pair each, chosen by the shape of one sample:

- a vector ``(D,)``: multilayer perceptrons.
  Generator ``z -> [Linear -> LeakyReLU] * k -> Linear -> x`` (linear output: the data are standardised,
  not squashed into [-1, 1]); critic ``x -> [Linear -> LeakyReLU] * k = f(x) -> Linear -> score``.
- a window ``(W, C)``: 1-D convolutions over time with the channels as convolution channels.
  Critic: per hidden width ``Conv1d(k, stride 2, padding k // 2) -> LeakyReLU`` (the length halves,
  rounded up, while it is 2 or more), ``f(x)`` = the flattened last feature map, then ``Linear -> score``.
  Generator: the mirror, ``Linear(z) -> LeakyReLU`` to the smallest map, then per stage
  ``Upsample(nearest, to the critic's length) -> Conv1d(k, "same")``, so every window length comes back
  exactly (no transposed-convolution off-by-one lengths).

AnoGAN's feature-matching term uses f, "the output of an intermediate layer of the discriminator"
(Schlegl et al., IPMI 2017, Sec. 2.2): here the input of the critic's last linear layer. Critics have
no batch normalisation: the gradient penalty of WGAN-GP is taken per sample, and batch statistics
would couple the samples of a batch (Gulrajani et al., NeurIPS 2017, Sec. 4; they suggest layer
normalisation instead, which these small critics do without).

Both MLPs are ``nn.Sequential`` stacks of ``Linear`` and ``LeakyReLU`` only, which
:func:`genad_fast.nn.latent_search.linear_stack` recognises to run AnoGAN's latent search with a
hand-written backward pass.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genad_fast.nn.blocks import pooled_lengths

__all__ = ["ConvCritic", "ConvGenerator", "MLPCritic", "MLPGenerator", "NEGATIVE_SLOPE", "make_critic",
           "make_generator"]

#: LeakyReLU slope of every GAN network (Radford et al., ICLR 2016; Gulrajani et al. 2017's networks).
NEGATIVE_SLOPE = 0.2
ARCHITECTURES = ("auto", "mlp", "conv")


def _check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"{name} must be a non-empty sequence of positive widths, got {widths}")
    return widths


class MLPGenerator(nn.Module):
    """``G: z [N, latent_dim] -> x [N, *sample_shape]`` through ``hidden`` widths (the sample is flattened)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], sample_shape: Sequence[int]) -> None:
        super().__init__()
        hidden = _check_widths("hidden", hidden)
        self.latent_dim = int(latent_dim)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        out = 1
        for s in self.sample_shape:
            out *= s
        layers: list[nn.Module] = []
        prev = self.latent_dim
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.LeakyReLU(NEGATIVE_SLOPE)]
            prev = width
        layers.append(nn.Linear(prev, out))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.sample_shape)


class MLPCritic(nn.Module):
    """``D: x [N, *sample_shape] -> score [N]`` (higher = more real); ``features(x)``: ``[N, hidden[-1]]``."""

    def __init__(self, sample_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        hidden = _check_widths("critic_hidden", hidden)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        prev = 1
        for s in self.sample_shape:
            prev *= s
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.LeakyReLU(NEGATIVE_SLOPE)]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, 1)
        self.n_features = prev

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): the activations feeding the last linear layer, ``[N, n_features]``."""
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


class ConvCritic(nn.Module):
    """``D: x [N, W, C] -> score [N]``: strided 1-D convolutions; ``features(x)``: the flattened last map."""

    def __init__(self, window: int, channels: int, hidden: Sequence[int], kernel_size: int = 5) -> None:
        super().__init__()
        hidden = _check_widths("critic_hidden", hidden)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        self.window, self.channels = int(window), int(channels)
        self.lengths = pooled_lengths(self.window, len(hidden))
        layers: list[nn.Module] = []
        prev = self.channels
        for i, width in enumerate(hidden):
            # stride 2 halves the length (rounded up) exactly like MaxPool1d(2, ceil_mode=True);
            # a length-1 map keeps stride 1.
            stride = 2 if self.lengths[i + 1] != self.lengths[i] else 1
            layers += [nn.Conv1d(prev, width, kernel_size, stride=stride, padding=kernel_size // 2),
                       nn.LeakyReLU(NEGATIVE_SLOPE)]
            prev = width
        self.body = nn.Sequential(*layers)
        self.n_features = prev * self.lengths[-1]
        self.head = nn.Linear(self.n_features, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): the last convolution's feature map, flattened, ``[N, hidden[-1] * L_last]``."""
        return self.body(x.transpose(1, 2)).flatten(1)  # Conv1d wants [N, C, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


class ConvGenerator(nn.Module):
    """``G: z [N, latent_dim] -> x [N, W, C]``: the mirror of :class:`ConvCritic`."""

    def __init__(self, latent_dim: int, window: int, channels: int, hidden: Sequence[int],
                 kernel_size: int = 5) -> None:
        super().__init__()
        hidden = _check_widths("hidden", hidden)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        self.latent_dim = int(latent_dim)
        self.sample_shape = (int(window), int(channels))
        self.lengths = pooled_lengths(int(window), len(hidden))
        self.start_shape = (hidden[-1], self.lengths[-1])
        self.head = nn.Sequential(nn.Linear(self.latent_dim, hidden[-1] * self.lengths[-1]),
                                  nn.LeakyReLU(NEGATIVE_SLOPE))
        layers: list[nn.Module] = []
        for i in reversed(range(len(hidden))):
            out = int(channels) if i == 0 else hidden[i - 1]
            layers += [nn.Upsample(size=self.lengths[i], mode="nearest"),
                       nn.Conv1d(hidden[i], out, kernel_size, padding=kernel_size // 2)]
            if i != 0:
                layers.append(nn.LeakyReLU(NEGATIVE_SLOPE))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).view(z.shape[0], *self.start_shape)
        return self.body(h).transpose(1, 2)  # back to [N, W, C]


def _resolve_architecture(sample_shape: tuple[int, ...], architecture: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if len(sample_shape) not in (1, 2) or min(sample_shape) < 1:
        raise ValueError(f"a sample must have shape (D,) or (W, C) with positive sizes, got {sample_shape}")
    if architecture == "auto":
        return "mlp" if len(sample_shape) == 1 else "conv"
    if architecture == "conv" and len(sample_shape) != 2:
        raise ValueError(f"architecture='conv' needs windows (W, C); a sample here has shape {sample_shape}")
    return architecture


def make_generator(sample_shape: Sequence[int], latent_dim: int, hidden: Sequence[int], *,
                   architecture: str = "auto", kernel_size: int = 5) -> nn.Module:
    """An MLP generator (vectors, or flattened windows with ``architecture="mlp"``) or a convolutional one."""
    shape = tuple(int(s) for s in sample_shape)
    if _resolve_architecture(shape, architecture) == "mlp":
        return MLPGenerator(latent_dim, hidden, shape)
    return ConvGenerator(latent_dim, shape[0], shape[1], hidden, kernel_size)


def make_critic(sample_shape: Sequence[int], hidden: Sequence[int], *, architecture: str = "auto",
                kernel_size: int = 5) -> nn.Module:
    """The critic matching :func:`make_generator`; it has ``features(x)`` and ``n_features``."""
    shape = tuple(int(s) for s in sample_shape)
    if _resolve_architecture(shape, architecture) == "mlp":
        return MLPCritic(shape, hidden)
    return ConvCritic(shape[0], shape[1], hidden, kernel_size)
