"""Eager reference of ``gated_tanh``: WaveNet's gated activation unit as plain PyTorch (autograd gives its backward)."""
from __future__ import annotations

import torch


def gated_tanh(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``σ(a) · tanh(b)`` for the halves ``a, b = x.chunk(2, dim)``, with ``tanh(b) = 2σ(2b) - 1`` (the same function:
    ATen's float tanh runs scalar on some CPU builds, 15 ns an element against 2 ns for sigmoid)."""
    a, b = x.chunk(2, dim=dim)
    return torch.sigmoid(a) * (2.0 * torch.sigmoid(2.0 * b) - 1.0)
