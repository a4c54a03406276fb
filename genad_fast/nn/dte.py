"""Diffusion Time Estimation (DTE; Livernoche, Jain, Hezaveh & Ravanbakhsh, "On Diffusion Modeling for Anomaly
Detection", ICLR 2024): a network that reads a noisy sample and says how long it has diffused.

Forward process. With the DDPM schedule β_0 .. β_{T-1}, ᾱ_t = Π_{j<=t} (1 - β_j) and σ_t² = 1 - ᾱ_t, DTE noises
with the variance-exploding form (the reference code's ``forward_noise(drift=False)``; the paper's posterior
p(σ_t² | x_t) is inverse-gamma only for this form):

    x_t = x_0 + σ_t·z                       (drift=False, the default)
    x_t = sqrt(ᾱ_t)·x_0 + σ_t·z             (drift=True, the DDPM form)

both by the fused :func:`genad_fast.ops.add_noise` (a = 1 or sqrt(ᾱ_t), b = σ_t, z drawn in the kernel from the
Philox stream). t is uniform over the T steps.

Objectives (the reference code's ``DTECategorical`` and ``DTEInverseGamma``):

- ``"categorical"``: t in ``n_bins`` equal bins, bin(t) = floor(t·n_bins/T); an MLP with ``n_bins`` outputs
  trained with cross-entropy. Prediction: the mean of the predicted bin distribution, in steps,
  E[t] = Σ_k p_k·c_k with c_k = (k + 1/2)·T/n_bins (the reference scores Σ_k p_k·k, an affine map of this),
  returned as log(E[t] - c_0) = logsumexp_{k>=1}(log p_k + log(c_k - c_0)): the same ranking, computed from
  log-probabilities. Why: the network is confident on clean data, p_0 = 1 - 1e-9 and less, and E[t] in float32
  (or float64, past gaps of about 36 nats between the logits) rounds to c_0 exactly, so normal points tie. With
  the reference's float32 score every training row of digit 5 (the digits one-class protocol, 400 epochs) scored
  exactly c_0 = 28.571428, and ties among test points lowered the AUROC; the log form keeps their order.
- ``"inverse_gamma"``: the posterior of σ_t² given x_t and its nearest normal point x_0 is inverse-gamma with
  shape α = D/2 - 1 and scale β = ||x_t - x_0||²/2 (the paper, section 4.1); the MLP predicts sqrt(β) (one
  output) by maximising that density at the true σ_t²: loss = -(α·log(β + 1e-5) - β/σ_t²). Prediction: the
  posterior's mode β/(α + 1) = 2β/D, a variance. D >= 3 (α > 0).

The network is the reference's MLP: ``hidden`` widths (256, 512, 256), ReLU, dropout after every hidden layer
but the first (p = 0.5), a linear output. Dropout draws its masks from an explicit generator (the global RNG
is never read); scoring runs without it.

Out-of-range term (not in the reference). A ReLU network extrapolates linearly along a ray, so far outside the
training data the categorical argmax can settle on any bin: with the reference's network, a spike of 1e4
training standard deviations scored lower than one of 100 (25.7 against 28.8 on a 0..37 scale, tiny test
network, T = 40), and was not flagged. The analytic posterior says what such a point is: its log-density under
noise level σ² falls as -||x - x_0||²/(2σ²) (the paper, section 4.1), so the latest time wins. Beyond the
training support -- e(x) = max(0, ||x - c||² - R²), c the training mean and R² the largest squared distance of a
training row to it -- that term is added for the excess: logit_k -= e(x)/(2·v_k), v_k the mean σ_t² of bin k;
for the inverse-gamma variant β += e(x)/2 (the posterior's scale is ||x - x_0||²/2). Inside the ball that holds
every training row e = 0 and the network is the reference's, in training (where the term applies the same way)
and at scoring.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genad_fast import ops
from genad_fast.ops import Dispatch

__all__ = ["DTE_VARIANTS", "DTELoss", "DTENet", "bin_of", "bin_variances", "predicted_time"]

DTE_VARIANTS = ("categorical", "inverse_gamma")
#: Added to β inside the inverse-gamma log-likelihood (the reference's eps): log(0) never occurs.
IG_EPS = 1e-5
_U63 = 1 << 63


class DTENet(nn.Module):
    """MLP ``in_dim -> hidden... -> out_dim``: ReLU after every hidden layer, dropout after all but the first;
    then the out-of-range term (module docstring) with the training support set by :meth:`set_support`."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.5):
        super().__init__()
        widths = [int(in_dim), *(int(h) for h in hidden)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], int(out_dim))
        self.in_dim, self.out_dim, self.dropout = int(in_dim), int(out_dim), float(dropout)
        self.variant = "categorical" if out_dim > 1 else "inverse_gamma"
        # The training support (centre, squared radius) and each bin's mean noise variance: set_support.
        self.register_buffer("center", torch.zeros(int(in_dim)))
        self.register_buffer("radius2", torch.zeros(()))
        self.register_buffer("bin_var", torch.ones(int(out_dim)))

    def init_parameters_(self, generator: torch.Generator) -> None:
        """The buffers' placeholders (no random draw); :meth:`set_support` gives their values before training."""
        with torch.no_grad():
            self.center.zero_()
            self.radius2.zero_()
            self.bin_var.fill_(1.0)

    @torch.no_grad()
    def set_support(self, data: torch.Tensor, bin_var: torch.Tensor, chunk: int = 4096, scale: float = 1.0) -> None:
        """Centre = the mean of the training samples ``data [N, ...]`` / ``scale`` (rows, or windows flattened; read
        in chunks, so a view of windows is never copied whole), radius² = the largest squared distance of one to
        it; ``bin_var`` [out_dim]: the mean σ_t² of each bin's steps (categorical)."""
        n = data.shape[0]
        parts = [data[i:i + chunk].reshape(-1, self.in_dim).to(torch.float64) / scale for i in range(0, n, chunk)]
        center = sum(p.sum(0) for p in parts) / n
        radius2 = max(float(((p - center) ** 2).sum(1).max()) for p in parts)
        self.center.copy_(center.to(self.center.dtype))
        self.radius2.fill_(radius2)
        self.bin_var.copy_(bin_var.to(self.bin_var.dtype))

    def excess(self, x: torch.Tensor) -> torch.Tensor:
        """e(x) = max(0, ||x - centre||² - radius²): how far (squared) x lies beyond every training row."""
        return (((x - self.center) ** 2).sum(1) - self.radius2).clamp(min=0.0)

    def head(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output with the out-of-range term: logits ``[b, n_bins]`` or β ``[b]``."""
        e = self.excess(x)
        if self.variant == "categorical":
            return out - e[:, None] / (2.0 * self.bin_var)
        return out[:, 0] ** 2 + 0.5 * e

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits (categorical) or β (inverse gamma) of rows ``x [b, in_dim]``. In training mode with
        dropout > 0 a ``generator`` is required (dropout masks are drawn from it, never from the global RNG)."""
        drop = self.training and self.dropout > 0.0
        if drop and generator is None:
            raise RuntimeError("DTENet draws its dropout masks from an explicit generator; pass generator= in "
                               "training mode (or call .eval())")
        h = x
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if drop and i > 0:
                keep = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype) >= self.dropout
                h = h * keep / (1.0 - self.dropout)  # inverted dropout, as nn.Dropout
        return self.head(x, self.out(h))

    def predict(self, x: torch.Tensor, n_steps: int, backend: Dispatch | str | None) -> torch.Tensor:
        """The predicted diffusion time of rows ``x`` (eval mode; see the module docstring): each layer one
        call of the fused :func:`genad_fast.ops.linear_act` (product, bias and ReLU in one pass over a tile)
        where the call's backend has it, else the same layers as ATen calls (the Triton backend has no
        ``linear_act``; :meth:`Dispatch.has`)."""
        d = backend if isinstance(backend, Dispatch) else Dispatch.build(backend, x.device)
        if not d.has("linear_act"):
            return predicted_time(self(x), self.variant, n_steps, self.in_dim)
        # Detached: the kernel's per-thread products are plain at::mm calls, which refuse weights that require
        # grad on worker threads (the caller's inference mode is not theirs).
        h = x
        for layer in self.layers:
            h = ops.linear_act(h, layer.weight.detach(), layer.bias.detach(), slope=0.0, backend=d)
        out = ops.linear_act(h, self.out.weight.detach(), self.out.bias.detach(), backend=d)
        return predicted_time(self.head(x, out), self.variant, n_steps, self.in_dim)


