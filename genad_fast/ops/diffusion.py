"""Diffusion sampling ops (DDPM, Ho et al., NeurIPS 2020; DDIM, Song et al., ICLR 2021) with per-sample
coefficients, noise from the project's Philox stream (DESIGN.md, "Noise") or an explicit tensor:

    add_noise(x0, a, b, seed, offset, noise)                 x_t = a_i·x0 + b_i·z
    diffusion_step(x_t, eps, a, b, c, seed, offset, noise)   x_s = a_i·x_t + b_i·eps + c_i·z
    recon_error_accumulate_(score, x, x_hat, mask, weight)   score[B, T] += weight·mean_c(mask·(x − x̂)²)

Data are [B, M] (any leading batch B, a sample's M elements contiguous). z for the whole [B, M] tensor is
``genad_fast.ops.randn((B, M), seed, offset)``, so a caller that draws again advances ``offset`` by
``philox_counters(B·M)``. These are sampling and scoring ops: they are not differentiable (training
adds noise with plain tensor ops or with an explicit ``noise`` tensor outside autograd).

Backends: ``eager``, ``cpu`` and ``cuda`` (one pass, noise drawn in-kernel; csrc/include/genad/diffusion.h).
There is no Triton twin yet: asking for ``triton`` by name raises BackendUnavailableError.
"""
from __future__ import annotations

import torch

from genad_fast import _backend, _ext
from genad_fast.ops._common import check_float, check_rank, check_same
from genad_fast.ops.noise import _check_u63
from genad_fast.reference import diffusion as _reference

__all__ = ["add_noise", "diffusion_step", "recon_error_accumulate_"]

_IMPLEMENTED = ("eager", "cpu", "cuda")


def _check_data(name: str, t: torch.Tensor) -> None:
    check_float(name, t)
    check_rank(name, t, 2)
    if t.shape[1] > 1 and t.stride(1) != 1:
        raise ValueError(f"{name} must have a sample's elements contiguous (unit last stride), got strides {t.stride()}")


def _check_coefficients(data: torch.Tensor, **coefficients: torch.Tensor) -> None:
    for name, v in coefficients.items():
        check_float(name, v)
        check_same("data", data, name, v)
        if v.dim() != 1 or v.shape[0] != data.shape[0]:
            raise ValueError(f"{name} must be a vector of one coefficient per sample, shape [{data.shape[0]}], "
                             f"got {tuple(v.shape)}")


def _check_noise(noise: torch.Tensor | None, like: torch.Tensor) -> None:
    if noise is None:
        return
    check_float("noise", noise)
    check_same("data", like, "noise", noise)
    if noise.shape != like.shape:
        raise ValueError(f"noise must have the data's shape {tuple(like.shape)}, got {tuple(noise.shape)}")


def add_noise(x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor, seed: int, offset: int = 0,
              noise: torch.Tensor | None = None, *, backend: str | None = None) -> torch.Tensor:
    """x_t = a_i·x0 + b_i·z for x0 [B, M] and coefficient vectors a, b [B] (the forward process q(x_t | x0))."""
    _check_data("x0", x0)
    _check_coefficients(x0, a=a, b=b)
    _check_noise(noise, x0)
    seed, offset = _check_u63("seed", seed), _check_u63("offset", offset)
    if _backend.resolve(backend, x0.device, implemented=_IMPLEMENTED) == "eager":
        return _reference.add_noise(x0, a, b, seed, offset, noise)
    return torch.ops.genad_fast.add_noise(x0, a, b, seed, offset, noise)


def diffusion_step(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   seed: int, offset: int = 0, noise: torch.Tensor | None = None, *,
                   backend: str | None = None) -> torch.Tensor:
    """One reverse step x_s = a_i·x_t + b_i·eps + c_i·z (DDPM posterior mean plus noise, or DDIM with η)."""
    _check_data("x_t", x_t)
    _check_data("eps", eps)
    check_same("x_t", x_t, "eps", eps)
    if eps.shape != x_t.shape:
        raise ValueError(f"eps must have x_t's shape {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    _check_coefficients(x_t, a=a, b=b, c=c)
    _check_noise(noise, x_t)
    seed, offset = _check_u63("seed", seed), _check_u63("offset", offset)
    if _backend.resolve(backend, x_t.device, implemented=_IMPLEMENTED) == "eager":
        return _reference.diffusion_step(x_t, eps, a, b, c, seed, offset, noise)
    return torch.ops.genad_fast.diffusion_step(x_t, eps, a, b, c, seed, offset, noise)


def recon_error_accumulate_(score: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor,
                            mask: torch.Tensor | None = None, weight: float = 1.0, *,
                            backend: str | None = None) -> torch.Tensor:
    """score[B, T] += weight·mean_c(mask·(x − x̂)²) in place, for x, x̂ (and mask) [B, T, C]; returns score."""
    for name, t in (("x", x), ("x_hat", x_hat)):
        check_float(name, t)
        check_rank(name, t, 3)
    check_float("score", score)
    check_rank("score", score, 2)
    check_same("x", x, "x_hat", x_hat)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat must have x's shape {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    if mask is not None:
        check_float("mask", mask)
        if mask.shape != x.shape:
            raise ValueError(f"mask must have x's shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    if tuple(score.shape) != tuple(x.shape[:2]):
        raise ValueError(f"score must be [B, T] = {list(x.shape[:2])}, got {tuple(score.shape)}")
    if _backend.resolve(backend, x.device, implemented=_IMPLEMENTED) == "eager":
        return _reference.recon_error_accumulate_(score, x, x_hat, mask, weight)
    torch.ops.genad_fast.recon_error_accumulate_(score, x, x_hat, mask, float(weight))
    return score


if _ext._C is not None:
    @torch.library.register_fake("genad_fast::add_noise")
    def _add_noise_fake(x0, a, b, seed, offset, noise):
        return x0.new_empty(x0.shape)

    @torch.library.register_fake("genad_fast::diffusion_step")
    def _diffusion_step_fake(x_t, eps, a, b, c, seed, offset, noise):
        return x_t.new_empty(x_t.shape)

    @torch.library.register_fake("genad_fast::recon_error_accumulate_")
    def _recon_error_fake(score, x, x_hat, mask, weight):
        return None
