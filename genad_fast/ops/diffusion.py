"""Fused diffusion sampling and scoring ops (DDPM, Ho et al., NeurIPS 2020; DDIM, Song et al., ICLR 2021).

    add_noise(x0, a, b, seed, offset, noise)                 x_t = a_i·x0 + b_i·z
    diffusion_step(x_t, eps, a, b, c, seed, offset, noise)   x_s = a_i·x_t + b_i·eps + c_i·z
    recon_error_accumulate_(score, x, x_hat, mask, weight)   score[B, T] += weight·mean_c(mask·(x − x̂)²)

The coefficients a, b, c are vectors with one entry per sample, so one call runs any schedule: the forward process
(a = sqrt(ᾱ_t), b = sqrt(1 − ᾱ_t)), the DDPM posterior (a = 1/sqrt(α_t), b = −β_t/(sqrt(α_t)·sqrt(1 − ᾱ_t)),
c = σ_t), DDIM with any η (Song et al. 2021, eq. 12, with x̂_0 substituted), or a different timestep per sample.

The data are ``[B, ...]``: sample i is ``x[i]``. The kernels read them as ``[B, M]`` rows with any stride between
samples (a slice along the batch, a sample broadcast with stride 0): such inputs are views; any other layout (a
channel slice of ``[B, W, C]`` windows, a transpose) is copied once into a contiguous tensor.
z is standard normal noise of the data's shape, drawn inside the kernel from the project's Philox stream
(DESIGN.md, "Noise") for the whole tensor: exactly ``genad_fast.ops.randn(x.shape, seed, offset)``, element by
element, on every backend. A caller that draws again advances ``offset`` by ``philox_counters(x.numel())``.
``noise=`` passes z explicitly instead (same shape and dtype as the data).

The per-timestamp reconstruction error adds into ``score`` in place, so K noise draws and several imputation
masks accumulate into one buffer without temporaries (ImDiffusion, Chen et al., VLDB 2023; DiffusionAE,
Pintilie et al., 2023). ``x``, ``x_hat`` and ``mask`` may have any strides: a ``[B, C, T]`` state is passed as
its transpose ``state.transpose(1, 2)``, without a copy.

These are sampling and scoring ops: they are not differentiable, and raise if asked to record a graph (training
noises its batches outside autograd or with tensors that do not require grad). Fused backends: ``cpu`` (C++,
at::vec), ``cuda``, ``triton``; ``eager`` is :mod:`genad_fast.reference.diffusion`.
"""
from __future__ import annotations

import math
import numbers

import torch

from genad_fast import _ext
from genad_fast.ops._common import as_matrix, check_float, check_no_overlap, check_rank, check_same
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.ops.noise import _check_u63
from genad_fast.ops.schema import CPP_NAMESPACE, TRITON_NAMESPACE, define_triton
from genad_fast.reference import diffusion as _reference

__all__ = ["add_noise", "diffusion_step", "recon_error_accumulate_"]

_LIMIT = 2**63


# ---- input checks -------------------------------------------------------------------------------------------

def _rows(name: str, t: torch.Tensor) -> torch.Tensor:
    """An input ``t[B, ...]`` as ``[B, M]`` with a sample's M elements contiguous: a view when one exists (any
    stride between samples, a broadcast sample included), else one contiguous copy (e.g. a channel slice of a
    ``[B, W, C]`` window batch)."""
    if t.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension [B, ...], got a scalar")
    return as_matrix(t, (t.shape[0], math.prod(t.shape[1:])))


def _check_data(name: str, t: torch.Tensor) -> torch.Tensor:
    check_float(name, t)
    return _rows(name, t)


def _check_like(name: str, t: torch.Tensor, data_name: str, data: torch.Tensor) -> torch.Tensor:
    check_float(name, t)
    check_same(data_name, data, name, t)
    if t.shape != data.shape:
        raise ValueError(f"{name} must have {data_name}'s shape {tuple(data.shape)}, got {tuple(t.shape)}")
    return _rows(name, t)


def _check_coefficient(name: str, v: torch.Tensor, data_name: str, data: torch.Tensor) -> torch.Tensor:
    """A vector [B] of float32/float64 coefficients on the data's device, cast to the data's dtype ([B] values)."""
    check_float(name, v)
    if v.device != data.device:
        raise ValueError(f"{name} and {data_name} must be on one device, got {v.device} and {data.device}")
    if v.dim() != 1 or v.shape[0] != data.shape[0]:
        raise ValueError(f"{name} must be a vector of one coefficient per sample, shape [{data.shape[0]}], got "
                         f"{tuple(v.shape)}")
    return v.to(data.dtype)


