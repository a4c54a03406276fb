"""Eager reference of ``bias_gelu``: the exact GELU of a product plus its bias, as plain PyTorch (autograd gives its
backward); and of the pair that keeps GELU' from the forward for the backward (``bias_gelu_keep``,
``bias_gelu_backward_kept``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bias_gelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``GELU(z + bias)`` with the exact (erf) GELU, as ``torch.nn.GELU()``."""
    return F.gelu(z + bias)


def gelu_derivative(u: torch.Tensor) -> torch.Tensor:
    """GELU'(u) = Φ(u) + u·φ(u), Φ(u) = erfc(-u/√2)/2 (no cancellation in the left tail), φ(u) = exp(-u²/2)/√(2π)."""
    return 0.5 * torch.special.erfc(-u * math.sqrt(0.5)) + u * torch.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)


def bias_gelu_keep(z: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(GELU(z + bias), GELU'(z + bias)): the output and the derivative its backward multiplies by."""
    u = z + bias
    return F.gelu(u), gelu_derivative(u)


def bias_gelu_backward_kept(grad: torch.Tensor, derivative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad·derivative, its column sums): bias_gelu's gradients of z and bias from the kept derivative."""
    grad_z = grad * derivative
    return grad_z, grad_z.sum(0)
