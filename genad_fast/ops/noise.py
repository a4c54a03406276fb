"""Reproducible standard normal noise from one counter-based stream on every backend (DESIGN.md, "Noise").

``randn(shape, seed, offset)`` draws from Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", SC 2011) keyed by the 64-bit ``seed``, turned into normals by Box-Muller exactly as Triton's
``tl.randn4x(seed, counter)`` does. For n elements, q = ceil(n / 4) counters are used: element i (row-major)
is normal number i // q of ``randn4x(seed, offset + i % q)``. A caller that draws again advances ``offset``
by ``philox_counters(n)`` = q, so the draws never overlap. The same (seed, offset, shape) gives the same
numbers on the eager, CPU, CUDA and Triton backends (to the last ulp of float32 log/sqrt/sin/cos) and for
any thread count; float64 output holds the float32 normals converted.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch

from genad_fast import _ext
from genad_fast.ops._common import FLOAT_DTYPES
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.ops.schema import CPP_NAMESPACE, TRITON_NAMESPACE, define_triton
from genad_fast.reference import philox as _reference

__all__ = ["randn", "philox_counters"]

_LIMIT = 2**63  # seeds and offsets are non-negative int64 values


def philox_counters(n: int) -> int:
    """Counters a tensor of ``n`` elements uses, ceil(n / 4): advance ``offset`` by this to draw again."""
    n = _as_int("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return (n + 3) // 4


def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _check_u63(name: str, value) -> int:
    value = _as_int(name, value)
    if not 0 <= value < _LIMIT:
        raise ValueError(f"{name} must be in [0, 2^63), got {value}")
    return value


def _as_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, Sequence) and not isinstance(shape, str):
        dims = tuple(_as_int("shape entries", d) for d in shape)
    else:
        dims = (_as_int("shape", shape),)
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must not have negative sizes, got {dims}")
    return dims


def randn(shape, seed: int, offset: int = 0, dtype: torch.dtype = torch.float32,
          device: torch.device | str = "cpu", *, backend: str | Dispatch | None = None) -> torch.Tensor:
    """Standard normal noise of ``shape`` from the Philox stream at (``seed``, ``offset``).

    Args:
        shape: an int or a sequence of ints (sizes >= 0).
        seed: the Philox key, an integer in [0, 2^63).
        offset: the first counter, in [0, 2^63); ``offset + philox_counters(numel)`` must not exceed 2^63.
        dtype: float32 or float64 (float64 holds the float32 normals converted).
        device: where the tensor lives.
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch` (its choice for ``philox_normal_``).
    """
    dims = _as_shape(shape)
    seed = _check_u63("seed", seed)
    offset = _check_u63("offset", offset)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    q = philox_counters(math.prod(dims))
    if offset + q > _LIMIT:
        raise ValueError(f"offset + philox_counters(numel) must not exceed 2^63 (counters stay int64), "
                         f"got offset={offset} with {q} counters")
    device = torch.device(device)
    name = select("philox_normal_", backend, device)
    if name == "eager":
        return _reference.randn(dims, seed, offset, dtype=dtype, device=device)
    out = torch.empty(dims, dtype=dtype, device=device)
    kernel("philox_normal_", name)(out, seed, offset)
    return out


# ---- fake kernels and the Triton op ----------------------------------------------------------------

def _philox_normal_fake(out: torch.Tensor, seed: int, offset: int) -> None:
    return None


# Defined at import from the schema table (cheap, and torch.compile then never traces a definition); Triton
# itself is imported only on the first call, so `import genad_fast` does not import triton.
def _triton_philox_normal_(out: torch.Tensor, seed: int, offset: int) -> None:
    """Triton twin of genad_fast::philox_normal_ (kernels/philox.py): fills contiguous ``out`` in place."""
    if out.dtype not in FLOAT_DTYPES or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32/float64 tensor, got {out.dtype}, "
                         f"strides {out.stride()}")
    from genad_fast.kernels import philox as _kernel

    _kernel.philox_normal_(out, seed, offset)


define_triton("philox_normal_", _triton_philox_normal_)
for _namespace in ((CPP_NAMESPACE, TRITON_NAMESPACE) if _ext._C is not None else (TRITON_NAMESPACE,)):
    torch.library.register_fake(f"{_namespace}::philox_normal_")(_philox_normal_fake)