def _check_stream(seed, offset, n: int) -> tuple[int, int]:
    seed, offset = _check_u63("seed", seed), _check_u63("offset", offset)
    if offset + (n + 3) // 4 > _LIMIT:
        raise ValueError(f"offset + philox_counters(numel) must not exceed 2^63 (counters stay int64), got "
                         f"offset={offset} with {(n + 3) // 4} counters")
    return seed, offset


def _check_no_grad(op: str, **tensors: torch.Tensor | None) -> None:
    if not torch.is_grad_enabled():
        return
    for name, t in tensors.items():
        if t is not None and t.requires_grad:
            raise RuntimeError(f"{op} is a sampling/scoring op and is not differentiable, but {name} requires grad; "
                               f"call it under torch.no_grad() or pass {name}.detach()")


# ---- public ops ---------------------------------------------------------------------------------------------

def add_noise(x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor, seed: int, offset: int = 0,
              noise: torch.Tensor | None = None, *, backend: str | Dispatch | None = None) -> torch.Tensor:
    """The forward process q(x_t | x0) of DDPM (Ho et al. 2020, eq. 4): x_t = a_i·x0 + b_i·z, fused.

    Args:
        x0: ``[B, ...]`` float32/float64 data, any layout (see the module docstring).
        a, b: ``[B]`` per-sample coefficients (e.g. sqrt(ᾱ_t) and sqrt(1 − ᾱ_t) at each sample's t), float32 or
            float64 (cast to x0's dtype).
        seed, offset: the Philox stream, integers in [0, 2^63): z = ``genad_fast.ops.randn(x0.shape, seed,
            offset)``. Ignored when ``noise`` is given.
        noise: an explicit z of x0's shape and dtype, or None.
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch` (the choice of the caller's call, made once).

    Returns a new contiguous tensor of x0's shape and dtype. Not differentiable (a sampling op).
    """
    x2 = _check_data("x0", x0)
    a = _check_coefficient("a", a, "x0", x0)
    b = _check_coefficient("b", b, "x0", x0)
    n2 = None if noise is None else _check_like("noise", noise, "x0", x0)
    seed, offset = _check_stream(seed, offset, x0.numel())
    _check_no_grad("add_noise", x0=x0, a=a, b=b, noise=noise)
    chosen = select("add_noise", backend, x0.device)
    if chosen == "eager":
        return _reference.add_noise(x0, a, b, seed, offset, noise)
    return kernel("add_noise", chosen)(x2, a, b, seed, offset, n2).view(x0.shape)


def diffusion_step(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   seed: int, offset: int = 0, noise: torch.Tensor | None = None, *,
                   backend: str | Dispatch | None = None) -> torch.Tensor:
    """One reverse step x_s = a_i·x_t + b_i·eps + c_i·z, fused (noise drawn in the kernel).

    With ε̂ the denoiser's output, DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) is a = 1/sqrt(α_t),
    b = −(1 − α_t)/(sqrt(α_t)·sqrt(1 − ᾱ_t)), c = σ_t; DDIM (Song et al. 2021, eq. 12) from t to s is
    a = sqrt(ᾱ_s/ᾱ_t), b = sqrt(1 − ᾱ_s − σ²) − sqrt(ᾱ_s)·sqrt(1 − ᾱ_t)/sqrt(ᾱ_t), c = σ (η-scaled).

    Args:
        x_t, eps: ``[B, ...]`` float32/float64, same shape, dtype and device, any layout.
        a, b, c: ``[B]`` per-sample coefficients (cast to x_t's dtype).
        seed, offset, noise, backend: as in :func:`add_noise`.

    Returns a new contiguous tensor of x_t's shape and dtype. Not differentiable (a sampling op).
    """
    x2 = _check_data("x_t", x_t)
    e2 = _check_like("eps", eps, "x_t", x_t)
    a = _check_coefficient("a", a, "x_t", x_t)
    b = _check_coefficient("b", b, "x_t", x_t)
    c = _check_coefficient("c", c, "x_t", x_t)
    n2 = None if noise is None else _check_like("noise", noise, "x_t", x_t)
    seed, offset = _check_stream(seed, offset, x_t.numel())
    _check_no_grad("diffusion_step", x_t=x_t, eps=eps, a=a, b=b, c=c, noise=noise)
    chosen = select("diffusion_step", backend, x_t.device)
    if chosen == "eager":
        return _reference.diffusion_step(x_t, eps, a, b, c, seed, offset, noise)
    return kernel("diffusion_step", chosen)(x2, e2, a, b, c, seed, offset, n2).view(x_t.shape)


