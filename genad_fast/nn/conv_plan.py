"""A convolutional encoder/decoder pair (:mod:`genad_fast.nn.blocks`) run as a few fused calls: what the
autoencoder's, the VAE's and Deep SVDD's scoring run their networks through on a compiled backend
(:mod:`genad_fast.detectors._fused_score`).

A stream scores one window per timestamp; the autoencoder's forward of one window is ~40 ATen calls (per stage a
convolution, an activation, a pooling or an upsampling, each with its dispatch and allocation), ~0.2 ms around
microseconds of arithmetic (and at a batch the separate passes still cost). :class:`ConvNetPlan` runs each stage
as one :func:`genad_fast.ops.conv1d_act` call (convolution, LeakyReLU, max pooling or nearest upsampling fused)
and each head as one ``linear``, with the weights detached, batch normalisation folded into the convolution before it (eval mode:
``w' = w·γ/√(σ²+ε)``, ``b' = (b - μ)·γ/√(σ²+ε) + β``) and the argument checks done once, at construction.

The values are the modules' to float rounding (another summation order; tests/test_conv_plan.py bounds it);
nothing else differs. Built for one dispatch (a backend whose ``conv1d_act`` is compiled: cpu or cuda) and one
dtype; the network must be in eval mode and is not copied: build a new plan after changing its weights.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from genad_fast.nn.blocks import ConvDecoder, ConvEncoder
from genad_fast.ops.dispatch import Dispatch

__all__ = ["HELD_KEY", "ConvNetPlan", "ConvStage", "conv_stages"]

#: The thread value (:func:`genad_fast.detectors._call.thread_value`) under which a detector's scoring call keeps
#: its fused score built on a plan (the autoencoder's), and a stream holds it (:mod:`genad_fast.streaming.scope`).
HELD_KEY = "fused_score"


class ConvStage(NamedTuple):
    """One :func:`~genad_fast.ops.conv1d_act` call: weight ``[C_out, C_in, k]``, bias, the upsampled length (None:
    none), the LeakyReLU slope (None: none), and whether a max pooling follows."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    length: int | None
    slope: float | None
    pool: bool


def _folded(conv: nn.Conv1d, norm: nn.BatchNorm1d | None,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The convolution's weight and bias with an eval-mode batch normalisation after it folded in (float64 math)."""
    w = conv.weight.detach().to(torch.float64)
    b = None if conv.bias is None else conv.bias.detach().to(torch.float64)
    if norm is not None:
        scale = (norm.running_var.detach().to(torch.float64) + norm.eps).rsqrt()
        shift = -norm.running_mean.detach().to(torch.float64) * scale
        if norm.affine:
            scale = scale * norm.weight.detach().to(torch.float64)
            shift = shift * norm.weight.detach().to(torch.float64) + norm.bias.detach().to(torch.float64)
        w = w * scale[:, None, None]
        b = shift + (0.0 if b is None else b * scale)
    return w.to(dtype).contiguous(), None if b is None else b.to(dtype).contiguous()


def conv_stages(features: nn.Sequential, dtype: torch.dtype) -> list[ConvStage]:
    """The ``features`` of a :class:`ConvEncoder` or :class:`ConvDecoder` as fused stages: each ``Conv1d`` with
    the ``Upsample`` before it and the ``BatchNorm1d``, ``LeakyReLU`` and ``MaxPool1d`` after it (ValueError for a
    module or a setting the fused op does not run)."""
    stages: list[dict] = []
    length = None
    for m in features:
        if isinstance(m, nn.Upsample):
            if m.mode != "nearest" or m.size is None or not isinstance(m.size, int):
                raise ValueError(f"the fused stages take nearest upsampling to one int size, got {m}")
            length = m.size
        elif isinstance(m, nn.Conv1d):
            k = m.kernel_size[0]
            if (m.stride, m.dilation, m.groups, m.padding) != ((1,), (1,), 1, (k // 2,)) or \
                    m.padding_mode != "zeros":
                raise ValueError(f"the fused stages take stride 1, no dilation or groups, zero padding k // 2, got {m}")
            stages.append({"conv": m, "norm": None, "length": length, "slope": None, "pool": False})
            length = None
        elif not stages:
            raise ValueError(f"{m} comes before the first convolution")
        elif isinstance(m, nn.BatchNorm1d) and stages[-1]["slope"] is None and not stages[-1]["pool"]:
            stages[-1]["norm"] = m
        elif isinstance(m, nn.LeakyReLU) and stages[-1]["slope"] is None and not stages[-1]["pool"]:
            stages[-1]["slope"] = float(m.negative_slope)
        elif isinstance(m, nn.MaxPool1d) and not stages[-1]["pool"] and \
                (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode) in ((2, 2, 0, 1, True),):
            stages[-1]["pool"] = True
        else:
            raise ValueError(f"the fused stages do not run {m} here (a convolution, then batch normalisation, "
                             f"LeakyReLU and MaxPool1d(2, ceil_mode=True) in that order)")
    if length is not None:
        raise ValueError("an upsampling after the last convolution")
    return [ConvStage(*_folded(s["conv"], s["norm"], dtype), s["length"], s["slope"], s["pool"]) for s in stages]


def _linear(layer: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.weight.detach().to(dtype), None if layer.bias is None else layer.bias.detach().to(dtype)


class ConvNetPlan:
    """``encode(x [N, W, C]) -> z [N, k]`` and ``decode(z) -> [N, W, C·f]`` of a :class:`ConvEncoder` /
    :class:`ConvDecoder` pair as fused calls (module docstring)."""

    def __init__(self, encoder: ConvEncoder, decoder: ConvDecoder | None, dtype: torch.dtype,
                 dispatch: Dispatch) -> None:
        if encoder.training or (decoder is not None and decoder.training):
            raise ValueError("ConvNetPlan runs eval-mode networks (batch normalisation's running statistics)")
        self._conv = dispatch.kernel("conv1d_act")  # BackendUnavailableError where it has no compiled kernel
        self.encoder_stages = conv_stages(encoder.features, dtype)
        self.encoder_head = _linear(encoder.head, dtype)
        self.decoder_stages = None if decoder is None else conv_stages(decoder.features, dtype)
        if decoder is not None:
            head, act = decoder.head
            self.decoder_head = _linear(head, dtype)
            self.decoder_slope = float(act.negative_slope)
            self.start_shape = decoder.start_shape

    def _stages(self, h: torch.Tensor, stages: list[ConvStage]) -> torch.Tensor:
        for s in stages:
            h = self._conv(h, s.weight, s.bias, h.shape[2] if s.length is None else s.length, s.slope, s.pool)
        return h

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's feature map of windows ``[N, W, C]``, flattened: the input of its head ``[N, C_n·L_n]``."""
        return self._stages(x.transpose(1, 2), self.encoder_stages).flatten(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes ``[N, k]`` of windows ``[N, W, C]``."""
        return F.linear(self.features(x), *self.encoder_head)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstructions ``[N, W, C·f]`` of codes ``[N, k]`` (any row stride)."""
        h = F.leaky_relu_(F.linear(z, *self.decoder_head), self.decoder_slope)
        return self._stages(h.view(z.shape[0], *self.start_shape), self.decoder_stages).transpose(1, 2)
