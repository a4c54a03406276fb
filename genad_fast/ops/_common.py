"""Input checks shared by the op modules: every error names the argument and the problem."""
from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_float(name: str, t: torch.Tensor, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype {allowed}; got {str(t.dtype).replace('torch.', '')}")


def check_rank(name: str, t: torch.Tensor, rank: int) -> None:
    if t.dim() != rank:
        raise ValueError(f"{name} must be {rank}-D, got shape {tuple(t.shape)}")


def check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Same dtype and device (shapes are op-specific and checked by the op)."""
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} and {name_b} must share a dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on one device, got {a.device} and {b.device}")


def rows_view(name: str, t: torch.Tensor) -> torch.Tensor:
    """An input ``t[..., K]`` as a 2-D ``[rows, K]`` tensor with unit column stride: a view when one exists.

    Any layout is accepted, as PyTorch ops accept it: column slices of a bigger matrix keep their row stride
    and a row broadcast keeps its zero row stride (both are views; the kernels read rows through any row
    stride); only a layout that no such view describes (a non-unit last-dimension stride, leading dimensions
    that do not merge) is copied, once, into a contiguous tensor. For arguments an op writes in place use
    :func:`inplace_rows_view`, which never copies.
    """
    if t.dim() < 1:
        raise ValueError(f"{name} must have at least 1 dimension, got a scalar")
    K = t.shape[-1]
    return as_matrix(t, (math.prod(t.shape[:-1]), K))  # not -1: a K = 0 view of 0 rows is ambiguous


def as_matrix(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``t`` as a 2-D tensor of ``shape`` with unit stride along each row: a view when one exists (any row
    stride, a zero one included), else one contiguous copy."""
    rows = _try_view(t, tuple(shape))
    if rows is None or (rows.shape[1] > 1 and rows.stride(1) != 1):
        rows = t.contiguous().view(tuple(shape))
    if rows.numel() == 0 and rows.shape[1] > 1 and rows.stride(1) != 1:
        # numpy's empty arrays carry strides (0, 0) and torch calls them contiguous: nothing to copy, but the
        # kernels check strides, so they get a fresh empty tensor
        rows = t.new_empty(rows.shape)
    return rows


def inplace_rows_view(name: str, t: torch.Tensor) -> torch.Tensor:
    """An argument written in place, ``t[..., K]``, as a 2-D ``[rows, K]`` view with unit column stride.

    It must be a view (a copy would take the writes): a layout that cannot be viewed so is an error that says
    what to pass instead. Overlap is checked separately, by :func:`check_no_overlap`.
    """
    if t.dim() < 1:
        raise ValueError(f"{name} must have at least 1 dimension, got a scalar")
    K = t.shape[-1]
    rows = t if t.dim() == 2 else _try_view(t, (math.prod(t.shape[:-1]), K))
    if rows is None or (K > 1 and rows.stride(-1) != 1):
        raise ValueError(f"{name} is updated in place and must be viewable as rows [N, {K}] with unit stride on "
                         f"its last dimension, got shape {tuple(t.shape)} with strides {t.stride()}; pass a "
                         f"contiguous tensor (or a column slice of one) and copy the result back")
    return rows


def _try_view(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    try:
        return t.view(shape)
    except RuntimeError:
        return None


# ---- overlap of in-place arguments ---------------------------------------------------------------------------
#
# A kernel that writes an argument in place assumes every element it writes is a location of its own: an
# argument that overlaps itself (a broadcast, stride 0, or rows closer than their width) would take several
# updates in one place, and one that overlaps another argument (written or read) would read values already
# overwritten. Eager PyTorch rejects the first (``unsupported operation: more than one element of the written-to
# tensor refers to a single memory location``); every op here rejects both, before choosing a backend, so the
# message is the same on every backend.

def check_no_overlap(op: str, inplace: dict[str, torch.Tensor],
                     inputs: dict[str, torch.Tensor | None] | None = None) -> None:
    """Raises ValueError if an in-place argument overlaps itself, another in-place argument or an input.

    Inputs (read-only) may overlap one another. The test is exact for the layouts the ops take (2-D or 1-D row
    layouts with unit column stride, in one storage with equal row strides); for other pairs sharing memory it
    is conservative and refuses any pair whose address ranges intersect.
    """
    if torch.compiler.is_compiling():
        # Traced tensors have no addresses. The compiled graph functionalizes the in-place op (the mutated
        # arguments are written back after it), so the check belongs to the eager call that supplies the tensors.
        return
    spans = []  # (name, tensor, first byte, last byte) of the in-place arguments, then of the inputs
    for name, t in inplace.items():
        # (ATen's own test first: it answers "no overlap" at C speed for dense tensors, "too hard" for slices)
        if t.numel() > 1 and torch._debug_has_internal_overlap(t) != 0 and not _distinct_elements(t):
            raise ValueError(f"{op}: {name} is written in place but several of its elements share one memory "
                             f"location (shape {tuple(t.shape)}, strides {t.stride()}: a broadcast or overlapping "
                             f"view); pass a tensor that owns its elements, e.g. {name}.clone()")
        if t.numel() > 0:
            spans.append((name, t, *_byte_range(t)))
    n_written = len(spans)
    spans += [(name, t, *_byte_range(t)) for name, t in (inputs or {}).items() if t is not None and t.numel() > 0]
    # Address ranges first (cheap): tensors in different allocations never share one, so only pairs whose
    # ranges intersect get the exact test.
    for i in range(n_written):
        name, t, a0, a1 = spans[i]
        for other_name, o, b0, b1 in spans[i + 1:]:
            if a0 <= b1 and b0 <= a1 and o.device == t.device and _rows_overlap(t, a0, o, b0):
                raise ValueError(f"{op}: {name} is written in place and overlaps {other_name} in memory; pass "
                                 f"tensors that do not share memory (e.g. {other_name}.clone())")


def _distinct_elements(t: torch.Tensor) -> bool:
    """Whether no two elements of ``t`` share a location: with the dimensions (of size > 1) sorted by stride,
    each stride must exceed the span of the dimensions below it. This is exact for every layout a view of a
    dense tensor produces; an exotic interleaving (e.g. strides (2, 3) for sizes (3, 2)) counts as sharing."""
    if t.numel() <= 1:
        return True
    span = 0  # the largest offset reachable through the dimensions seen so far
    dims = sorted(((st, s) for s, st in zip(t.shape, t.stride()) if s > 1))
    for stride, size in dims:
        if stride <= span:
            return False
        span += stride * (size - 1)
    return True


def _byte_range(t: torch.Tensor) -> tuple[int, int]:
    """[first, last] byte address ``t`` touches (numel >= 1)."""
    span = 0
    for size, stride in zip(t.shape, t.stride()):
        span += (size - 1) * stride
    e = t.element_size()
    start = t.data_ptr()
    return start, start + (span + 1) * e - 1


def _row_layout(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(rows, row stride, row width) in bytes when ``t`` is a 1-D or 2-D row layout with unit column stride."""
    e = t.element_size()
    if t.dim() == 1:
        return t.shape[0], (t.stride(0) if t.shape[0] > 1 else 0) * e, e
    if t.dim() == 2 and (t.shape[1] <= 1 or t.stride(1) == 1):
        return t.shape[0], (t.stride(0) if t.shape[0] > 1 else 0) * e, t.shape[1] * e
    return None


def _rows_overlap(a: torch.Tensor, a0: int, b: torch.Tensor, b0: int) -> bool:
    """Whether ``a`` and ``b`` (starting at byte addresses a0, b0, address ranges intersecting) share a byte."""
    la, lb = _row_layout(a), _row_layout(b)
    if la is None or lb is None or (la[0] > 1 and lb[0] > 1 and la[1] != lb[1]):
        return True  # not both rows of one stride: the intersecting ranges are refused, conservatively
    return _rows_intersect(b0 - a0, la, lb)


def _rows_intersect(d: int, la: tuple[int, int, int], lb: tuple[int, int, int]) -> bool:
    """Whether rows i of a (at i·s, width wa) and k of b (at d + k·s, width wb) share a byte, for one row stride
    s: the byte intervals [i·s, i·s + wa) and [d + k·s, d + k·s + wb) meet iff −wb < d + (k − i)·s < wa."""
    (ra, sa, wa), (rb, sb, wb) = la, lb
    s = sa if ra > 1 else sb
    if s == 0:  # every row at the same place (one row each, or a broadcast)
        return -wb < d < wa
    # the smallest t = k − i in [−(ra − 1), rb − 1] with d + t·s > −wb; it meets the interval iff d + t·s < wa
    t = max(-(ra - 1), (-wb - d) // s + 1)
    return t <= rb - 1 and d + t * s < wa
