"""Variational autoencoder with a Gaussian encoder and a Gaussian decoder (Kingma & Welling, ICLR 2014).

Encoder q(z|x) = N(μ(x), diag σ²(x)), decoder p(x|z) = N(m(z), diag s²(z)), prior p(z) = N(0, I).
Training maximises the (β-weighted) evidence lower bound, through the reparameterisation
z = μ + σ·ε, ε ~ N(0, I) (Higgins et al., ICLR 2017 for β ≠ 1):

    ELBO_β(x) = E_q[log p(x|z)] - β · KL(q(z|x) || p(z))
    KL        = ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²)                         (closed form)

The loss is -ELBO_β / D per sample (D = features, or W·C for a window), averaged over the batch, so
the learning rate does not depend on the input size.

Two anomaly scores, both from L latent samples z_l ~ q(z|x) decoded in one batched pass:

- negative ELBO (β = 1, a bound on -log p(x)): ``-(1/L) Σ_l log p(x|z_l) + KL``;
- reconstruction probability (An & Cho, 2015, Alg. 4): the decoder's density of x averaged over the
  L samples, ``RP(x) = (1/L) Σ_l p(x|z_l)``, scored as ``-log RP(x) = -(logsumexp_l log p(x|z_l) - log L)``
  (a mean of probabilities, not of log-probabilities, as the paper defines it; computed in log space).

For windows ``[N, W, C]`` both can be kept per timestamp: the log-densities are summed over the
channels of each timestamp only, and the KL term of the ELBO is spread evenly, KL / W per timestamp,
so the per-timestamp scores of a window sum to its score.

Variances are bounded for numerical safety: the encoder's log σ² is soft-clamped to (-10, 10), and
the decoder's variance is ``softplus(raw) + min_variance``, so the likelihood cannot grow without
bound by shrinking s² to 0 on training points (the degenerate optimum of a free Gaussian decoder).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genad_fast.nn.blocks import make_decoder, make_encoder
from genad_fast.nn.keyed_noise import keyed_normals, row_keys

__all__ = ["GaussianVAE", "SCORES", "elbo_loss"]

LOG_2PI = math.log(2.0 * math.pi)
ENCODER_LOG_VAR_BOUND = 10.0
#: Score names of :meth:`GaussianVAE.scores`.
SCORES = ("recon_prob", "elbo")


class GaussianVAE(nn.Module):
    """Gaussian VAE for samples of shape ``(D,)`` (MLP) or ``(W, C)`` (1-D convolutions over time)."""

    def __init__(self, sample_shape: Sequence[int], latent_dim: int, hidden: Sequence[int], *,
                 kernel_size: int = 5, batch_norm: bool = False, min_variance: float = 1e-3) -> None:
        super().__init__()
        if not min_variance > 0:
            raise ValueError(f"min_variance must be > 0, got {min_variance!r}")
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.latent_dim = int(latent_dim)
        self.min_variance = float(min_variance)
        self.encoder = make_encoder(self.sample_shape, hidden, 2 * latent_dim, kernel_size=kernel_size,
                                    batch_norm=batch_norm)
        self.decoder = make_decoder(self.sample_shape, hidden, latent_dim, out_factor=2, kernel_size=kernel_size,
                                    batch_norm=batch_norm)

    @property
    def n_dims(self) -> int:
        return math.prod(self.sample_shape)

    def encode(self, x: torch.Tensor, nets: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)`` of q(z|x), each ``[N, latent_dim]``. ``nets``: an object whose ``encode``/``decode`` run
        the encoder/decoder networks in their place (:class:`genad_fast.nn.conv_plan.ConvNetPlan`), or None."""
        mu, raw = (self.encoder if nets is None else nets.encode)(x).chunk(2, dim=-1)
        b = ENCODER_LOG_VAR_BOUND
        return mu, b * torch.tanh(raw / b)

    def decode(self, z: torch.Tensor, nets: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m, log s²)`` of p(x|z), each ``[N, *sample_shape]`` (``nets``: as :meth:`encode`)."""
        mean, raw = (self.decoder if nets is None else nets.decode)(z).chunk(2, dim=-1)
        return mean, torch.log(F.softplus(raw) + self.min_variance)

    @staticmethod
    def kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """KL(N(μ, σ²) || N(0, I)) per sample, ``[N]``."""
        return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(-1)

    def log_likelihoods(self, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None,
                        noise_seed: int | None = None, nets: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise ``log p(x|z_l)`` ``[L, N, *sample_shape]`` for L = ``n_samples`` draws z_l ~ q(z|x)
        (one decoder pass over all L·N codes), and ``KL(q(z|x) || p(z))`` ``[N]``.

        The noise ε comes from ``generator`` (on x's device; None: the global torch RNG, which other threads
        share: the detectors always pass theirs). With ``noise_seed`` ε is keyed on each row's content instead
        (:mod:`genad_fast.nn.keyed_noise`): a row's draws, and so its score, are the same alone or among any
        other rows. ``nets``: see :meth:`encode`.
        """
        mu, log_var = self.encode(x, nets)
        if noise_seed is not None:
            n, latent = mu.shape
            eps = keyed_normals(row_keys(x), noise_seed, n_samples * latent, mu.dtype).view(n, n_samples, latent)
            eps = eps.transpose(0, 1)
        else:
            eps = torch.randn((n_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * log_var) * eps                       # [L, N, latent]
        mean, dec_log_var = self.decode(z.reshape(-1, mu.shape[-1]), nets)  # [L·N, *sample_shape]
        mean = mean.view(n_samples, *x.shape)
        dec_log_var = dec_log_var.view(n_samples, *x.shape)
        ll = -0.5 * (LOG_2PI + dec_log_var + (x - mean).square() * torch.exp(-dec_log_var))
        return ll, self.kl(mu, log_var)

    def scores(self, x: torch.Tensor, kind: str = "recon_prob", n_samples: int = 10,
               per_timestamp: bool = False, generator: torch.Generator | None = None,
               noise_seed: int | None = None, nets: Any = None) -> torch.Tensor:
        """Anomaly scores (higher = more anomalous), see the module docstring: ``[N]``, or ``[N, W]`` per timestamp.

        ``generator`` or ``noise_seed`` draws the latent samples (see :meth:`log_likelihoods`); ``nets``: see
        :meth:`encode`."""
        if kind not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {kind!r}")
        if per_timestamp and len(self.sample_shape) != 2:
            raise ValueError("per-timestamp scores need window samples (W, C)")
        ll, kl = self.log_likelihoods(x, n_samples, generator, noise_seed, nets)
        # Sum the log-densities over everything but the timestamp (per_timestamp) or over the whole sample.
        ll = ll.sum(-1) if per_timestamp else ll.flatten(2).sum(-1)  # [L, N, W] or [L, N]
        if kind == "elbo":
            kl_share = kl.unsqueeze(-1) / self.sample_shape[0] if per_timestamp else kl
            return -ll.mean(0) + kl_share
        return -(torch.logsumexp(ll, dim=0) - math.log(n_samples))


#: The seed of the held-out ELBO's keyed draws (:func:`elbo_loss` in eval mode).
VALIDATION_NOISE_SEED = 0x7E1B


def elbo_loss(model: GaussianVAE, batch: torch.Tensor, beta: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``-ELBO_β / D`` averaged over the batch, one latent sample per input: the training loss.

    While ``model`` trains, ε comes from ``generator``. In eval mode (the training loop's held-out loss) ε is keyed
    on each input and :data:`VALIDATION_NOISE_SEED` (:mod:`genad_fast.nn.keyed_noise`): common random numbers, so
    that the held-out loss of two epochs differs by the model alone, not by fresh draws, and early stopping does
    not take a lucky draw for an improvement (the same fix as DiffusionDetector's validation,
    docs/training_speed.md). Validation then leaves ``generator`` untouched."""
    seed = None if model.training else VALIDATION_NOISE_SEED
    ll, kl = model.log_likelihoods(batch, 1, generator, noise_seed=seed)
    neg_elbo = -ll[0].flatten(1).sum(-1) + beta * kl
    return neg_elbo.mean() / model.n_dims
