"""FlowDetector's corrections of raw likelihood: a background model and an input-complexity estimate.

A flow's likelihood is dominated by low-level statistics that all data share (local smoothness, variance);
inputs that are *simpler* than the training data — constant, smoothed or scaled-down windows, a frozen sensor —
then get a *higher* density than normal data (Nalisnick et al., ICLR 2019; Kirichenko, Izmailov & Wilson,
NeurIPS 2020). Two corrections from the literature subtract an estimate of that shared part:

Likelihood ratio (``anomaly_score="likelihood_ratio"``; Schirrmeister et al., NeurIPS 2020; Ren et al.,
NeurIPS 2019)::

    score(x) = ( -log p_flow(x) + log p_general(x) ) / D

Schirrmeister et al. train the general model on a broad, generic distribution (Tiny Images), Ren et al. a
background model on mutated in-distribution data; both stand for "what any input of this kind looks like".
Offline, with no other data, the general model here is the Gaussian with the training data's mean and
covariance (:class:`GaussianBackground`): the maximum-entropy model of the training data's second-order
statistics — exactly the scale, smoothness (autocorrelation along a window) and cross-channel correlation that
make simple inputs likely, and nothing of the structure beyond them that the flow learned. It costs one matrix
product per sample (no second flow: a background flow, Ren et al.'s choice, would double fit and scoring
time), is fitted in closed form with the flow, only when this score is chosen, and exports as a graph. The
price of any ratio: it also cancels the anomalies that the general model finds unlikely too. Spikes, level
shifts and tabular outliers are such anomalies for the training data's Gaussian, and the ratio ranks them as
normal or below (wdbc AUROC 0.04, UCR 135 0.01 against the NLL's 0.92 and 0.99). A broader general model
(:data:`RIDGE` larger) restores them and gives up the correction: docs/flow_scores.md measures the trade.

Input complexity (``anomaly_score="complexity"``; Serrà et al., ICLR 2020)::

    S(x) = NLL_bits(x) - L(x)          (here per dimension: bits/dim)

with NLL_bits the flow's negative log-probability of ``x`` quantised to 8 bits per value, and L(x) the length
in bits of those values losslessly compressed (Serrà et al. used PNG, JPEG2000 and FLIF on 32x32 images).
Quantisation: each channel (each feature, for tabular rows) over its training range in the units the flow
sees, the 0.5 % and 99.5 % quantiles of the normalised training data (:func:`robust_range`): 256 bins of width
Δ_c, values outside saturate to the end bins; NLL_bits = nll/ln 2 − mean_d log2 Δ_d (density times bin width).

Compressor: the lossless audio coder FLAC's scheme — a fixed order-1 predictor along time per channel (PNG's
"Sub" filter; FLIF, Serrà et al.'s best, is also prediction + entropy coding) and Rice codes with the best
parameter per channel (:func:`rice_bits`). Byte compressors need more data than a window holds: on windows of
48 bytes deflate (zlib) stores the residuals almost verbatim, so L(x) only drops for exact repeats (constant
windows) and the score misses smoothed or scaled-down windows (AUROC ≤ 0.002 on them, lzma alike, against ≥ 0.98
for the Rice code and for bz2 at 14x its cost; docs/flow_scores.md). The Rice length is a few vectorised torch
operations (no Python loop over samples; 8 µs a 16 x 3 window on a loaded shared core), so the score also
exports as a graph. ``compressed_bits`` keeps zlib, lzma and bz2 (per sample, in Python) for that comparison
(``bench/flow_scores.py``).
"""
from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = ["COMPRESSORS", "GaussianBackground", "compressed_bits", "quantization_bits", "rice_bits", "robust_range"]

