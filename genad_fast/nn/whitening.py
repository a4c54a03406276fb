"""Whitening with a Ledoit–Wolf shrunk covariance: z = Σ̂^(-1/2)·(x - μ), so the training samples have (nearly)
identity covariance and every direction the same scale.

Ledoit & Wolf ("A well-conditioned estimator for large-dimensional covariance matrices", J. Multivariate
Analysis 88, 2004) shrink the sample covariance S of the centred samples x_1..x_n (p features) towards a
multiple of the identity, with the shrinkage that minimises the expected Frobenius loss:

    Σ̂ = (1 - ρ)·S + ρ·m·I,        m = tr(S)/p,
    δ = ||S - m·I||²_F / p,        β = min(δ, (1/(n²·p))·Σ_k ||x_k x_kᵀ - S||²_F),        ρ_LW = β/δ

(Σ_k ||x_k x_kᵀ - S||²_F = Σ_k ||x_k||⁴ - n·||S||²_F; the formula of scikit-learn's ``ledoit_wolf_shrinkage``).
The whitening takes ρ = max(ρ_LW, ``min_shrinkage``), 0.01 by default: every eigenvalue of Σ̂ is then at least
ρ·m, so no direction is stretched by more than 1/sqrt(ρ) = 10 times the data's mean scale, and the inverse square
root exists even with fewer samples than features. Why a floor: ρ_LW assumes independent samples, and the
windows of a series at stride 1 are not (each shares all but one timestamp with its neighbour), so it comes out
near 0 there (6e-4 on a 67-step sawtooth) and the whitening blew the series' smallest, noise-only directions up to
the scale of its signal. Measured with the DTE detector, whitening in full (p = 1/2), on the gutentag series at
its defaults (seed 0, VUS-PR): ρ_LW alone lost cosine-pattern-shift (0.49 -> 0.30, AUROC 0.46) where the floor of
0.01 gained (0.67); a floor of 0.1 smoothed too much (sawtooth-pattern AUROC 0.96 at 0.01, 0.57 at 0.1);
docs/quality_study.md, "DTE: whitened windows". The map is the symmetric one (ZCA: V·diag(λ^(-1/2))·Vᵀ from
Σ̂ = V·diag(λ)·Vᵀ), which keeps each coordinate next to the feature it came from; ``Whitening.fit(power=p)`` maps
by c·Σ̂^(-p) instead, p < 1/2 a partial whitening. Eigenvalues are floored at 1e-6·m (float32 data resolve
no finer variance ratio) so rounding noise is never blown up.

Samples are read in chunks (a view of a series' windows is never copied whole) and summed in float64.
"""
from __future__ import annotations

import torch

__all__ = ["Whitening", "float64_rows", "ledoit_wolf"]

#: The least shrinkage the whitening uses (module docstring).
MIN_SHRINKAGE = 0.01
#: Eigenvalues of the shrunk covariance are at least this fraction of its mean (float32 resolution).
EIG_FLOOR = 1e-6


def float64_rows(data: torch.Tensor, chunk: int = 4096):
    """The samples of ``data [n, ...]``, flattened, ``chunk`` rows at a time in float64 (a view of windows is
    never copied whole)."""
    n = data.shape[0]
    for i in range(0, n, chunk):
        yield data[i:i + chunk].reshape(min(chunk, n - i), -1).to(torch.float64)


def ledoit_wolf(data: torch.Tensor, chunk: int = 4096,
                min_shrinkage: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean [p], shrunk covariance Σ̂ [p, p], shrinkage ρ = max(ρ_LW, ``min_shrinkage``)) of the samples
    ``data [n, ...]`` (flattened), float64 (module docstring)."""
    n = int(data.shape[0])
    if n < 1:
        raise ValueError("whitening needs at least one sample")
    mean = sum(part.sum(0) for part in float64_rows(data, chunk)) / n
    gram, fourth = None, 0.0
    for part in float64_rows(data, chunk):
        c = part - mean
        gram = c.T @ c if gram is None else gram + c.T @ c
        fourth += float((c * c).sum(1).pow(2).sum())
    p = mean.numel()
    cov = gram / n
    m = float(torch.diagonal(cov).sum()) / p
    frob2 = float((cov * cov).sum())
    delta = (frob2 - p * m * m) / p
    beta = min(delta, (fourth / n - frob2) / (n * p))
    shrinkage = max(0.0 if delta <= 0.0 or beta <= 0.0 else beta / delta, float(min_shrinkage))
    shrunk = (1.0 - shrinkage) * cov
    shrunk.diagonal().add_(shrinkage * m)
    return mean, shrunk, shrinkage


class Whitening:
    """z = (x - mean) @ matrix, ``matrix`` = Σ̂^(-1/2) of :func:`ledoit_wolf` with ρ at least ``min_shrinkage``, or
    the partial map c·Σ̂^(-p) (:meth:`fit`'s ``power``); symmetric, so the same on either side. ``fit`` returns
    None for samples with no variance at all (nothing to whiten)."""

    def __init__(self, mean: torch.Tensor, matrix: torch.Tensor, shrinkage: float):
        self.mean, self.matrix, self.shrinkage = mean, matrix, float(shrinkage)

    @classmethod
    def fit(cls, data: torch.Tensor, chunk: int = 4096, min_shrinkage: float = MIN_SHRINKAGE,
            power: float = 0.5) -> "Whitening | None":
        """The map of ``data [n, ...]`` (flattened), or None where it has no variance. ``power`` p in (0, 1/2]:
        matrix = c·Σ̂^(-p), c such that the mapped samples' mean variance is 1 (c = 1 at p = 1/2, whitening; p → 0
        tends to the one global scale 1/sqrt(mean variance); p = 1/4 halves the spread of the variances'
        logarithms)."""
        if not 0.0 < power <= 0.5:
            raise ValueError(f"power must be in (0, 0.5], got {power!r}")
        mean, shrunk, shrinkage = ledoit_wolf(data, chunk, min_shrinkage)
        lam, vec = torch.linalg.eigh(shrunk)
        level = float(lam.clamp_min(0.0).mean())
        if not 0.0 < level < float("inf"):
            return None
        lam = lam.clamp_min(EIG_FLOOR * level) / level  # relative to the mean: c·Σ̂^(-p) is then scale-free
        gain = lam.pow(-power) / lam.pow(1.0 - 2.0 * power).mean().sqrt()
        matrix = (vec * gain) @ vec.T / level ** 0.5
        return cls(mean.to(torch.float32), matrix.to(torch.float32), shrinkage)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows [b, p]`` whitened (in their dtype)."""
        return (rows - self.mean.to(rows.device, rows.dtype)) @ self.matrix.to(rows.device, rows.dtype)

    def transform_all(self, data: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """``data [n, ...]`` flattened and whitened into one new ``[n, p]`` float32 tensor, a chunk at a time."""
        n = int(data.shape[0])
        out = torch.empty(n, self.mean.numel(), dtype=torch.float32, device=data.device)
        for i in range(0, n, chunk):
            out[i:i + chunk] = self(data[i:i + chunk].reshape(min(chunk, n - i), -1).to(torch.float32))
        return out