def predicted_time(out: torch.Tensor, variant: str, n_steps: int, n_dims: int) -> torch.Tensor:
    """The head's output (logits ``[b, n_bins]`` or β ``[b]``) as a score ``[b]``: the mean predicted step
    (categorical), or the inverse-gamma posterior's mode of σ² (inverse gamma)."""
    if variant == "categorical":
        # log(E[t] - c_0) = logsumexp_k>=1 (log p_k + log(c_k - c_0)), c_k = (k + 1/2)·T/K the bin centres: the
        # same ranking as E[t], without its float rounding (see the module docstring, "Score")
        n_bins = out.shape[1]
        gaps = torch.arange(1, n_bins, device=out.device, dtype=out.dtype) * (n_steps / n_bins)
        return torch.logsumexp(torch.log_softmax(out, dim=1)[:, 1:] + gaps.log(), dim=1)
    return out * (2.0 / n_dims)


def bin_variances(alpha_bar: torch.Tensor, n_bins: int) -> torch.Tensor:
    """The mean σ_t² = 1 - ᾱ_t over the steps of each bin ``[n_bins]``."""
    T = alpha_bar.numel()
    b = bin_of(torch.arange(T, device=alpha_bar.device), T, n_bins)
    var = (1.0 - alpha_bar).to(torch.float64)
    total = torch.zeros(n_bins, dtype=torch.float64, device=alpha_bar.device).index_add_(0, b, var)
    count = torch.zeros(n_bins, dtype=torch.float64, device=alpha_bar.device).index_add_(0, b, torch.ones_like(var))
    return total / count


