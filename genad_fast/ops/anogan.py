"""Fused ops of AnoGAN's batched latent search (Schlegl et al., "Unsupervised Anomaly Detection with Generative
Adversarial Networks to Guide Marker Discovery", IPMI 2017).

AnoGAN scores a sample x by minimising over z, with Adam, the loss below between x and the generated G(z)
(f = the discriminator's intermediate features); here every row of a batch has its own z, its own Adam state and
its own step count, and one iteration needs two fused passes besides the networks:

``anogan_residual(x, gx, fx, fgx, lam)``, per row, with sign(0) = 0 and sign(NaN) = NaN::

    loss     = (1−λ)·Σ_p |x − G(z)| + λ·Σ_f |f(x) − f(G(z))|        (accumulated in float32 or wider)
    grad_gx  = ∂loss/∂G(z)    = −(1−λ)·sign(x − G(z))
    grad_fgx = ∂loss/∂f(G(z)) = −λ·sign(f(x) − f(G(z)))

``loss`` is also differentiable by autograd (in x, gx, fx and fgx, from the same sub-gradients).

``masked_adam_(z, grad, m, v, step, active, lr, beta1, beta2, eps)``: Adam (Kingma & Ba, ICLR 2015) on the rows
whose ``active`` flag is set, in place and exactly as ``torch.optim.Adam`` (default: no amsgrad, no weight decay)
steps each row as a parameter of its own::

    step += 1;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
    z -= lr · (m / (1−β1^step)) / (√(v / (1−β2^step)) + ε)

``step`` is an int64 tensor holding each row's number of updates (exact, whatever the count); inactive rows keep
z, m, v and step. ``active`` stays a tensor read by the kernel: no host–device synchronisation, so a search loop
can be captured in a CUDA graph.

Inputs may have any leading shape (flattened to rows) and any layout: column slices of a bigger matrix (unit last
stride, any row stride) are read in place, other layouts are copied once (``ops._common.rows_view``). The tensors
masked_adam_ updates are views, never copies: a layout that no row view describes, or one that overlaps itself or
another argument, is refused.
"""
from __future__ import annotations

import math
import numbers

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float, check_no_overlap, check_same, inplace_rows_view, rows_view
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.ops.schema import CPP_NAMESPACE, TRITON_NAMESPACE, define_triton
from genad_fast.reference import anogan as _reference

__all__ = ["anogan_residual", "masked_adam_"]


def _check_number(name: str, value, lo: float, hi: float, hi_open: bool = False) -> float:
    if type(value) is not float:  # (the common case skips the slower ABC check: these run every iteration)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = float(value)
    ok = math.isfinite(value) and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        interval = f"[{lo:g}, {hi:g})" if hi_open else (f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}")
        raise ValueError(f"{name} must be {'in ' if math.isfinite(hi) else ''}{interval} and finite, got {value!r}")
    return value


def _flat_rows(name: str, t: torch.Tensor, inplace: bool) -> torch.Tensor:
    """A [..]-shaped per-row tensor as 1-D: a view, or for an input that no view describes, a copy."""
    if t.dim() == 1:
        return t
    try:
        return t.view(-1)
    except RuntimeError as exc:
        if not inplace:
            return t.reshape(-1)
        raise ValueError(f"{name} is updated in place and with shape {tuple(t.shape)} and strides {t.stride()} "
                         f"cannot be viewed as one entry per row; pass a contiguous tensor") from exc