#: Lossless compressors for the input-complexity score: bytes -> compressed bytes.
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "zlib": lambda b: zlib.compress(b, 9),
    # raw LZMA2 (no container header) with its smallest dictionary: preset 9 allocates 64 MiB per call
    "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_RAW,
                                    filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}]),
    "bz2": lambda b: bz2.compress(b, 9),
}
#: The compressor FlowDetector's ``"complexity"`` score uses (see the module docstring for the measurement).
COMPRESSOR = "rice"
#: The quantiles of the normalised training data that bound each channel's 256 bins.
RANGE_QUANTILES = (0.005, 0.995)
#: Values of training data the quantiles are taken from, at most (whole rows/windows drawn at random): 2^18
#: leave over a thousand values beyond each quantile and cost ~20 ms at fit (measured, 8 channels, one loaded
#: core; 2^22 cost 0.4 s), so that the range can be fitted with every flow, whatever its score.
RANGE_VALUES = 1 << 18
#: Relative ridge added to the background covariance (times its mean variance): a numerical floor so that
#: exactly collinear dimensions (a window of a channel that barely moves) keep a finite density. Kept small:
#: the general model is the training data's own Gaussian, as the papers define the ratio; larger values make
#: it broader, which trades the correction of simple inputs for the NLL's ranking of ordinary anomalies.
RIDGE = 1e-3


