"""Fused classic density and distance scores over a reference set: the Gaussian KDE log-density and the distances
to the k nearest references, tiled so that memory stays O(N + M) — no N×M matrix is ever formed.

For queries ``q[..., D]`` and references ``r[M, D]``, with d²(q, r) = Σ_d (q_d − r_d)²::

    kde_logpdf(q, r, h)    = logsumexp_j(−d²(q, r_j) / (2h²)) − log M − (D/2)·log(2πh²)
    knn_distance(q, r, k)  = the k smallest d(q, r_j) = √d², ascending

``kde_logpdf`` is the log of the Gaussian kernel density estimate (Rosenblatt 1956; Parzen 1962) normalised as
scikit-learn's ``KernelDensity(kernel="gaussian", bandwidth=h).score_samples``; ``knn_distance`` gives
``NearestNeighbors().kneighbors(n_neighbors=k)[0]``, the distances behind the kNN outlier score (Ramaswamy,
Rastogi & Shim, SIGMOD 2000). ``exclude_self=True`` is for queries that *are* the references (row i of both is
the same point): j = i is left out — the leave-one-out density (normalised by M − 1) and the neighbours among
the other points, the scores a detector gives its own training data.

Non-finite values propagate: a NaN coordinate makes its distances NaN (a NaN query gets a NaN density and NaN
distances; a NaN reference makes every density NaN, and ranks after every number in ``knn_distance``, as
``torch.topk`` orders NaN); an infinite coordinate gives infinite distances (density terms of 0), and inf − inf
gives NaN, as ``torch.cdist`` does.

Many small calls against one reference set (a stream scoring one window per update): the cpu kernels pack the
whole set for their register tile on every call (O(M·D): a median per column of up to 4,095 rows, norms, a transposed
copy; a few ms for 50,000 × 32 float32, against microseconds for the distances of a few queries). :func:`hold_refs`
keeps the packed form between calls while the hold lives (the results do not change: the same packing, made
once); an in-place write to the held tensor (its version counter moves) makes the next call repack.

Backends: ``eager`` (the chunked reference, :mod:`genad_fast.reference.distance`), ``cpu`` (register-tiled
C++ kernels: distances from |q|² + |r|² − 2 q·r in registers, finished in place by an online log-sum-exp or a
top-k filter; exact direct differences for rows with non-finite values), ``cuda`` and ``triton`` (direct
differences in tiles). Inputs may be column slices of a bigger matrix (unit last stride, any row stride).

Precision of the cpu backend: the expansion |q|² + |r|² − 2 q·r carries an absolute error in d² of about
eps·(|q|² + |r|²) (eps = 6e-8 in float32), so KDE log-densities may be off by up to eps·(|q|² + |r|²)/(2h²)
nats. That is negligible on standardised data (the detectors standardise by default: |q|², |r|² ~ d, h ~ 1); on
raw data whose spread is large next to the bandwidth, standardise first or pass float64. ``knn_distance`` only
filters with the expansion (on AVX2 float32, with int16 copies of the rows): it keeps every reference within a
bound on the filter's error of the k-th, and ranks those by their direct differences in double, so its distances
are the float64 k nearest of the inputs, rounded once to their dtype, whatever the data's scale.

These ops have no autograd formula — they are scores, not training losses: inputs that require grad (with grad
mode on) are rejected with an error rather than silently detached. Bandwidth rules for ``bandwidth=``:
:func:`scott_bandwidth`, :func:`silverman_bandwidth`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from genad_fast import _ext
from genad_fast.ops._common import check_float, check_same, rows_view
from genad_fast.ops.dispatch import Dispatch, kernel, select
from genad_fast.ops.schema import CPP_NAMESPACE, TRITON_NAMESPACE, define_triton
from genad_fast.reference import distance as _reference

__all__ = ["HeldRefs", "hold_refs", "kde_logpdf", "knn_distance", "scott_bandwidth", "silverman_bandwidth"]

BANDWIDTH_RULES = ("scott", "silverman")


# ---- bandwidth rules ---------------------------------------------------------------------------------------

def _n_d(x: Any, name: str = "x") -> tuple[int, int]:
    shape = tuple(x.shape) if hasattr(x, "shape") else None
    if shape is None or len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D array or tensor [n, d], got shape {shape}")
    n, d = int(shape[0]), int(shape[1])
    if n < 1 or d < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {shape}")
    return n, d


def scott_bandwidth(x: Any) -> float:
    """Scott's rule (Scott, *Multivariate Density Estimation*, 1992) as scikit-learn's ``bandwidth="scott"``:

        h = n^(−1/(d + 4))

    for data ``x`` of n rows and d columns. Like scikit-learn, the factor is used as the bandwidth itself, which
    suits data standardised to unit variance per feature (the detectors standardise by default); for raw data
    multiply by a scale (e.g. the features' standard deviation), as ``scipy.stats.gaussian_kde`` does.
    """
    n, d = _n_d(x)
    return float(n ** (-1.0 / (d + 4)))


def silverman_bandwidth(x: Any) -> float:
    """Silverman's rule (Silverman, *Density Estimation for Statistics and Data Analysis*, 1986) as scikit-learn's
    ``bandwidth="silverman"``:

        h = (n·(d + 2) / 4)^(−1/(d + 4))

    for data ``x`` of n rows and d columns (the same caveat about scale as :func:`scott_bandwidth`).
    """
    n, d = _n_d(x)
    return float((n * (d + 2) / 4.0) ** (-1.0 / (d + 4)))


# ---- checks ------------------------------------------------------------------------------------------------

def _check_pair(queries: torch.Tensor, refs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_float("queries", queries)
    check_float("refs", refs)
    check_same("queries", queries, "refs", refs)
    if refs.dim() != 2:
        raise ValueError(f"refs must be 2-D [M, D], got shape {tuple(refs.shape)}")
    if queries.dim() < 1:
        raise ValueError("queries must have at least 1 dimension (..., D), got a scalar")
    if queries.shape[-1] != refs.shape[-1]:
        raise ValueError(f"queries and refs must have the same number of columns D, got queries of shape "
                         f"{tuple(queries.shape)} (D = {queries.shape[-1]}) and refs of shape {tuple(refs.shape)} "
                         f"(D = {refs.shape[-1]})")
    if refs.shape[-1] == 0:
        raise ValueError("queries and refs must have at least one column (D >= 1), got D = 0")
    if refs.shape[0] == 0:
        raise ValueError("refs must have at least one row (M >= 1), got an empty reference set")
    if torch.is_grad_enabled() and (queries.requires_grad or refs.requires_grad):
        raise RuntimeError("kde_logpdf and knn_distance have no backward (they are scores, not losses); call them "
                           "under torch.no_grad() or pass detached tensors")
    return rows_view("queries", queries), rows_view("refs", refs)


def _check_exclude_self(exclude_self: Any, q2: torch.Tensor, refs: torch.Tensor) -> bool:
    if not isinstance(exclude_self, bool):
        raise TypeError(f"exclude_self must be True or False, got {exclude_self!r}")
    if exclude_self and q2.shape[0] != refs.shape[0]:
        raise ValueError(f"exclude_self=True needs the queries to be the refs (row i of both the same point), so "
                         f"as many query rows as refs: got {q2.shape[0]} query rows and {refs.shape[0]} refs")
    return exclude_self


def _resolve_bandwidth(bandwidth: Any, refs: torch.Tensor) -> float:
    if isinstance(bandwidth, str):
        rule = bandwidth.strip().lower()
        if rule == "scott":
            return scott_bandwidth(refs)
        if rule == "silverman":
            return silverman_bandwidth(refs)
        raise ValueError(f"bandwidth must be a number > 0 or one of {BANDWIDTH_RULES}, got {bandwidth!r}")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real):
        raise TypeError(f"bandwidth must be a number > 0 or one of {BANDWIDTH_RULES}, got {type(bandwidth).__name__}")
    h = float(bandwidth)
    if not (math.isfinite(h) and h > 0.0):
        raise ValueError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
    # The kernels scale squared distances by 1/(2h²) in the data's dtype.
    if not math.isfinite(1.0 / (2.0 * h * h)) or (refs.dtype == torch.float32 and 1.0 / (2.0 * h * h) > 2.3e38):
        raise ValueError(f"bandwidth {h!r} is too small for {str(refs.dtype).replace('torch.', '')}: 1/(2h²) "
                         f"overflows; rescale the data")
    return h


# ---- public ops --------------------------------------------------------------------------------------------

def kde_logpdf(queries: torch.Tensor, refs: torch.Tensor, bandwidth: float | str, *, exclude_self: bool = False,
               backend: str | Dispatch | None = None) -> torch.Tensor:
    """Gaussian KDE log-density of each query under the references; see the module docstring.

    Args:
        queries: ``[..., D]`` float32 or float64 (any leading shape; unit last stride).
        refs: ``[M, D]``, same dtype and device, M >= 1 (M >= 2 with exclude_self).
        bandwidth: the kernel's standard deviation h > 0, or ``"scott"`` / ``"silverman"`` (computed from refs,
            :func:`scott_bandwidth`, :func:`silverman_bandwidth`).
        exclude_self: the queries are the references: leave each point out of its own density (normalised by
            M − 1).
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch` (the choice of the caller's call, made once).

    Returns:
        log p of the queries' leading shape, in their dtype (sums accumulated in float64 or, per lane, in
        float32 flushed to float64 on the CPU).
    """
    q2, r2 = _check_pair(queries, refs)
    exclude_self = _check_exclude_self(exclude_self, q2, refs)
    if exclude_self and refs.shape[0] < 2:
        raise ValueError(f"exclude_self=True needs at least 2 refs (each point's density comes from the others), "
                         f"got {refs.shape[0]}")
    h = _resolve_bandwidth(bandwidth, refs)
    chosen = select("kde_logpdf", backend, queries.device)
    if chosen == "eager":
        return _reference.kde_logpdf(queries, refs, h, exclude_self)
    return kernel("kde_logpdf", chosen)(q2, r2, h, exclude_self).view(queries.shape[:-1])


def knn_distance(queries: torch.Tensor, refs: torch.Tensor, k: int, exclude_self: bool = False, *,
                 backend: str | Dispatch | None = None) -> torch.Tensor:
    """Euclidean distances of each query to its k nearest references, ascending; see the module docstring.

    Args:
        queries: ``[..., D]`` float32 or float64 (any leading shape; unit last stride).
        refs: ``[M, D]``, same dtype and device.
        k: neighbours, 1 <= k <= M (k <= M − 1 with exclude_self).
        exclude_self: the queries are the references: row i is not its own neighbour.
        backend: ``"eager"``, ``"cpu"``, ``"cuda"``, ``"triton"``, None (``GENAD_FAST_BACKEND``, else auto) or a
            :class:`~genad_fast.ops.Dispatch` (the choice of the caller's call, made once).

    Returns:
        ``[..., k]`` in the queries' dtype.
    """
    q2, r2 = _check_pair(queries, refs)
    exclude_self = _check_exclude_self(exclude_self, q2, refs)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    k = int(k)
    M = refs.shape[0]
    available = M - 1 if exclude_self else M
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > available:
        raise ValueError(f"k = {k} is larger than the {available} refs available (M = {M}"
                         f"{', each point excluded from its own neighbours' if exclude_self else ''})")
    chosen = select("knn_distance", backend, queries.device)
    if chosen == "eager":
        return _reference.knn_distance(queries, refs, k, exclude_self)
    return kernel("knn_distance", chosen)(q2, r2, k, exclude_self).view(*queries.shape[:-1], k)


# ---- reference sets held packed between calls ---------------------------------------------------------------

class HeldRefs:
    """A reference set held packed for the cpu kernels of :func:`kde_logpdf` and :func:`knn_distance` (made by
    :func:`hold_refs`): while it lives (until :meth:`release`, the end of a ``with`` block, or garbage collection),
    calls with this very tensor as ``refs`` (or a view of it with the same layout) reuse the packed form made by
    the first of them. ``held``: whether anything is held (False where there is nothing to keep: no compiled
    extension or one built before holds, a non-CPU tensor). Thread-safe: calls on several threads may share one hold."""

    __slots__ = ("refs", "_id", "__weakref__")

    def __init__(self, refs: torch.Tensor) -> None:
        self.refs = refs
        self._id = None
        hold = getattr(_ext._C, "_hold_refs", None)  # None: no extension, or one built before holds existed
        if hold is not None and refs.device.type == "cpu":
            self._id = int(hold(refs))

    @property
    def held(self) -> bool:
        return self._id is not None

    def release(self) -> None:
        """Drop the packed form now (idempotent)."""
        if self._id is not None and _ext._C is not None:
            _ext._C._release_refs(self._id)
        self._id = None

    def __enter__(self) -> "HeldRefs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the module may be gone; the process frees the table
            pass

    def __repr__(self) -> str:
        return f"HeldRefs({tuple(self.refs.shape)}, {self.refs.dtype}, held={self.held})"


def hold_refs(refs: torch.Tensor) -> HeldRefs:
    """Hold ``refs`` ``[M, D]`` packed between cpu calls of :func:`kde_logpdf` / :func:`knn_distance` (see
    :class:`HeldRefs`; the module docstring says why). Only calls with this tensor benefit; results are the same
    with or without the hold.

    Raises TypeError for a non-tensor, ValueError for a tensor that is not 2-D floating point or that has no
    version counter (an inference tensor: an in-place write could not be seen; hold a clone made outside
    ``torch.inference_mode``)."""
    if not isinstance(refs, torch.Tensor):
        raise TypeError(f"refs must be a torch.Tensor, got {type(refs).__name__}")
    check_float("refs", refs)
    if refs.dim() != 2:
        raise ValueError(f"refs must be 2-D [M, D], got shape {tuple(refs.shape)}")
    if refs.is_inference():
        raise ValueError("hold_refs needs a tensor with a version counter (so that an in-place write is seen); an "
                         "inference tensor has none: hold a clone made outside torch.inference_mode()")
    return HeldRefs(refs)


# ---- fake kernels (no autograd: see the module docstring) --------------------------------------------------

def _fake_kde(queries: torch.Tensor, refs: torch.Tensor, bandwidth: float, exclude_self: bool = False):
    return queries.new_empty(queries.shape[0])


def _fake_knn(queries: torch.Tensor, refs: torch.Tensor, k: int, exclude_self: bool):
    return queries.new_empty(queries.shape[0], k)


def _register(namespace: str) -> None:
    torch.library.register_fake(f"{namespace}::kde_logpdf")(_fake_kde)
    torch.library.register_fake(f"{namespace}::knn_distance")(_fake_knn)


if _ext._C is not None:
    _register(CPP_NAMESPACE)


# Triton twins, defined at import from the schema table (cheap, and torch.compile then never traces a
# definition); Triton itself is imported only on the first call, so `import genad_fast` does not import triton.
def _triton_kde(queries: torch.Tensor, refs: torch.Tensor, bandwidth: float, exclude_self: bool = False
                ) -> torch.Tensor:
    from genad_fast.kernels import distance as _kernel

    return _kernel.kde_logpdf(queries, refs, bandwidth, exclude_self)


def _triton_knn(queries: torch.Tensor, refs: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    from genad_fast.kernels import distance as _kernel

    return _kernel.knn_distance(queries, refs, k, exclude_self)


define_triton("kde_logpdf", _triton_kde)
define_triton("knn_distance", _triton_knn)
_register(TRITON_NAMESPACE)
