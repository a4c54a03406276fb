"""``linear_act``: one layer of a small MLP, forward or backward, with its element-wise work fused around the product.

::

    a   = x · (gate > 0 ? 1 : gate_slope)    if gate is given, else x     (the LeakyReLU backward, see below)
    out = act(round_w(a) · weightᵀ + bias + addend)                         float32 accumulation
    act = LeakyReLU(slope) if slope is given (0 = ReLU), else the identity; out in out_dtype (default x's)

``round_w`` rounds to the weight's dtype: the product runs in the weight's dtype (float32, or bfloat16 with
float32 sums), whatever x's dtype; bias, gate and addend may each be float32 or bfloat16.

What it is for: the hand-written backward of an MLP. For a layer y = LeakyReLU(h·Wᵀ + b), the forward is
``linear_act(h, W, b, slope=s)`` and the vector–Jacobian product is ``linear_act(g, Wᵀ, gate=y, gate_slope=s)``
(y has the sign of its pre-activation, so it serves as the gate); a sum of two incoming gradients is ``addend``.
AnoGAN's latent search runs G, the critic's features and both backward passes as ten such calls an iteration
(:mod:`genad_fast.nn.latent_search`).

Why an op: at the sizes of a latent search (1,024 rows, widths 32–128) the products take tens of microseconds
and everything around them costs as much — dtype casts, the activation's backward, bias and residual passes,
and for bfloat16 oneDNN's ~30 µs per call. The CPU kernel splits the rows into one block per thread, converts
(and gates) a block into the product dtype, calls a single-threaded BLAS product (MKL's
``cblas_gemm_bf16bf16f32`` for bfloat16 — AMX on Sapphire Rapids — else at::mm in float32) into a float32 tile
and applies the epilogue while the tile is in cache. The CUDA kernel composes ATen ops (cuBLAS); no Triton
kernel (the GPU search is captured in a CUDA graph instead, where per-call cost does not arise).
"""
from __future__ import annotations

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float, rows_view
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.reference import linear as _reference

__all__ = ["linear_act"]

_DTYPES = (torch.float32, torch.bfloat16)


def _check_matrix(name: str, t: torch.Tensor, shape: tuple[int, ...], device: torch.device) -> None:
    check_float(name, t, _DTYPES)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, x on {device}: pass tensors on one device")


def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
               gate: torch.Tensor | None = None, gate_slope: float = 0.0, addend: torch.Tensor | None = None,
               slope: float | None = None, out_dtype: torch.dtype | None = None,
               backend: str | Dispatch | None = None) -> torch.Tensor:
    """``act(a·weightᵀ + bias + addend)``; see the module docstring.

    Args:
        x: ``[M, K]`` float32 or bfloat16, any layout (rows are read in place at any row stride; a non-unit
            column stride is copied first).
        weight: ``[N, K]`` float32 or bfloat16: the product's dtype (made contiguous: no copy if it is).
        bias: ``[N]`` or None. gate: ``[M, K]`` or None, with ``gate_slope``. addend: ``[M, N]`` or None.
        slope: LeakyReLU slope of the output, or None for none. out_dtype: float32, bfloat16 or None (x's).
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch`. There is no Triton kernel: ``"triton"`` raises
            BackendUnavailableError (``Dispatch.has("linear_act")`` asks without raising).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor [M, K], got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor [N, K], got {getattr(weight, 'shape', type(weight).__name__)}")
    (m, k), n = x.shape, weight.shape[0]
    _check_matrix("x", x, (m, k), x.device)
    _check_matrix("weight", weight, (n, k), x.device)
    if bias is not None:
        _check_matrix("bias", bias, (n,), x.device)
    if gate is not None:
        _check_matrix("gate", gate, (m, k), x.device)
    if addend is not None:
        _check_matrix("addend", addend, (m, n), x.device)
    if out_dtype is not None and out_dtype not in _DTYPES:
        raise TypeError(f"out_dtype must be float32 or bfloat16, got {out_dtype}")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, gate, addend)):
        raise RuntimeError("linear_act has no autograd formula (it is the building block of hand-written backward "
                           "passes): call it under torch.no_grad(), or on tensors that do not require grad")
    # Any layout is an input like any other. The kernel reads x, gate and addend by rows at any row stride (rows
    # that overlap, e.g. a broadcast x, included), so only a non-unit column stride is copied; weight and bias
    # are read whole, so they are made contiguous (no copy when they are).
    x, gate, addend = (None if t is None else rows_view(name, t)
                       for name, t in (("x", x), ("gate", gate), ("addend", addend)))
    weight = weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    gate_slope = float(gate_slope)
    slope = None if slope is None else float(slope)
    chosen = select("linear_act", backend, x.device)
    if chosen == "eager":
        return _reference.linear_act(x, weight, bias, gate, gate_slope, addend, slope, out_dtype)
    return kernel("linear_act", chosen)(x, weight, bias, gate, gate_slope, addend, slope, out_dtype)


def _fake_linear_act(x, weight, bias, gate, gate_slope, addend, slope, out_dtype):
    return x.new_empty((x.shape[0], weight.shape[0]), dtype=out_dtype or x.dtype)


def set_mkl_bf16(use: bool) -> None:
    """Use MKL's bfloat16 GEMM in the CPU kernel when torch exports it (default), or at::mm in float32 (tests)."""
    _ext._C._linear_act_set_mkl_bf16(bool(use))


def has_mkl_bf16() -> bool:
    """Whether this torch exports MKL's ``cblas_gemm_bf16bf16f32`` (the CPU kernel's bfloat16 product)."""
    return bool(_ext._C._linear_act_has_mkl_bf16())


if _ext._C is not None and hasattr(torch.ops.genad_fast, "linear_act"):
    torch.library.register_fake("genad_fast::linear_act")(_fake_linear_act)
