"""``gated_tanh``: the gated activation unit of WaveNet and DiffWave, forward and backward in one pass each.

::

    a, b = x.chunk(2, dim)
    out  = σ(a) · tanh(b),           tanh(b) evaluated as 2σ(2b) - 1
    ∂/∂a = g · tanh(b) · σ(a)(1 - σ(a)),      ∂/∂b = g · σ(a) · 4σ(2b)(1 - σ(2b))

(van den Oord et al., "WaveNet", 2016, eq. 2; Kong et al., "DiffWave", ICLR 2021, the residual layer.) x is float32,
float64 or bfloat16 (computed in float32), any layout; the output has x's shape with ``dim`` halved, contiguous.

Why an op: every residual layer of :class:`~genad_fast.nn.diffusion.Denoiser` applies the unit to a
``[B, 2C, L]`` tensor of several MB. Composed from ATen ops it is six passes forward and about ten backward (each
product's two gradients, the sigmoids' backward, the concatenation of the halves' gradients): measured at ~14 % of a
DiffusionDetector training step on one CPU thread. The kernels read their inputs once and write their outputs once;
the sigmoids are formed from e = exp(-|v|), so nothing overflows and σ(v)(1 - σ(v)) keeps its precision where σ
saturates (ATen's sigmoid backward computes out·(1 - out)). The eager backend runs the composite
(:mod:`genad_fast.reference.gated`) under autograd: the modules' own arithmetic, the reference. CPU and CUDA
kernels; no Triton kernel (one element-wise pass, which the CUDA kernel is).
"""
from __future__ import annotations

import operator

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.reference import gated as _reference

__all__ = ["gated_tanh"]

_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def gated_tanh(x: torch.Tensor, dim: int = 1, *, backend: str | Dispatch | None = None) -> torch.Tensor:
    """``σ(a) · tanh(b)`` for the halves ``(a, b)`` of ``x`` along ``dim``; see the module docstring.

    Differentiable (the backward kernel on the compiled backends, autograd of the composite on the eager one);
    a second derivative (``create_graph=True``) only on the eager backend: the compiled one raises.
    ``backend``: ``"eager"``, ``"cpu"``, ``"cuda"``, None (``GENAD_FAST_BACKEND``, else auto) or a
    :class:`~genad_fast.ops.Dispatch`. There is no Triton kernel: ``"triton"`` raises BackendUnavailableError
    (``Dispatch.has("gated_tanh")`` asks without raising).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        got = "a scalar" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor with at least one dimension, got {got}")
    check_float("x", x, _DTYPES)
    if isinstance(dim, bool) or not hasattr(dim, "__index__"):
        raise TypeError(f"dim must be an int, got {dim!r}")
    dim = operator.index(dim)
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must be in [{-x.dim()}, {x.dim()}) for x of shape {list(x.shape)}, got {dim}")
    if x.shape[dim] % 2:
        raise ValueError(f"x must have an even size along dim {dim} (its two halves are the gate and the filter), "
                         f"got shape {list(x.shape)}")
    chosen = select("gated_tanh", backend, x.device)
    if chosen == "eager":
        return _reference.gated_tanh(x, dim).contiguous()  # the kernels' layout, whatever x's
    return kernel("gated_tanh", chosen)(x, dim)


# ---- fake kernels (the autograd kernels are C++: csrc/autograd.cpp) -----------------------------------------

def _halved(x: torch.Tensor, dim: int) -> list[int]:
    sizes = list(x.shape)
    sizes[dim] //= 2
    return sizes


def _fake_forward(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.new_empty(_halved(x, dim))


def _fake_backward(grad: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.new_empty(x.shape)


if _ext._C is not None and hasattr(torch.ops.genad_fast, "gated_tanh"):
    torch.library.register_fake("genad_fast::gated_tanh")(_fake_forward)
    torch.library.register_fake("genad_fast::gated_tanh_backward")(_fake_backward)