# ---------------------------------------------------------------------------------------------- background
class GaussianBackground:
    """N(μ, Σ + ridge·tr(Σ)/D·I) fitted to flattened samples; ``nll(x)`` = -log N(x) in nats, float64 ``[b]``.

    Stored as μ, the whitening matrix ``A = L⁻¹`` (``Σ = L Lᵀ``, so ``|A(x - μ)|² `` is the Mahalanobis
    distance) and the constant ``log_norm = Σ log L_ii + D/2 · log 2π``: scoring is one matrix product, which
    exports as a graph (no triangular solve)."""

    def __init__(self, mean: torch.Tensor, whiten: torch.Tensor, log_norm: float) -> None:
        self.mean, self.whiten, self.log_norm = mean, whiten, float(log_norm)

    @classmethod
    def fit(cls, samples: Callable[[], Iterator[torch.Tensor]], dim: int,
            device: torch.device) -> "GaussianBackground":
        """Fit from ``samples()``, an iterator over batches ``[b, dim]`` (called twice: mean, then scatter), in
        float64."""
        n, total = 0, torch.zeros(dim, dtype=torch.float64, device=device)
        for x in samples():
            total += x.double().sum(0)
            n += x.shape[0]
        mean = total / n
        scatter = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        for x in samples():
            d = x.double() - mean
            scatter += d.T @ d
        cov = scatter / n
        cov.diagonal().add_(RIDGE * max(float(cov.diagonal().mean()), 1e-12))
        chol = torch.linalg.cholesky(cov)
        eye = torch.eye(dim, dtype=torch.float64, device=device)
        whiten = torch.linalg.solve_triangular(chol, eye, upper=False)
        log_norm = float(chol.diagonal().log().sum()) + 0.5 * dim * math.log(2 * math.pi)
        return cls(mean.float(), whiten.float(), log_norm)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log N(x) per row of ``x[b, dim]``, nats, float64 (float32 products, float64 sums: the difference with
        the flow's NLL must not cancel to NaN or overflow)."""
        z = (x - self.mean.to(x.dtype)) @ self.whiten.to(x.dtype).T
        return 0.5 * z.double().square().sum(1) + self.log_norm

    def state_dict(self) -> dict:
        return {"mean": self.mean, "whiten": self.whiten, "log_norm": self.log_norm}

    @classmethod
    def from_state_dict(cls, state: dict) -> "GaussianBackground":
        return cls(state["mean"], state["whiten"], float(state["log_norm"]))


# ---------------------------------------------------------------------------------------------- complexity
def robust_range(data: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel (the last axis of ``data``: a window's channels, or a table's features) the 0.5 % and 99.5 %
    quantiles of the values of randomly drawn rows/windows, at most :data:`RANGE_VALUES` values in all (the range
    is a robust statistic; torch.quantile refuses more than 2^24), float32. A channel whose range is
    (numerically) empty — constant in training — gets ±4 around its value: the frozen dimensions' unit normal
    (FlowDetector) puts 99.99 % of its mass there."""
    idx = range_rows(int(data.shape[0]), data[0].numel(), generator).to(data.device)
    return range_of(data[idx].reshape(-1, int(data.shape[-1])))


def range_rows(n: int, per_sample: int, generator: torch.Generator) -> torch.Tensor:
    """Which of ``n`` rows/windows of ``per_sample`` values :func:`robust_range` reads: a random draw of at most
    :data:`RANGE_VALUES` values' worth (CPU int64). The sharded fit draws the same rows of all the shards."""
    take = min(n, max(1, RANGE_VALUES // max(1, per_sample)))
    return torch.randperm(n, generator=generator, device="cpu")[:take]


def range_of(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`robust_range`'s quantiles of ``values`` ``[m, C]`` per column, an empty range widened to ±4."""
    q = torch.tensor(RANGE_QUANTILES, dtype=torch.float64, device=values.device)
    lo, hi = torch.quantile(values.double(), q, dim=0)
    empty = (hi - lo) <= 1e-9 * torch.clamp(hi.abs(), min=1.0)
    lo, hi = torch.where(empty, lo - 4.0, lo), torch.where(empty, hi + 4.0, hi)
    return lo.float(), hi.float()


def quantization_bits(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """-mean over a sample's dimensions of log2 Δ_d (Δ = (hi - lo)/256 of the dimension's channel), a float64
    0-d tensor (a tensor, not a float: it stays in an exported graph): added to the flow's bits/dim of the
    density, it gives the bits/dim of the 8-bit quantised value. Every channel holds the same number of a
    sample's dimensions, so the mean over channels is the mean over dimensions."""
    return -torch.log2((hi.double() - lo.double()) / 256.0).mean()


def _quantize(batch: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """8-bit codes 0..255 of ``batch`` over ``[lo, hi)`` per channel (the last axis), as float (exportable)."""
    scale = 256.0 / (hi - lo).to(batch.dtype)
    return torch.floor((batch - lo.to(batch.dtype)) * scale).clamp(0.0, 255.0)


def _residuals(q: torch.Tensor) -> torch.Tensor:
    """Prediction residuals ``[b, C, n]``: windows ``[b, W, C]`` channel-major, each value minus the one before
    it in its channel (FLAC's order-1 fixed predictor, PNG's "Sub"; the first value against the middle code
    128); rows ``[b, D]`` as one channel against 128 (their features have no order to predict along)."""
    if q.dim() == 2:
        return (q - 128.0).unsqueeze(1)
    q = q.transpose(1, 2)
    return torch.cat([q[..., :1] - 128.0, q[..., 1:] - q[..., :-1]], dim=-1)


def rice_bits(batch: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """L(x) in bits, float64 ``[b]``: the 8-bit codes' prediction residuals (:func:`_residuals`) Rice-coded as
    FLAC codes them, with the best Rice parameter k in 0..8 per channel of each sample (4 bits to name it)::

        u = 2r (r >= 0), -2r - 1 (r < 0)          len_k(u) = 1 + k + floor(u / 2^k)

    Vectorised over the batch, torch operations only (it exports as a graph); float32 holds every length
    exactly (integers below 2^24), one pass over the residuals per k instead of a ``[9, b, C, n]`` tensor (4-5x
    faster, memory-bound)."""
    r = _residuals(_quantize(batch, lo, hi)).float()
    u = torch.where(r >= 0, 2.0 * r, -2.0 * r - 1.0)
    n = u.shape[-1]
    best = None
    for k in range(9):
        length = torch.floor(u * (0.5 ** k)).sum(-1) + n * (1 + k)  # [b, C]
        best = length if best is None else torch.minimum(best, length)
    return (best.double() + 4.0).sum(-1)


def compressed_bits(batch: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                    compressor: str = COMPRESSOR) -> torch.Tensor:
    """L(x) in bits for each sample of ``batch`` (``[b, W, C]`` windows or ``[b, D]`` rows, normalised), float64
    ``[b]`` on ``batch``'s device: ``"rice"`` (:func:`rice_bits`), or the byte compressors of
    :data:`COMPRESSORS` on each sample's bytes: the residuals of :func:`_residuals` modulo 256."""
    if compressor == "rice":
        return rice_bits(batch, lo, hi)
    try:
        compress = COMPRESSORS[compressor]
    except KeyError:
        raise ValueError(f"unknown compressor {compressor!r}; choose from rice, {', '.join(COMPRESSORS)}") from None
    raw = _residuals(_quantize(batch, lo, hi)).remainder(256.0).to(torch.uint8).reshape(batch.shape[0], -1)
    raw = np.ascontiguousarray(raw.cpu().numpy())
    width = raw.shape[1]
    buf = memoryview(raw.tobytes())
    lengths = [len(compress(buf[i * width:(i + 1) * width])) for i in range(raw.shape[0])]
    return torch.tensor(lengths, dtype=torch.float64, device=batch.device) * 8.0
