"""Scorers: modules from normalised rows ``[N, D]`` / windows ``[N, W, C]`` to the detector's scores.

Two kinds:

- :class:`HookScorer` runs the detector's own ``_score_context`` and ``_score_model`` hooks (base.py's hook
  contract) inside a call on the ``eager`` backend (:class:`genad_fast.ops.Dispatch`): every fused op takes its
  eager twin (:mod:`genad_fast.reference`), which exporters trace into plain ATen ops. Flow (NLL and
  typicality), autoencoder, Deep SVDD, f-AnoGAN's encoder path and PCA score this way: the exported graph is the
  detector's scoring code itself.
- Scorers that restate a score whose eager code does not trace with a dynamic batch size: the VAE (its
  latent draws are keyed on each row, :class:`~genad_fast.export._keyed_noise.KeyedNormals`, and it decodes in
  chunks), kNN and KDE (their reference op works in query chunks and uses ``torch.cdist``, which the ONNX
  exporter lacks). The parity tests hold them to the detector's scores.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from genad_fast.detectors._call import Call, thread_value
from genad_fast.detectors._hook_helpers import stream_seed
from genad_fast.export._keyed_noise import KeyedNormals
from genad_fast.nn.vae import LOG_2PI

__all__ = ["HookScorer", "KDEScorer", "KNNScorer", "VAEScorer"]


class HookScorer(nn.Module):
    """``det._score_model(z)`` under ``det._score_context``, in a scoring call on the eager backend.

    The detector's networks are registered as submodules, so exporters see their weights as parameters; other
    fitted tensors (PCA's components, a flow's frozen dimensions) become constants of the graph."""

    def __init__(self, det) -> None:
        super().__init__()
        self._det = (det,)  # a tuple: the detector itself is not a module
        for name, value in vars(det).items():
            if isinstance(value, nn.Module):
                self.add_module(name, value)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        det = self._det[0]
        call = Call("score", "eager", det._torch_generator, torch.device("cpu"))
        with thread_value(det, "call", call), det._score_context(z.dtype):
            return det._score_model(z)


class VAEScorer(nn.Module):
    """:meth:`genad_fast.nn.vae.GaussianVAE.scores` with the keyed draws of ``VAEDetector._score_model``.

    The draws: ε = ``keyed_normals(row_keys(z), seed, L·latent)`` with seed = ``stream_seed(seed_,
    "latent-samples")``, exactly the detector's, so the Monte Carlo estimate (reconstruction probability or ELBO)
    is the same number. The table of normals is a constant of the graph (at most 2^22 numbers, 16 MiB)."""

    def __init__(self, det) -> None:
        super().__init__()
        self.model = det.model_
        self.kind = str(det.anomaly_score)
        self.n_samples = int(det.n_samples)
        self.per_timestamp = bool(det.is_series and det.per_timestamp)
        self.noise = KeyedNormals(stream_seed(det.seed_, "latent-samples"), self.n_samples * self.model.latent_dim,
                                  self.model.n_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L, model = self.n_samples, self.model
        # GaussianVAE.log_likelihoods with its noise_seed draws (kept in step with it by the parity tests)
        mu, log_var = model.encode(x)
        latent = mu.shape[-1]
        eps = self.noise(x).view(x.shape[0], L, latent).transpose(0, 1)
        z = mu + torch.exp(0.5 * log_var) * eps                        # [L, N, latent]
        mean, dec_log_var = model.decode(z.reshape(-1, latent))
        mean = mean.view(L, *x.shape)
        dec_log_var = dec_log_var.view(L, *x.shape)
        ll = -0.5 * (LOG_2PI + dec_log_var + (x - mean).square() * torch.exp(-dec_log_var))
        kl = model.kl(mu, log_var)
        # GaussianVAE.scores
        ll = ll.sum(-1) if self.per_timestamp else ll.flatten(2).sum(-1)
        if self.kind == "elbo":
            kl_share = kl.unsqueeze(-1) / model.sample_shape[0] if self.per_timestamp else kl
            return -ll.mean(0) + kl_share
        return -(torch.logsumexp(ll, dim=0) - math.log(L))


class _ReferenceSetScorer(nn.Module):
    """Squared distances of query rows to the reference set, all pairs at once (memory N·M: score in batches
    that fit), in float64 from ``|q|² + |r|² - 2 q·r``: float64 keeps its cancellation error (~1e-16 relative to
    |q|² + |r|²) below the float32 rounding of the detector's own ops."""

    def __init__(self, det) -> None:
        super().__init__()
        refs = det.reference_.detach().to("cpu")
        self.register_buffer("refs", refs.clone())
        self.register_buffer("ref_sq", refs.to(torch.float64).square().sum(1))

    def sq_distances(self, z: torch.Tensor) -> torch.Tensor:
        q = z.reshape(z.shape[0], -1).to(torch.float64)
        cross = q @ self.refs.to(torch.float64).T
        return (q.square().sum(1, keepdim=True) + self.ref_sq - 2.0 * cross).clamp_min(0.0)


class KNNScorer(_ReferenceSetScorer):
    """kNN distance score (:class:`~genad_fast.detectors.knn.KNNDetector`): the k-th nearest distance or the mean
    of the k nearest."""

    def __init__(self, det) -> None:
        super().__init__(det)
        self.k = int(det.n_neighbors)
        self.method = str(det.method)
        if self.k > self.refs.shape[0]:
            raise ValueError(f"n_neighbors={self.k} is larger than the {self.refs.shape[0]} reference points the "
                             f"model holds; refit")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d = torch.topk(self.sq_distances(z), self.k, dim=1, largest=False, sorted=True).values.sqrt()
        return d[:, -1] if self.method == "largest" else d.mean(1)


class KDEScorer(_ReferenceSetScorer):
    """Negative Gaussian KDE log-density (:class:`~genad_fast.detectors.kde.KDEDetector`), as
    :func:`genad_fast.ops.kde_logpdf`: ``-(logsumexp_j(-d²/(2h²)) - log M - (D/2)·log(2πh²))``."""

    def __init__(self, det) -> None:
        super().__init__(det)
        h, (M, D) = float(det.bandwidth_), self.refs.shape
        self.scale = -0.5 / (h * h)
        self.log_norm = -math.log(M) - 0.5 * D * (math.log(2.0 * math.pi) + 2.0 * math.log(h))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        log_k = self.sq_distances(z) * self.scale
        top = log_k.amax(dim=1, keepdim=True)  # a log-sum-exp that cannot underflow to log(0) far from every point
        lse = top.squeeze(1) + torch.log(torch.exp(log_k - top).sum(dim=1))
        return -(lse + self.log_norm)
