"""Fully convolutional 1-D denoisers ε_θ(x_t, t) for diffusion models of multivariate series.

The network is the residual stack of DiffWave (Kong et al., ICLR 2021), as CSDI (Tashiro et al., NeurIPS 2021)
and ImDiffusion (Chen et al., VLDB 2023) use it for series, with convolutions only — no attention over
time — so that it has a finite receptive field and runs over a series of any length:

    h = ReLU(Conv1x1_in(x))                                        input projection: mixes all channels
    for each layer l (dilation d_l = 2^(l mod cycle)):
        y = DilatedConv_{k, d_l}(h + P_l·e(t))                       e(t): MLP of a sinusoidal embedding of t
        y = sigmoid(y_gate) ⊙ tanh(y_filter)                         gated unit (WaveNet): ops.gated_tanh
        r, s = split(Conv1x1_l(y))
        h = (h + r)/sqrt(2);  skip += s
    ε̂ = Conv1x1_out(ReLU(Conv1x1_skip(skip / sqrt(L))))            last layer zero-initialised

Channel mixing: every 1×1 and dilated convolution mixes all hidden channels, and the input projection mixes
the sensor channels — the convolutional stand-in for CSDI's feature transformer.

Receptive field. Only the dilated convolutions widen it: the output at position i depends on inputs
i - r .. i + r with r = Σ_l d_l·(k - 1)/2 (``receptive_radius``); ``receptive_field`` = 2r + 1. Convolutions pad
with zeros ("same" length), so running the network on ``x[lo:hi]`` gives exactly the outputs of the whole
series at positions lo + r .. hi - r - 1, and at a series edge (lo = 0 or hi = T) the padding is the series'
own. Tiled scoring relies on this (:mod:`genad_fast.nn.diffusion.sampler`).

:class:`ConditionalDenoiser` is the imputation variant (CSDI's conditional model): its input has 3·C channels,
the noisy values where a point is to be imputed, the observed values elsewhere, and the observed-mask.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genad_fast import ops
from genad_fast.ops import Dispatch
from genad_fast.ops.dispatch import kernel_or_eager
from genad_fast.nn.init import is_meta

__all__ = ["DEFAULT_DILATION_CYCLE", "DEFAULT_LAYERS", "ConditionalDenoiser", "Denoiser", "receptive_field",
           "sinusoidal_embedding", "stack_for_window"]

#: The default residual stack: 8 layers, dilations 1, 2, 4, 8 twice (receptive field 61 with kernel 3).
DEFAULT_LAYERS = 8
DEFAULT_DILATION_CYCLE = 4


def receptive_field(n_layers: int, dilation_cycle: int, kernel_size: int) -> int:
    """2r + 1 of a stack of ``n_layers`` with dilations 2^(l mod dilation_cycle) and odd ``kernel_size``:
    ``1 + (kernel_size - 1)·Σ_l 2^(l mod dilation_cycle)`` (:attr:`Denoiser.receptive_field` without building it)."""
    return 1 + (kernel_size - 1) * sum(2 ** (i % dilation_cycle) for i in range(n_layers))


def stack_for_window(window: int, kernel_size: int = 3, n_layers: int | None = None,
                     dilation_cycle: int | None = None) -> tuple[int, int] | None:
    """``(n_layers, dilation_cycle)`` of the largest stack whose receptive field fits in ``window`` timestamps (so
    a training window shows the network its whole field), or None when none does. None arguments are free:

    1. ``n_layers`` (default 8) layers, the dilation cycle from 4 down to 1 (dilations 1..8, 1..4, 1..2, 1 only):
       the first whose receptive field <= ``window``; a given ``dilation_cycle`` is the only one tried;
    2. else, if ``n_layers`` is free, fewer layers at dilation cycle 1 (or the given cycle): the most that fit.

    Kernel 3: window >= 61 keeps the default stack (8, 4); 35..60 -> (8, 3); 25..34 -> (8, 2); 17..24 -> (8, 1);
    8 -> (3, 1), 16 -> (7, 1). Shrinking the dilations first keeps the depth (the capacity) and gives up reach,
    which a short window cannot use anyway."""
    layers = DEFAULT_LAYERS if n_layers is None else int(n_layers)
    cycles = range(DEFAULT_DILATION_CYCLE, 0, -1) if dilation_cycle is None else (int(dilation_cycle),)
    for cycle in cycles:
        if receptive_field(layers, cycle, kernel_size) <= window:
            return layers, cycle
    if n_layers is None:
        cycle = 1 if dilation_cycle is None else int(dilation_cycle)
        for fewer in range(layers - 1, 0, -1):
            if receptive_field(fewer, cycle, kernel_size) <= window:
                return fewer, cycle
    return None


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] step indices -> [B, dim]: (sin(t·ω_j), cos(t·ω_j)), ω_j = 10000^(-j/(dim/2 - 1)) (Vaswani et al. 2017,
    as DiffWave's diffusion-step embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1))
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


def _pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1×1 convolution, as one batched matrix product [Cout, Cin] @ [B, Cin, L].

    Same result; on CPU oneDNN's 1×1 convolution takes up to 5x longer than the product for many short
    sequences (458 against 84 ns per timestamp for 256 windows of 100, 32 -> 64 channels) and it falls back to a
    slow im2col path for a few long ones, so the product is the better choice for windows and tiles alike.
    """
    w = conv.weight[:, :, 0]
    return torch.baddbmm(conv.bias[None, :, None], w.expand(x.shape[0], *w.shape), x)


