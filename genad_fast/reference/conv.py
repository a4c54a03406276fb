"""Eager reference of ``conv1d_act``: one stage of a 1-D convolutional encoder or decoder, as plain PyTorch."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def conv1d_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, length: int | None = None,
               slope: float | None = None, pool: bool = False) -> torch.Tensor:
    """``pool(act(conv1d(upsample(x, length), weight, bias, padding=k // 2)))`` (see :mod:`genad_fast.ops.conv`)."""
    length = x.shape[2] if length is None else int(length)
    u = x if length == x.shape[2] else F.interpolate(x, size=length, mode="nearest")
    y = F.conv1d(u, weight, bias, padding=weight.shape[2] // 2)
    if slope is not None:
        y = F.leaky_relu(y, slope)
    if pool:
        y = F.max_pool1d(y, 2, ceil_mode=True)
    return y