def recon_error_accumulate_(score: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor,
                            mask: torch.Tensor | None = None, weight: float = 1.0, *,
                            backend: str | Dispatch | None = None) -> torch.Tensor:
    """score[b, t] += weight·(1/C)·Σ_c mask[b, t, c]·(x[b, t, c] − x̂[b, t, c])², in place; returns ``score``.

    The per-timestamp reconstruction error of diffusion scoring, averaged over channels (DiffusionAE, Pintilie
    et al. 2023; ImDiffusion, Chen et al., VLDB 2023, where ``mask`` selects the imputed points), added into a
    score buffer so draws and masks accumulate with ``weight`` = 1/(number of terms) and no temporaries. Sums run
    in the data's dtype (float32 or wider). NaN/inf propagate, also where the mask is 0 (0·inf is NaN).

    Args:
        score: ``[B, T]`` buffer of x's dtype, updated in place (any strides; it must overlap neither itself
            nor x, x_hat or mask: ValueError on every backend).
        x, x_hat: ``[B, T, C]`` float32/float64, C >= 1, any strides (e.g. ``state.transpose(1, 2)`` of a ``[B, C, T]``
            state); x may be broadcast over the batch (stride 0).
        mask: None (all ones) or ``[B, T, C]`` of x's dtype.
        weight: a real number.
        backend: as in :func:`add_noise`.

    Not differentiable (a scoring op).
    """
    check_float("x", x)
    check_rank("x", x, 3)
    if x.shape[2] == 0:
        raise ValueError(f"x must have at least one channel (C >= 1), got shape {tuple(x.shape)}: the mean over "
                         f"channels of an empty set is undefined")
    check_float("x_hat", x_hat)
    check_same("x", x, "x_hat", x_hat)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat must have x's shape {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    if mask is not None:
        check_float("mask", mask)
        check_same("x", x, "mask", mask)
        if mask.shape != x.shape:
            raise ValueError(f"mask must have x's shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    check_float("score", score)
    check_same("x", x, "score", score)
    if tuple(score.shape) != tuple(x.shape[:2]):
        raise ValueError(f"score must be [B, T] = {list(x.shape[:2])} for x of shape {tuple(x.shape)}, got "
                         f"{tuple(score.shape)}")
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight must be a real number, got {type(weight).__name__}")
    _check_no_grad("recon_error_accumulate_", score=score, x=x, x_hat=x_hat, mask=mask)
    check_no_overlap("recon_error_accumulate_", {"score": score}, {"x": x, "x_hat": x_hat, "mask": mask})
    chosen = select("recon_error_accumulate_", backend, x.device)
    if chosen == "eager":
        return _reference.recon_error_accumulate_(score, x, x_hat, mask, float(weight))
    kernel("recon_error_accumulate_", chosen)(score, x, x_hat, mask, float(weight))
    return score


# ---- fake kernels and the Triton ops --------------------------------------------------------------------------

def _fake_add_noise(x0, a, b, seed, offset, noise):
    return x0.new_empty(x0.shape)


def _fake_step(x_t, eps, a, b, c, seed, offset, noise):
    return x_t.new_empty(x_t.shape)


def _fake_recon(score, x, x_hat, mask, weight):
    return None


def _register(namespace: str) -> None:
    torch.library.register_fake(f"{namespace}::add_noise")(_fake_add_noise)
    torch.library.register_fake(f"{namespace}::diffusion_step")(_fake_step)
    torch.library.register_fake(f"{namespace}::recon_error_accumulate_")(_fake_recon)


if _ext._C is not None:
    _register(CPP_NAMESPACE)


# Triton twins, defined at import from the schema table (cheap); Triton itself is imported only on the first
# call, so `import genad_fast` does not import triton.
def _triton_add_noise(x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor, seed: int, offset: int,
                      noise: torch.Tensor | None) -> torch.Tensor:
    from genad_fast.kernels import diffusion as _kernel

    return _kernel.combine(x0, None, a, None, b, seed, offset, noise)


def _triton_step(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                 seed: int, offset: int, noise: torch.Tensor | None) -> torch.Tensor:
    from genad_fast.kernels import diffusion as _kernel

    return _kernel.combine(x_t, eps, a, b, c, seed, offset, noise)


def _triton_recon(score: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor | None,
                  weight: float) -> None:
    from genad_fast.kernels import diffusion as _kernel

    _kernel.recon_error_accumulate_(score, x, x_hat, mask, weight)


define_triton("add_noise", _triton_add_noise)
define_triton("diffusion_step", _triton_step)
define_triton("recon_error_accumulate_", _triton_recon)
_register(TRITON_NAMESPACE)
