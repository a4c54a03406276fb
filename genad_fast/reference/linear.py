"""Eager reference of ``linear_act``: one MLP layer, forward or backward, as plain PyTorch."""
from __future__ import annotations

import torch


def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               gate: torch.Tensor | None = None, gate_slope: float = 0.0, addend: torch.Tensor | None = None,
               slope: float | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    a = x.float()
    if gate is not None:
        a = a * torch.where(gate > 0, 1.0, gate_slope)
    a = a.to(weight.dtype).float()            # the product's inputs have the weight's dtype
    y = a @ weight.float().T                   # exact products of bfloat16 values, float32 sums
    if bias is not None:
        y = y + bias.float()
    if addend is not None:
        y = y + addend.float()
    if slope is not None:
        y = torch.nn.functional.leaky_relu(y, slope)
    return y.to(out_dtype or x.dtype)
