"""Input checks shared by the op modules: every error names the argument and the problem."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_float(name: str, t: torch.Tensor, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype {allowed}; got {str(t.dtype).replace('torch.', '')}")


def check_rank(name: str, t: torch.Tensor, rank: int) -> None:
    if t.dim() != rank:
        raise ValueError(f"{name} must be {rank}-D, got shape {tuple(t.shape)}")


def check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Same dtype and device (shapes are op-specific and checked by the op)."""
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} and {name_b} must share a dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on one device, got {a.device} and {b.device}")


def rows_view(name: str, t: torch.Tensor) -> torch.Tensor:
    """``t[..., K]`` as a 2-D ``[rows, K]`` view with unit column stride, never a copy.

    Column slices of a bigger matrix keep their row stride; a layout that cannot be
    viewed as rows (last dimension not contiguous) is an error, not a hidden copy.
    """
    if t.dim() < 1:
        raise ValueError(f"{name} must have at least 1 dimension, got a scalar")
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name} must have unit stride on its last dimension, got strides {t.stride()}")
    if t.dim() == 2:
        return t
    try:
        return t.view(-1, t.shape[-1])
    except RuntimeError as exc:
        raise ValueError(f"{name} with shape {tuple(t.shape)} and strides {t.stride()} cannot be viewed as "
                         f"rows without a copy; pass a contiguous tensor") from exc
