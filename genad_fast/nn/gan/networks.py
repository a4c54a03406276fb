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
:func:`genad_fast.nn.gan.search.linear_stack` recognises to run AnoGAN's latent search with a
hand-written backward pass.

f-AnoGAN's encoder E: x -> z (Schlegl et al., MedIA 2019, Sec. 2.3) is the shared encoder of
:func:`genad_fast.nn.blocks.make_encoder` (an MLP on flattened samples, or 1-D convolutions on windows)
behind :class:`FlatInput`. :func:`freeze` and :func:`frozen` fix the networks for the latent search and the
encoder's training.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from genad_fast.nn.blocks import make_encoder, pooled_lengths

__all__ = ["ARCHITECTURES", "ConvCritic", "ConvGenerator", "FlatInput", "MLPCritic", "MLPGenerator",
           "NEGATIVE_SLOPE", "default_hidden", "default_latent_dim", "freeze", "frozen", "make_critic",
           "make_generator", "make_izif_encoder", "resolve_architecture"]

#: LeakyReLU slope of every GAN network (Radford et al., ICLR 2016; Gulrajani et al. 2017's networks).
NEGATIVE_SLOPE = 0.2
ARCHITECTURES = ("auto", "mlp", "conv")
#: Hidden widths (MLP) or channels (convolution stages) when a detector leaves them unset.
DEFAULT_HIDDEN = {"mlp": (128, 128), "conv": (32, 64)}


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


def resolve_architecture(sample_shape: tuple[int, ...], architecture: str) -> str:
    """"mlp" or "conv" for samples of ``sample_shape``: "auto" is MLPs for vectors, convolutions for windows."""
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
    if resolve_architecture(shape, architecture) == "mlp":
        return MLPGenerator(latent_dim, hidden, shape)
    return ConvGenerator(latent_dim, shape[0], shape[1], hidden, kernel_size)


def make_critic(sample_shape: Sequence[int], hidden: Sequence[int], *, architecture: str = "auto",
                kernel_size: int = 5) -> nn.Module:
    """The critic matching :func:`make_generator`; it has ``features(x)`` and ``n_features``."""
    shape = tuple(int(s) for s in sample_shape)
    if resolve_architecture(shape, architecture) == "mlp":
        return MLPCritic(shape, hidden)
    return ConvCritic(shape[0], shape[1], hidden, kernel_size)


def default_latent_dim(n_dims: int) -> int:
    """Latent size for samples of ``n_dims`` entries when none is given: half of them, at least 2 and at most 32."""
    return min(32, max(2, n_dims // 2))


def default_hidden(architecture: str) -> tuple[int, ...]:
    """Hidden widths of the ``"mlp"`` networks, or channels of the ``"conv"`` ones, when none are given."""
    return DEFAULT_HIDDEN[architecture]


class FlatInput(nn.Module):
    """An encoder taking samples of any shape: flattens them first for an MLP."""

    def __init__(self, net: nn.Module, flatten: bool) -> None:
        super().__init__()
        self.net, self.flatten = net, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1) if self.flatten else x)


def make_izif_encoder(sample_shape: Sequence[int], hidden: Sequence[int], latent_dim: int, *,
                      architecture: str = "auto", kernel_size: int = 5) -> FlatInput:
    """f-AnoGAN's encoder E: x [N, *sample_shape] -> z [N, latent_dim], matching :func:`make_generator`'s
    architecture: an MLP on the flattened sample, or convolutions over a window's time axis."""
    shape = tuple(int(s) for s in sample_shape)
    mlp = resolve_architecture(shape, architecture) == "mlp"
    n = 1
    for s in shape:
        n *= s
    return FlatInput(make_encoder((n,) if mlp else shape, hidden, latent_dim, kernel_size=kernel_size), flatten=mlp)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: the networks AnoGAN's search and the encoder see are fixed."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _is_frozen(module: nn.Module) -> bool:
    return not any(m.training for m in module.modules()) and not any(p.requires_grad for p in module.parameters())


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration of a ``with`` block, restored afterwards.

    Networks that are frozen already are not touched at all (the detectors freeze theirs once, at fit and at
    load): such networks may be searched by several threads at once, and one search restoring a mode would
    change it under another."""
    saved = [(m, m.training, [(p, p.requires_grad) for p in m.parameters()]) for m in modules
             if not _is_frozen(m)]
    try:
        for m, _, params in saved:
            m.eval()
            for p, _ in params:
                p.requires_grad_(False)
        yield
    finally:
        for m, training, params in saved:
            m.train(training)
            for p, rg in params:
                p.requires_grad_(rg)
