"""Eager reference of ``bias_gelu``: the exact GELU of a product plus its bias, as plain PyTorch (autograd gives its
backward)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bias_gelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``GELU(z + bias)`` with the exact (erf) GELU, as ``torch.nn.GELU()``."""
    return F.gelu(z + bias)
