"""Fused affine coupling of normalizing flows (RealNVP, Dinh et al., ICLR 2017; Glow, Kingma & Dhariwal,
NeurIPS 2018): the transform and its log-determinant in one pass over each row.

    s = clamp·tanh(s_raw / clamp)   (clamp > 0; clamp = 0: s = s_raw), with h = (s_raw | t) of width 2D
    coupling_forward(x, h):  y = x·exp(s) + t,      logdet = Σ_j s_j
    coupling_inverse(y, h):  x = (y − t)·exp(−s),   logdet = −Σ_j s_j

Both are differentiable in their input and in h through one fused backward op
(``genad_fast::coupling_backward``; it recomputes s and exp(s) from h instead of saving them): the CPU and CUDA
ops' autograd node is C++ (csrc/autograd.cpp: a Python formula cost ~75 µs a coupling, forward and backward, in
a training step on one Sapphire Rapids thread), the Triton twins' is registered below. Both run under
``torch.compile(fullgraph=True)`` through their fake kernels. A second derivative (``create_graph=True``) is
refused by name: use the eager backend.
Inputs may be column slices of a bigger matrix (unit last stride, any row stride): they are read in place.
"""
from __future__ import annotations

import math

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float, check_same, rows_view
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.ops.schema import CPP_NAMESPACE, TRITON_NAMESPACE, define_triton
from genad_fast.reference import coupling as _reference

__all__ = ["coupling_forward", "coupling_inverse"]


def _check(a_name: str, a: torch.Tensor, h: torch.Tensor, clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    check_float(a_name, a)
    check_float("h", h)
    check_same(a_name, a, "h", h)
    if a.dim() < 1 or a.dim() != h.dim():
        raise ValueError(f"{a_name} and h must have the same rank >= 1, got shapes {tuple(a.shape)} and "
                         f"{tuple(h.shape)}")
    if a.shape[:-1] != h.shape[:-1]:
        raise ValueError(f"{a_name} and h must have the same leading (row) shape, got {tuple(a.shape)} and "
                         f"{tuple(h.shape)}")
    if h.shape[-1] != 2 * a.shape[-1]:
        raise ValueError(f"h must be 2·D = {2 * a.shape[-1]} wide (log-scale | shift) for {a_name} of width "
                         f"D = {a.shape[-1]}, got {h.shape[-1]}")
    if not isinstance(clamp, (int, float)) or isinstance(clamp, bool) or not math.isfinite(clamp) or clamp < 0:
        raise ValueError(f"clamp must be a finite number >= 0 (0: no clamp), got {clamp!r}")
    return rows_view(a_name, a), rows_view("h", h)


def _run(inverse: bool, a: torch.Tensor, h: torch.Tensor, clamp: float, backend: str | Dispatch | None):
    name = "y" if inverse else "x"
    a2, h2 = _check(name, a, h, clamp)
    op = "coupling_inverse" if inverse else "coupling_forward"
    chosen = select(op, backend, a.device)
    if chosen == "eager":
        ref = _reference.coupling_inverse if inverse else _reference.coupling_forward
        return ref(a, h, float(clamp))
    out, logdet = kernel(op, chosen)(a2, h2, float(clamp))
    return out.view(a.shape), logdet.view(a.shape[:-1])


def coupling_forward(x: torch.Tensor, h: torch.Tensor, clamp: float = 0.0, *,
                     backend: str | Dispatch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x·exp(s) + t and logdet = Σ s for ``x[..., D]``, ``h[..., 2D]`` = (s_raw | t); see the module docstring.

    Returns ``(y, logdet)`` with y of x's shape (contiguous) and logdet of x's leading shape, in x's dtype.
    ``backend``: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or
    a :class:`~genad_fast.ops.Dispatch` (the choice of the caller's call, made once).
    """
    return _run(False, x, h, clamp, backend)


def coupling_inverse(y: torch.Tensor, h: torch.Tensor, clamp: float = 0.0, *,
                     backend: str | Dispatch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x = (y − t)·exp(−s) and logdet = −Σ s, the inverse of :func:`coupling_forward` with the same h."""
    return _run(True, y, h, clamp, backend)


# ---- fake kernels and autograd, shared by the C++ ops and their Triton twins ----------------------

def _fake_transform(a: torch.Tensor, h: torch.Tensor, clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    return a.new_empty(a.shape), a.new_empty(a.shape[0])


def _fake_backward(grad_out, grad_logdet, inp, h, clamp, inverse):
    return inp.new_empty(inp.shape), inp.new_empty(h.shape)


def _setup_context(ctx, inputs, output) -> None:
    a, h, clamp = inputs
    ctx.save_for_backward(a, h)
    ctx.clamp = clamp


def _make_backward(namespace: str, inverse: bool):
    def backward(ctx, grad_out, grad_logdet):
        a, h = ctx.saved_tensors
        ops = getattr(torch.ops, namespace)
        # The kernels read grad_out through its row stride with column stride 1, or 0 (the gradient of
        # y.sum() arrives as one value expanded over [N, D]: no need to materialise it), and grad_logdet
        # through its stride; only other layouts are copied.
        if grad_out.shape[-1] > 1 and grad_out.stride(-1) not in (0, 1):
            grad_out = grad_out.contiguous()
        grad_a, grad_h = ops.coupling_backward(grad_out, grad_logdet, a, h, ctx.clamp, inverse)
        return grad_a, grad_h, None
    return backward


def _register(namespace: str, autograd: bool) -> None:
    """The fake kernels, and (``autograd``) the autograd formula from Python: the C++ ops have theirs in C++."""
    for name, inverse in (("coupling_forward", False), ("coupling_inverse", True)):
        torch.library.register_fake(f"{namespace}::{name}")(_fake_transform)
        if autograd:
            torch.library.register_autograd(f"{namespace}::{name}", _make_backward(namespace, inverse),
                                            setup_context=_setup_context)
    torch.library.register_fake(f"{namespace}::coupling_backward")(_fake_backward)


if _ext._C is not None:
    _register(CPP_NAMESPACE, autograd=False)


# Triton twins, defined at import from the schema table (cheap); Triton itself is imported only on the first
# call, so `import genad_fast` does not import triton.
def _triton_forward(x: torch.Tensor, h: torch.Tensor, clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    from genad_fast.kernels import coupling as _kernel

    return _kernel.coupling(x, h, clamp, inverse=False)


def _triton_inverse(y: torch.Tensor, h: torch.Tensor, clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    from genad_fast.kernels import coupling as _kernel

    return _kernel.coupling(y, h, clamp, inverse=True)


def _triton_backward(grad_out: torch.Tensor, grad_logdet: torch.Tensor, inp: torch.Tensor, h: torch.Tensor,
                     clamp: float, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from genad_fast.kernels import coupling as _kernel

    return _kernel.coupling_backward(grad_out, grad_logdet, inp, h, clamp, inverse)


define_triton("coupling_forward", _triton_forward)
define_triton("coupling_inverse", _triton_inverse)
define_triton("coupling_backward", _triton_backward)
_register(TRITON_NAMESPACE, autograd=True)
