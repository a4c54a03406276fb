"""oneDNN's prepacked linear with fused epilogues, the CPU kernel ``torch.compile`` itself uses for linears.

``torch.ops.mkldnn._linear_pointwise(x, W_packed, b, attr, scalars, algorithm)`` computes
``act(x·Wᵀ + b)`` with the activation (``"gelu"`` with algorithm ``"none"`` = exact erf GELU,
``"leaky_relu"``, ``"relu"``, ``"none"``) applied in the GEMM's epilogue, while the tile is in
registers (used by the flow's scoring plan for GELU(Linear(·))).
The weight is reordered once (``_reorder_linear_weight``) into the blocked layout the kernel reads,
so no call repacks it. On CPUs with AMX (Intel Sapphire Rapids and later) bfloat16 products run on
the tile units; with AVX512-BF16 only (AMD Zen 4) on the vector units.

These are private ATen ops (the inductor CPU backend's), so their presence is checked before use;
callers keep a plain ``addmm`` path for builds without them. The results are the same products
(float32 accumulation) up to the order of the sums.
"""
from __future__ import annotations

import functools

import torch

__all__ = ["available", "pack", "linear"]


@functools.lru_cache(maxsize=4)
def available(dtype: torch.dtype) -> bool:
    """Whether the prepacked oneDNN linear runs ``dtype`` natively in this torch build on this CPU."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_linear_pointwise")
                and hasattr(mkldnn, "_reorder_linear_weight")):
            return False
        if dtype == torch.bfloat16:
            return bool(mkldnn._is_mkldnn_bf16_supported())
        return dtype == torch.float32
    except (AttributeError, RuntimeError):
        return False


def pack(weight: torch.Tensor, rows: int | None) -> torch.Tensor:
    """``weight`` [out, in] (as ``nn.Linear`` holds it) reordered for batches of about ``rows`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, act: str = "none",
           scalars: list | None = None) -> torch.Tensor:
    """``act(x·Wᵀ + b)``, a new tensor; ``act`` one of ``"none"``, ``"gelu"`` (exact), ``"relu"``,
    ``"leaky_relu"`` (``scalars=[slope]``)."""
    algorithm = "none" if act == "gelu" else ""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, act, scalars or [], algorithm)

