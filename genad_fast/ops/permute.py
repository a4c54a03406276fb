"""``permute_affine``: the input of a normalizing-flow step with a fixed permutation, read from two halves.

::

    x = [x_a, x_b]                                                     x_a [N, Da], x_b [N, Db] (columns), D = Da + Db
    v[:, j] = (x[:, p_j] + b[p_j])·exp(log_scale[p_j])                 b, log_scale [D], p a permutation of 0 .. D-1
    out = (v[:, :split], v[:, split:])

    ∂/∂x[:, p_j] = g_j·e_j    ∂/∂b[p_j] = Σ_rows g_j·e_j    ∂/∂log_scale[p_j] = Σ_rows g_j·v_j
                                                                       (e_j = exp(log_scale[p_j]))

That is Glow's ActNorm, then a fixed permutation of the features, then the affine coupling's split (Kingma &
Dhariwal, NeurIPS 2018; Dinh et al., ICLR 2017), with the previous coupling's output given as its two halves
(x_a unchanged, x_b transformed) instead of their concatenation.

Why an op: at 1,544 features (FlowDetector on 193 × 8 windows) a training step spent ~15 ms of its ~85 in passes
over 256 × 1,544 activations around each coupling: the column gather and, in the backward, its ungather, the affine
map and its two column sums, and the concatenation of the coupling's halves, each a pass over memory the products
had pushed out of cache. The kernel reads each row where it lies, gathers in L1 and writes once; its backward is one
pass too. The forward values equal the modules' bit for bit (the same adds and products, ATen's exp); the column
sums are taken in double over fixed blocks of rows (the same bits for any number of threads). The eager backend
runs :mod:`genad_fast.reference.permute_affine` under autograd. CPU and CUDA kernels (on CUDA the column sums are
ATen's, in double; the permutation's range is asserted in the kernel, its having no repeats is not checked there);
no Triton kernel: the flow takes the composite there (:func:`genad_fast.ops.dispatch.kernel_or_eager`).
"""
from __future__ import annotations

import numbers

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float, rows_view
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.reference import permute_affine as _reference

__all__ = ["permute_affine"]


def permute_affine(x_a: torch.Tensor, x_b: torch.Tensor, bias: torch.Tensor, log_scale: torch.Tensor,
                   perm: torch.Tensor, split: int, *, backend: str | Dispatch | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(v[:, :split], v[:, split:])`` with ``v = (([x_a, x_b] + bias)·exp(log_scale))[:, perm]``, each contiguous;
    see the module docstring.

    Differentiable in x_a, x_b, bias and log_scale (the backward kernel on the compiled backends, autograd of the
    composite on the eager one); a second derivative only on the eager backend. ``backend``: ``"eager"``, ``"cpu"``,
    ``"cuda"``, None (``GENAD_FAST_BACKEND``, else auto) or a :class:`~genad_fast.ops.Dispatch`. There is no Triton
    kernel: ``"triton"`` raises BackendUnavailableError.
    """
    for name, t, rank in (("x_a", x_a, 2), ("x_b", x_b, 2), ("bias", bias, 1), ("log_scale", log_scale, 1),
                          ("perm", perm, 1)):
        if not isinstance(t, torch.Tensor) or t.dim() != rank:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a {rank}-D tensor, got {got}")
    check_float("x_a", x_a)
    D = x_a.shape[1] + x_b.shape[1]
    for name, t in (("x_b", x_b), ("bias", bias), ("log_scale", log_scale)):
        if t.dtype != x_a.dtype:
            raise TypeError(f"{name} must have x_a's dtype {str(x_a.dtype).replace('torch.', '')}, got "
                            f"{str(t.dtype).replace('torch.', '')}")
    if x_b.shape[0] != x_a.shape[0]:
        raise ValueError(f"x_b must have x_a's {x_a.shape[0]} rows, got {x_b.shape[0]}")
    for name, t in (("bias", bias), ("log_scale", log_scale), ("perm", perm)):
        if t.shape[0] != D:
            raise ValueError(f"{name} must have shape [{D}] (one entry per column of [x_a, x_b]), got {list(t.shape)}")
    if perm.dtype != torch.int64:
        raise TypeError(f"perm must be int64, got {str(perm.dtype).replace('torch.', '')}")
    if isinstance(split, bool) or not isinstance(split, numbers.Integral) or not 0 <= split <= D:
        raise ValueError(f"split must be an int in [0, {D}], got {split!r}")
    split = int(split)  # a numpy integer too
    for name, t in (("x_b", x_b), ("bias", bias), ("log_scale", log_scale), ("perm", perm)):
        if t.device != x_a.device:
            raise ValueError(f"{name} is on {t.device}, x_a on {x_a.device}: pass tensors on one device")
    chosen = select("permute_affine", backend, x_a.device)
    if chosen == "eager":
        if perm.device.type == "cpu":  # the CPU kernel checks it itself; on a GPU reading it back would sync
            _check_permutation(perm)
        v_a, v_b = _reference.permute_affine(x_a, x_b, bias, log_scale, perm, split)
        return v_a.contiguous(), v_b.contiguous()   # column windows of one [N, D] result: contiguous, as documented
    # the kernel reads rows in place through any row stride; other layouts (a transposed half, numpy's empty arrays
    # with strides (0, 0)) are handed over as rows_view makes them, as the other ops' wrappers do
    x_a, x_b = rows_view("x_a", x_a), rows_view("x_b", x_b)
    return kernel("permute_affine", chosen)(x_a, x_b, bias, log_scale, perm, split)


def _check_permutation(perm: torch.Tensor) -> None:
    """perm holds each of 0 .. D-1 once: the eager composite would take a repeat silently (and an out-of-range entry
    with ATen's message, which does not name perm). The CPU kernel's own check, in the same words."""
    D = perm.numel()
    values = perm.tolist()
    seen = [False] * D
    for j, v in enumerate(values):
        if not 0 <= v < D or seen[v]:
            why = "a repeat" if 0 <= v < D else "out of range"
            raise ValueError(f"perm must be a permutation of 0 .. {D - 1}, got {v} at position {j} ({why})")
        seen[v] = True


def _fake_forward(x_a, x_b, bias, log_scale, perm, split):
    N, D = x_a.shape[0], x_a.shape[1] + x_b.shape[1]
    return x_a.new_empty((N, split)), x_a.new_empty((N, D - split))


def _fake_backward(grad_a, grad_b, v_a, v_b, log_scale, perm, source_split):
    N, D = v_a.shape[0], v_a.shape[1] + v_b.shape[1]
    return (v_a.new_empty((N, source_split)), v_a.new_empty((N, D - source_split)), log_scale.new_empty((D,)),
            log_scale.new_empty((D,)))


if _ext._C is not None and hasattr(torch.ops.genad_fast, "permute_affine"):
    torch.library.register_fake("genad_fast::permute_affine")(_fake_forward)
    torch.library.register_fake("genad_fast::permute_affine_backward")(_fake_backward)
