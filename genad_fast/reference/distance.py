"""Eager Gaussian KDE log-density and k-nearest distances: the oracle of :mod:`genad_fast.ops.distance`.

For queries ``q[..., D]`` and references ``r[M, D]``, with d²(q, r) = Σ_d (q_d − r_d)² computed by direct
differences (``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")``: no cancellation, and NaN/inf
follow IEEE rules — inf − inf = NaN)::

    kde_logpdf(q)   = logsumexp_j(−d²(q, r_j) / (2h²)) − log M' − (D/2)·log(2πh²)
    knn_distance(q) = the k smallest d(q, r_j), ascending, as torch.topk(largest=False) orders them (NaN last)

which is scikit-learn's ``KernelDensity(kernel="gaussian", bandwidth=h).score_samples`` and
``NearestNeighbors().kneighbors(n_neighbors=k)[0]``. ``exclude_self=True`` (the queries are the references,
N = M) leaves j = i out: the leave-one-out density with M' = M − 1 (else M' = M), and the neighbours of a
training point among the others (scikit-learn's ``kneighbors()`` without X).

Queries are processed in chunks so that no more than about ``chunk_elems`` distances exist at once (memory
O(chunk·M), never N×M); everything is computed in the input dtype (torch's reductions accumulate float32 in
float32 or wider).
"""
from __future__ import annotations

import math

import torch

_CHUNK_ELEMS = 1 << 22  # distances held at once: 16 MiB of float32


def _chunks(n: int, m: int, chunk_elems: int) -> tuple[range, int]:
    step = max(1, chunk_elems // max(m, 1))
    return range(0, n, step), step


def _sq_dists(q: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    return torch.cdist(q, refs, compute_mode="donot_use_mm_for_euclid_dist").square()


def _drop_self(block: torch.Tensor, start: int, value: float) -> torch.Tensor:
    """Sets entry (i, start + i) of a [n, M] block of query rows start … start + n − 1 to ``value``."""
    i = torch.arange(block.shape[0], device=block.device)
    block[i, start + i] = value
    return block


def kde_logpdf(queries: torch.Tensor, refs: torch.Tensor, bandwidth: float, exclude_self: bool = False, *,
               chunk_elems: int = _CHUNK_ELEMS) -> torch.Tensor:
    """Gaussian KDE log-density of ``queries[..., D]`` under ``refs[M, D]`` with bandwidth h; see the module
    docstring. Returns the queries' leading shape, in their dtype."""
    D = queries.shape[-1]
    q = queries.reshape(-1, D)
    M = refs.shape[0]
    # log(2πh²) as log(2π) + 2·log h: h² overflows for h > 1.3e154
    log_norm = (-math.log(M - 1 if exclude_self else M)
                - 0.5 * D * (math.log(2.0 * math.pi) + 2.0 * math.log(bandwidth)))
    starts, step = _chunks(q.shape[0], M, chunk_elems)
    out = []
    for s in starts:
        log_k = _sq_dists(q[s:s + step], refs).mul_(-0.5 / (bandwidth * bandwidth))
        if exclude_self:
            _drop_self(log_k, s, -math.inf)
        out.append(torch.logsumexp(log_k, dim=1))
    lse = torch.cat(out) if out else q.new_empty(0)
    return (lse + log_norm).reshape(queries.shape[:-1])


def knn_distance(queries: torch.Tensor, refs: torch.Tensor, k: int, exclude_self: bool = False, *,
                 chunk_elems: int = _CHUNK_ELEMS) -> torch.Tensor:
    """Distances of ``queries[..., D]`` to their k nearest ``refs[M, D]``, ascending: ``[..., k]``; see the module
    docstring."""
    D = queries.shape[-1]
    q = queries.reshape(-1, D)
    starts, step = _chunks(q.shape[0], refs.shape[0], chunk_elems)
    out = []
    for s in starts:
        d = torch.cdist(q[s:s + step], refs, compute_mode="donot_use_mm_for_euclid_dist")
        if exclude_self:
            # NaN ranks last in topk and k <= M − 1, so the query's own entry is reached only after every other
            # candidate, i.e. only where the remaining ones are NaN too: the returned values are those of the
            # candidates without it.
            _drop_self(d, s, math.nan)
        out.append(torch.topk(d, k, dim=1, largest=False, sorted=True).values)
    dist = torch.cat(out) if out else q.new_empty(0, k)
    return dist.reshape(*queries.shape[:-1], k)