def bin_of(t: torch.Tensor, n_steps: int, n_bins: int) -> torch.Tensor:
    """floor(t·n_bins/T), in [0, n_bins - 1] (the reference's ``binning``)."""
    return torch.div(t * n_bins, n_steps, rounding_mode="floor").clamp_(0, n_bins - 1)


class DTELoss:
    """The training objective of :class:`DTENet` on batches ``[b, ...]`` (rows or windows, flattened).

    Random numbers: t, the dropout masks and the Philox seed of the noise come from ``generator``; the noise
    itself is drawn inside the fused ``add_noise`` from the Philox stream (seed drawn once, the offset advanced
    by every batch's counters), so a fit is reproducible on every backend."""

    def __init__(self, variant: str, alpha_bar: torch.Tensor, drift: bool, backend: Dispatch | str | None,
                 generator: torch.Generator):
        if variant not in DTE_VARIANTS:
            raise ValueError(f"variant must be one of {DTE_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.alpha_bar = alpha_bar
        self.sigma = (1.0 - alpha_bar).sqrt()
        self.scale = alpha_bar.sqrt() if drift else torch.ones_like(alpha_bar)
        self.backend = backend
        self.generator = generator
        self.seed = int(torch.randint(0, _U63 - 1, (1,), generator=generator, device=generator.device))
        self.offset = 0

    def noisy(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t [b, F], t [b]) for flattened clean rows ``x0 [b, F]``."""
        b = x0.shape[0]
        t = torch.randint(0, self.alpha_bar.numel(), (b,), generator=self.generator, device=x0.device)
        x_t = ops.add_noise(x0, self.scale[t], self.sigma[t], self.seed, self.offset, backend=self.backend)
        self.offset += ops.philox_counters(x0.numel())
        return x_t, t

    def __call__(self, model: DTENet, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.reshape(batch.shape[0], -1)
        x_t, t = self.noisy(x0)
        out = model(x_t, self.generator)
        n_steps = self.alpha_bar.numel()
        if self.variant == "categorical":
            return F.cross_entropy(out, bin_of(t, n_steps, model.out_dim))
        shape = 0.5 * x0.shape[1] - 1.0
        beta = out
        var = self.sigma[t] ** 2
        return -(shape * torch.log(beta + IG_EPS) - beta / var).mean()


def check_log_shape(n_dims: int) -> None:
    """The inverse-gamma variant needs α = D/2 - 1 > 0."""
    if n_dims < 3 or not math.isfinite(n_dims):
        raise ValueError(f"variant='inverse_gamma' needs at least 3 input dimensions (features, or window x "
                         f"channels): its posterior's shape D/2 - 1 must be positive, got D={n_dims}; use "
                         f"variant='categorical'")