class _ResidualLayer(nn.Module):
    def __init__(self, channels: int, embed: int, dilation: int, kernel_size: int):
        super().__init__()
        self.dilation = dilation
        self.step_proj = nn.Linear(embed, channels)
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.out = nn.Conv1d(channels, 2 * channels, 1)
        if not is_meta(self):  # on "meta" (genad_fast.nn.init.build_module) the builder initialises
            self.init_parameters_()

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal weights of both convolutions (DiffWave); the biases keep PyTorch's default
        (:func:`genad_fast.nn.init.init_module_`). ``generator`` None: the global RNG."""
        nn.init.kaiming_normal_(self.conv.weight, generator=generator)
        nn.init.kaiming_normal_(self.out.weight, generator=generator)

    def forward(self, h: torch.Tensor, step: torch.Tensor,
                backend: str | Dispatch | None = "eager") -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(h + self.step_proj(step).unsqueeze(-1))
        # σ(gate)·tanh(filter) over the halves of y: one pass each way where the backend has the kernel; the
        # composite (genad_fast.reference.gated) on the eager backend, and on Triton, which has none (ATen's CUDA
        # ops are that one pass already, as the convolutions run as ATen's)
        y = ops.gated_tanh(y, 1, backend=kernel_or_eager("gated_tanh", backend))
        res, skip = _pointwise(self.out, y).chunk(2, dim=1)
        return (h + res) * (1.0 / math.sqrt(2.0)), skip


class Denoiser(nn.Module):
    """ε_θ(x_t, t) for ``x_t`` ``[B, channels, L]`` (any L >= 1) and step indices ``t`` ``[B]`` (or one for all).

    Parameters
    ----------
    channels : int
        Channels of the series (the output has as many).
    residual_channels : int, default 64
        Width of the residual stack (CSDI, ImDiffusion: 64).
    n_layers : int, default 8
        Residual layers.
    dilation_cycle : int, default 4
        Layer l has dilation 2^(l mod dilation_cycle).
    kernel_size : int, default 3 (odd)
    embedding_dim : int, default 128
        Size of the sinusoidal step embedding (CSDI: 128); the step MLP is embedding_dim -> 2·embedding_dim twice.
    in_channels : int or None
        Input channels when they differ from ``channels`` (the conditional variant).

    ``forward`` takes ``backend`` (a name or the :class:`~genad_fast.ops.Dispatch` of the caller's fit or scoring
    call) for the gated units (:func:`genad_fast.ops.gated_tanh`); the default ``"eager"`` is the composite of ATen
    ops, the reference the fused kernels are tested against.
    """

    def __init__(self, channels: int, residual_channels: int = 64, n_layers: int = 8, dilation_cycle: int = 4,
                 kernel_size: int = 3, embedding_dim: int = 128, in_channels: int | None = None):
        super().__init__()
        for name, value, low in (("channels", channels, 1), ("residual_channels", residual_channels, 1),
                                 ("n_layers", n_layers, 1), ("dilation_cycle", dilation_cycle, 1),
                                 ("kernel_size", kernel_size, 1), ("embedding_dim", embedding_dim, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centred, 'same'-length convolution), got {kernel_size}")
        self.channels = channels
        self.in_channels = channels if in_channels is None else int(in_channels)
        self.kernel_size = kernel_size
        self.embedding_dim = embedding_dim
        hidden = 2 * embedding_dim
        self.step_mlp = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.inp = nn.Conv1d(self.in_channels, residual_channels, 1)
        self.layers = nn.ModuleList(
            _ResidualLayer(residual_channels, hidden, 2 ** (i % dilation_cycle), kernel_size) for i in range(n_layers))
        self.skip = nn.Conv1d(residual_channels, residual_channels, 1)
        self.out = nn.Conv1d(residual_channels, channels, 1)
        if not is_meta(self):  # on "meta" (genad_fast.nn.init.build_module) the builder initialises
            self.init_parameters_()

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal input and skip projections, and the output projection at zero, so the network starts
        predicting ε̂ = 0 (DiffWave); the rest keeps its own initialisation
        (:func:`genad_fast.nn.init.init_module_`). ``generator`` None: the global RNG."""
        nn.init.kaiming_normal_(self.inp.weight, generator=generator)
        nn.init.kaiming_normal_(self.skip.weight, generator=generator)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def receptive_radius(self) -> int:
        """r: the output at position i depends on inputs i - r .. i + r only."""
        return sum(layer.dilation * (self.kernel_size - 1) // 2 for layer in self.layers)

    @property
    def receptive_field(self) -> int:
        """Width of the receptive field in timestamps, 2r + 1."""
        return 2 * self.receptive_radius + 1

    def step_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """MLP(sinusoidal(t)) ``[B, 2·embedding_dim]``; compute it once per step and pass it as ``step=``."""
        t = torch.as_tensor(t, device=self.inp.weight.device).reshape(-1)
        return self.step_mlp(sinusoidal_embedding(t, self.embedding_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, *, step: torch.Tensor | None = None,
                backend: str | Dispatch | None = "eager") -> torch.Tensor:
        if (t is None) == (step is None):
            raise ValueError("pass exactly one of t (step indices) and step (a precomputed step_embedding)")
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [B, {self.in_channels}, L], got {tuple(x.shape)}")
        if step is None:
            step = self.step_embedding(t)
        if step.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"{step.shape[0]} step indices/embeddings for a batch of {x.shape[0]}")
        step = step.to(x.dtype)
        h = F.relu(_pointwise(self.inp, x))
        skip = None
        for layer in self.layers:
            h, s = layer(h, step, backend)
            skip = s if skip is None else skip + s
        skip = skip * (1.0 / math.sqrt(len(self.layers)))
        return _pointwise(self.out, F.relu(_pointwise(self.skip, skip)))


class ConditionalDenoiser(Denoiser):
    """ε_θ(x_t, t | observed values, observed-mask) for imputation (CSDI's conditional model, ImDiffusion).

    ``forward(x_t, observed, mask, t)`` with ``x_t``, ``observed``, ``mask`` ``[B, channels, L]``; ``mask`` is 1
    where a value is observed and 0 where it is imputed. The network sees (x_t·(1 - mask), observed·mask, mask):
    noisy values only where it imputes, clean values only where it may look.
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, in_channels=3 * channels, **kwargs)

    def forward(self, x: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor, t: torch.Tensor | None = None, *,
                step: torch.Tensor | None = None, backend: str | Dispatch | None = "eager") -> torch.Tensor:
        return super().forward(self.inputs(x, observed, mask), t, step=step, backend=backend)

    @staticmethod
    def inputs(x: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network input [B, 3·C, L] from x_t, observed values and the observed-mask."""
        return torch.cat([x * (1.0 - mask), observed * mask, mask.expand_as(x)], dim=1)
