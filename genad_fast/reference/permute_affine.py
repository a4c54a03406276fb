"""Eager reference of ``permute_affine``: ActNorm, a fixed permutation of the columns and a coupling's split, read
from two halves, as plain PyTorch (autograd gives its backward)."""
from __future__ import annotations

import torch


def permute_affine(x_a: torch.Tensor, x_b: torch.Tensor, bias: torch.Tensor, log_scale: torch.Tensor,
                   perm: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``v = ((x + bias)·exp(log_scale))[:, perm]`` with ``x = [x_a, x_b]``, as ``(v[:, :split], v[:, split:])``:
    the modules' formula (ActNorm, then Permutation, then the split), the same values."""
    v = ((torch.cat([x_a, x_b], dim=1) + bias) * torch.exp(log_scale)).index_select(1, perm)
    return v[:, :split], v[:, split:]
