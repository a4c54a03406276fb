"""``conv1d_act``: one stage of a small 1-D convolutional encoder or decoder in one call.

::

    u   = upsample_nearest(x, length)                                   (length = L_in: none)
    y   = bias[o] + Σ_c Σ_j weight[o, c, j] · u[n, c, t + j - k // 2]   (zero outside u: "same" padding for odd k)
    y   = LeakyReLU(y, slope)            if slope is given
    out = MaxPool1d(2, ceil_mode=True)(y) if pool

x ``[N, C_in, L_in]`` float32 or float64 (any strides), weight ``[C_out, C_in, k]``, out ``[N, C_out, L_out]``
with ``L_out = ceil(L_c / 2)`` when pooling, else ``L_c = length + 2·(k // 2) - k + 1`` (``length`` for odd k).
These are the stages of :class:`~genad_fast.nn.blocks.ConvEncoder` (``Conv1d -> LeakyReLU -> MaxPool1d``) and
:class:`~genad_fast.nn.blocks.ConvDecoder` (``Upsample -> Conv1d -> LeakyReLU``); the upsampling picks the same
source timestamps as ``torch.nn.Upsample(mode="nearest")``.

Why an op: a stream scores one window per timestamp, and at that size (8-64 channels, tens of timestamps) ATen's
convolution and the separate upsampling, activation and pooling passes cost ~25 µs a stage in dispatch and
allocation around ~1 µs of arithmetic (:mod:`genad_fast.nn.conv_plan` runs the autoencoder's, the VAE's and Deep
SVDD's networks with it). The CPU kernel gathers a sample's padded input once and accumulates register blocks of
output channels along time with vector FMAs, in x's dtype: another summation order than ATen's convolution, so
results agree to rounding; every sample gets the same sums whatever the batch. The CUDA kernel composes ATen
ops (cuDNN); there is no Triton kernel (on a GPU the convolution is cuDNN's either way). No autograd formula: it is
an inference op.
"""
from __future__ import annotations

import operator

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.reference import conv as _reference

__all__ = ["conv1d_act", "conv1d_act_length"]


def conv1d_act_length(length: int, kernel_size: int, pool: bool) -> int:
    """The output length of :func:`conv1d_act` for an (upsampled) input of ``length`` timestamps."""
    conv = length + 2 * (kernel_size // 2) - kernel_size + 1
    return (conv + 1) // 2 if pool else conv


def conv1d_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, length: int | None = None,
               slope: float | None = None, pool: bool = False,
               backend: str | Dispatch | None = None) -> torch.Tensor:
    """``pool(act(conv1d(upsample(x, length), weight, bias)))``; see the module docstring.

    Args:
        x: ``[N, C_in, L_in]`` float32 or float64, any layout. weight: ``[C_out, C_in, k]``, x's dtype and device.
        bias: ``[C_out]`` or None. length: the input's length after nearest upsampling (None: ``L_in``, none).
        slope: LeakyReLU slope, or None for no activation. pool: MaxPool1d(2, ceil_mode=True) after it.
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch`. There is no Triton kernel: ``"triton"`` raises
            BackendUnavailableError (``Dispatch.has("conv1d_act")`` asks without raising).
    """
    for name, t, rank in (("x", x, 3), ("weight", weight, 3)):
        if not isinstance(t, torch.Tensor) or t.dim() != rank:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a {rank}-D tensor, got {got}")
    check_float("x", x)
    (n, c_in, l_in), c_out = x.shape, weight.shape[0]
    if c_in < 1 or l_in < 1:
        raise ValueError(f"x must have at least one channel and one timestamp, got shape {tuple(x.shape)}")
    for name, t, shape in (("weight", weight, (c_out, c_in, weight.shape[2])), ("bias", bias, (c_out,))):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise TypeError(f"{name} must have x's dtype {str(x.dtype).replace('torch.', '')}, got "
                            f"{str(t.dtype).replace('torch.', '')}")
        if name == "weight" and (t.shape[0] < 1 or t.shape[2] < 1):  # C++'s text (csrc/include/genad/host/conv1d_act.h)
            raise ValueError(f"weight must have at least one output channel and one tap, got shape {list(t.shape)}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} (weight [C_out, C_in = {c_in}, k >= 1]), got "
                             f"{list(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device}, x on {x.device}: pass tensors on one device")
    length = l_in if length is None else length
    if isinstance(length, bool) or not hasattr(length, "__index__") or operator.index(length) < 1:
        raise ValueError(f"length must be an int >= 1 (the input's length after upsampling), got {length!r}")
    length = operator.index(length)  # a NumPy integer too
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        raise RuntimeError("conv1d_act has no autograd formula (an inference op): call it under torch.no_grad() "
                           "or torch.inference_mode(), or on tensors that do not require grad")
    slope = None if slope is None else float(slope)
    pool = bool(pool)
    chosen = select("conv1d_act", backend, x.device)
    if chosen == "eager":
        return _reference.conv1d_act(x, weight, bias, length, slope, pool)
    return kernel("conv1d_act", chosen)(x, weight, bias, length, slope, pool)


def _fake_conv1d_act(x, weight, bias, length, slope, pool):
    return x.new_empty((x.shape[0], weight.shape[0], conv1d_act_length(length, weight.shape[2], pool)))


if _ext._C is not None and hasattr(torch.ops.genad_fast, "conv1d_act"):
    torch.library.register_fake("genad_fast::conv1d_act")(_fake_conv1d_act)