def anogan_residual(x: torch.Tensor, gx: torch.Tensor, fx: torch.Tensor, fgx: torch.Tensor, lam: float = 0.1, *,
                    backend: str | Dispatch | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AnoGAN's residual loss and its sub-gradients in one pass; see the module docstring.

    Args:
        x, gx: the samples and their reconstructions G(z), ``[..., P]``, same shape.
        fx, fgx: their discriminator features f(x), f(G(z)), ``[..., F]``, same shape, same leading shape as x.
        lam: the feature weight λ in [0, 1] (the paper uses 0.1).
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch` (the choice of the caller's call, made once).

    Returns:
        ``(loss, grad_gx, grad_fgx)``: loss of x's leading shape, the gradients of gx's and fgx's shapes
        (contiguous), all in x's dtype (float32 or float64).
    """
    for name, t in (("x", x), ("gx", gx), ("fx", fx), ("fgx", fgx)):
        check_float(name, t)
    for name, t in (("gx", gx), ("fx", fx), ("fgx", fgx)):
        check_same("x", x, name, t)
    if x.dim() < 1 or fx.dim() < 1:
        raise ValueError(f"x and fx must have at least 1 dimension (..., P) and (..., F), got shapes "
                         f"{tuple(x.shape)} and {tuple(fx.shape)}")
    if gx.shape != x.shape:
        raise ValueError(f"gx must have the shape of x {tuple(x.shape)}, got {tuple(gx.shape)}")
    if fgx.shape != fx.shape:
        raise ValueError(f"fgx must have the shape of fx {tuple(fx.shape)}, got {tuple(fgx.shape)}")
    if fx.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"fx must have the leading (row) shape of x {tuple(x.shape[:-1])}, got fx of shape "
                         f"{tuple(fx.shape)}")
    lam = _check_number("lam", lam, 0.0, 1.0)
    rows = [rows_view(name, t) for name, t in (("x", x), ("gx", gx), ("fx", fx), ("fgx", fgx))]
    chosen = select("anogan_residual", backend, x.device)
    if chosen == "eager":
        return _reference.anogan_residual(x, gx, fx, fgx, lam)
    loss, grad_gx, grad_fgx = kernel("anogan_residual", chosen)(*rows, lam)
    if x.dim() == 2:
        return loss, grad_gx, grad_fgx
    return loss.view(x.shape[:-1]), grad_gx.view(x.shape), grad_fgx.view(fx.shape)


def masked_adam_(z: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor,
                 active: torch.Tensor, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 *, backend: str | Dispatch | None = None) -> None:
    """Adam on the rows of ``z`` whose ``active`` flag is set, in place; see the module docstring.

    Args:
        z: the latent codes ``[..., L]`` (float32 or float64), updated in place.
        grad: their gradients, z's shape and dtype.
        m, v: first and second moment estimates, z's shape and dtype (start at zeros), updated in place.
        step: int64 tensor of z's leading shape: each row's update count (start at zeros), incremented in place
            for the active rows before their bias correction, as torch.optim.Adam does.
        active: bool tensor of z's leading shape; rows where it is False are left untouched (z, m, v, step).
        lr, beta1, beta2, eps: as torch.optim.Adam (lr >= 0, 0 <= beta < 1, eps >= 0).
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch` (the choice of the caller's call, made once).

    Call it under ``torch.no_grad()`` when z requires grad, as an optimizer step is. z, m, v and step are
    updated in place: each must be viewable as rows with unit last stride, and none may overlap itself, another
    or grad/active (ValueError on every backend). Step counts must be in [0, 2^63 − 1).
    """
    for name, t in (("z", z), ("grad", grad), ("m", m), ("v", v)):
        check_float(name, t)
    for name, t in (("grad", grad), ("m", m), ("v", v)):
        check_same("z", z, name, t)
        if t.shape != z.shape:
            raise ValueError(f"{name} must have the shape of z {tuple(z.shape)}, got {tuple(t.shape)}")
    if z.dim() < 1:
        raise ValueError("z must have at least 1 dimension (..., L), got a scalar")
    lead = z.shape[:-1]
    for name, t, dtype, why in (("step", step, torch.int64, "each row's update count"),
                                ("active", active, torch.bool, "one flag per row")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != dtype:
            raise TypeError(f"{name} must have dtype {str(dtype).replace('torch.', '')} ({why}), got "
                            f"{str(t.dtype).replace('torch.', '')}")
        if t.device != z.device:
            raise ValueError(f"z and {name} must be on one device, got {z.device} and {t.device}")
        if t.shape != lead:
            raise ValueError(f"{name} must have z's leading (row) shape {tuple(lead)}, got {tuple(t.shape)}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (z, m, v)):
        raise RuntimeError("masked_adam_ updates z, m and v in place: call it under torch.no_grad(), as an "
                           "optimizer step is, when they require grad")
    lr = _check_number("lr", lr, 0.0, math.inf)
    beta1 = _check_number("beta1", beta1, 0.0, 1.0, hi_open=True)
    beta2 = _check_number("beta2", beta2, 0.0, 1.0, hi_open=True)
    eps = _check_number("eps", eps, 0.0, math.inf)
    check_no_overlap("masked_adam_", {"z": z, "m": m, "v": v, "step": step}, {"grad": grad, "active": active})
    z2, m2, v2 = (inplace_rows_view(name, t) for name, t in (("z", z), ("m", m), ("v", v)))
    step1 = _flat_rows("step", step, inplace=True)
    g2, active1 = rows_view("grad", grad), _flat_rows("active", active, inplace=False)
    chosen = select("masked_adam_", backend, z.device)
    if chosen == "eager":
        _reference.masked_adam_(z, grad, m, v, step, active, lr, beta1, beta2, eps)
        return
    if chosen != "cpu":  # (the CPU kernel checks the counts itself, in the loop it runs anyway)
        _reference.check_step_counts(step1)
    kernel("masked_adam_", chosen)(z2, g2, m2, v2, step1, active1, lr, beta1, beta2, eps)


# ---- fake kernels and autograd, shared by the C++ ops and their Triton twins ----------------------

def _fake_residual(x, gx, fx, fgx, lam):
    return x.new_empty(x.shape[0]), x.new_empty(x.shape), fx.new_empty(fx.shape)


def _fake_masked_adam_(z, grad, m, v, step, active, lr, beta1, beta2, eps) -> None:
    return None


def _setup_context(ctx, inputs, output) -> None:
    _, grad_gx, grad_fgx = output
    ctx.save_for_backward(grad_gx, grad_fgx)


def _residual_backward(ctx, grad_loss, _grad_gx_out, _grad_fgx_out):
    # The op's own sub-gradients are the Jacobian rows of the loss: ∂loss/∂gx = grad_gx, ∂loss/∂x = −grad_gx
    # (and the same for the features). The sign outputs are piecewise constant: their gradient is 0.
    grad_gx, grad_fgx = ctx.saved_tensors
    w = grad_loss.unsqueeze(-1)
    d_gx = w * grad_gx
    d_fgx = w * grad_fgx
    return -d_gx, d_gx, -d_fgx, d_fgx, None


def _register(namespace: str) -> None:
    torch.library.register_fake(f"{namespace}::anogan_residual")(_fake_residual)
    torch.library.register_autograd(f"{namespace}::anogan_residual", _residual_backward,
                                    setup_context=_setup_context)
    torch.library.register_fake(f"{namespace}::masked_adam_")(_fake_masked_adam_)


if _ext._C is not None:
    _register(CPP_NAMESPACE)


# Triton twins, defined at import from the schema table (cheap, and torch.compile then never traces a
# definition); Triton itself is imported only on the first call, so `import genad_fast` does not import triton.
def _triton_residual(x: torch.Tensor, gx: torch.Tensor, fx: torch.Tensor, fgx: torch.Tensor,
                     lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from genad_fast.kernels import anogan as _kernel

    return _kernel.anogan_residual(x, gx, fx, fgx, lam)


def _triton_masked_adam_(z: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor,
                         active: torch.Tensor, lr: float, beta1: float, beta2: float, eps: float) -> None:
    from genad_fast.kernels import anogan as _kernel

    _kernel.masked_adam_(z, grad, m, v, step, active, lr, beta1, beta2, eps)


define_triton("anogan_residual", _triton_residual)
define_triton("masked_adam_", _triton_masked_adam_)
_register(TRITON_NAMESPACE)
