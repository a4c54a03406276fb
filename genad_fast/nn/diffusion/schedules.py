"""Noise schedules of denoising diffusion models, and the per-sample step coefficients of their samplers.

Forward process (Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020) over
N steps with variances β_0 .. β_{N-1} (index i here is the paper's t = i + 1):

    α_i = 1 - β_i,   ᾱ_i = Π_{j<=i} α_j,   ᾱ_{-1} = 1
    x_i = sqrt(ᾱ_i)·x_0 + sqrt(1 - ᾱ_i)·z,   z ~ N(0, I)

Schedules (:func:`make_betas`):

- ``"linear"``: β linear from β_start to β_end; defaults 1e-4 and 0.02 scaled by 1000/N, so any N gives
  the process of Ho et al.'s 1000 steps (the scaling of Nichol & Dhariwal 2021, ``get_named_beta_schedule``);
- ``"cosine"``: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/N + s)/(1 + s))·π/2), s = 0.008, β_i = min(1 - ᾱ_i/ᾱ_{i-1}, 0.999)
  (Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021, eq. 17);
- ``"quadratic"``: sqrt(β) linear from sqrt(β_start) to sqrt(β_end), defaults 1e-4 and 0.5 — the "quad"
  schedule of CSDI (Tashiro et al., NeurIPS 2021) and ImDiffusion (Chen et al., VLDB 2023), both at N = 50.

Reverse steps from index t down to s < t (s = -1 means "to x_0"), ε-parametrised, all of the form

    x_s = a·x_t + b·ε_θ(x_t, t) + c·z

so that one fused op (:func:`genad_fast.ops.diffusion_step`) runs any of them, with a, b, c given per sample:

- DDPM posterior (Ho et al. eq. 11, with the posterior variance β̃; on a sub-sequence of the steps through the
  "respaced" process of Nichol & Dhariwal §4: α' = ᾱ_t/ᾱ_s, β' = 1 - α'):
  a = 1/sqrt(α'),  b = -β' / (sqrt(α')·sqrt(1 - ᾱ_t)),  c = sqrt(β̃),  β̃ = (1 - ᾱ_s)/(1 - ᾱ_t)·β';
- DDIM (Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 and 16), with
  x̂_0 = (x_t - sqrt(1 - ᾱ_t)·ε)/sqrt(ᾱ_t) and σ = η·sqrt((1 - ᾱ_s)/(1 - ᾱ_t))·sqrt(1 - ᾱ_t/ᾱ_s):
  a = sqrt(ᾱ_s/ᾱ_t),  b = sqrt(1 - ᾱ_s - σ²) - sqrt(ᾱ_s/ᾱ_t)·sqrt(1 - ᾱ_t),  c = σ.
  η = 1 is the DDPM posterior above; η = 0 is deterministic.

Coefficients are computed in float64 and returned as float64 ``[B]`` tensors (one per sample, so samples may sit
at different timesteps); callers cast them to the data's dtype and device once, before a sampling loop.
"""
from __future__ import annotations

import math

import torch

__all__ = ["SCHEDULES", "SAMPLERS", "make_betas", "NoiseSchedule"]

SCHEDULES = ("linear", "cosine", "quadratic")
SAMPLERS = ("ddpm", "ddim")
COSINE_S = 0.008
MAX_BETA = 0.999


def make_betas(kind: str, n_steps: int, beta_start: float | None = None, beta_end: float | None = None) -> torch.Tensor:
    """β_0 .. β_{N-1} (float64 ``[N]``) of the named schedule; see the module docstring for the formulas.

    ``beta_start``/``beta_end`` override the defaults of ``"linear"`` and ``"quadratic"``; ``"cosine"`` has none.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if kind == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("the cosine schedule has no beta_start/beta_end (it is defined by ᾱ)")
        t = torch.arange(n_steps + 1, dtype=torch.float64)
        f = torch.cos((t / n_steps + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    if kind == "linear":
        scale = 1000.0 / n_steps
        start = 1e-4 * scale if beta_start is None else float(beta_start)
        end = 0.02 * scale if beta_end is None else float(beta_end)
    else:
        start = 1e-4 if beta_start is None else float(beta_start)
        end = 0.5 if beta_end is None else float(beta_end)
    if not (0.0 < start <= end < 1.0):
        raise ValueError(f"{kind} schedule needs 0 < beta_start <= beta_end < 1, got {start} and {end} "
                         f"(the default linear end 0.02·1000/N reaches 1 below N = 21 steps: pass beta_end)")
    if kind == "linear":
        return torch.linspace(start, end, n_steps, dtype=torch.float64)
    return torch.linspace(math.sqrt(start), math.sqrt(end), n_steps, dtype=torch.float64) ** 2


def _steps_tensor(t, name: str) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer step indices, got {t.dtype}")
    return t.reshape(-1).to(device="cpu", dtype=torch.int64)


class NoiseSchedule:
    """A β schedule with ᾱ, and the coefficient vectors of noising and of the DDPM/DDIM reverse steps.

    Step indices are 0-based (``0 .. n_steps-1``); ``-1`` stands for the clean data (ᾱ_{-1} = 1) as a target of a
    reverse step. Methods take integer step indices (a Python int, a sequence or a tensor, one per sample) and
    return float64 CPU tensors ``[B]``.
    """

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64).reshape(-1).cpu()
        if betas.numel() == 0 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a non-empty vector of values in (0, 1)")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        # index -1 -> 1: position 0 of the padded table
        self._alpha_bars_padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars])

    @classmethod
    def from_name(cls, kind: str, n_steps: int, beta_start: float | None = None,
                  beta_end: float | None = None) -> "NoiseSchedule":
        return cls(make_betas(kind, n_steps, beta_start, beta_end))

    @property
    def n_steps(self) -> int:
        return int(self.betas.numel())

    def alpha_bar(self, t) -> torch.Tensor:
        """ᾱ_t per sample (t = -1 gives 1)."""
        t = _steps_tensor(t, "t")
        if t.numel() and (int(t.min()) < -1 or int(t.max()) >= self.n_steps):
            raise ValueError(f"step indices must be in [-1, {self.n_steps - 1}], got {t.tolist()}")
        return self._alpha_bars_padded[t + 1]

    def _pair(self, t, s) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = _steps_tensor(t, "t"), _steps_tensor(s, "s")
        if t.numel() != s.numel():
            t, s = torch.broadcast_tensors(t, s)
        if t.numel() and int(t.min()) < 0:
            raise ValueError(f"a reverse step starts at an index >= 0, got {t.tolist()}")
        if bool((s >= t).any()):
            raise ValueError(f"a reverse step goes from t to s < t, got t={t.tolist()}, s={s.tolist()}")
        return self.alpha_bar(t), self.alpha_bar(s)

    def add_noise_coefficients(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) = (sqrt(ᾱ_t), sqrt(1 - ᾱ_t)): x_t = a·x_0 + b·z."""
        ab = self.alpha_bar(t)
        return ab.sqrt(), (1.0 - ab).sqrt()

    def ddpm_coefficients(self, t, s) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, b, c) of the DDPM posterior step t -> s (s = t - 1 for the original chain), see the module docstring."""
        ab_t, ab_s = self._pair(t, s)
        alpha = ab_t / ab_s
        beta = 1.0 - alpha
        a = 1.0 / alpha.sqrt()
        b = -beta / (alpha.sqrt() * (1.0 - ab_t).sqrt())
        c = ((1.0 - ab_s) / (1.0 - ab_t) * beta).clamp(min=0.0).sqrt()
        return a, b, c

    def ddim_coefficients(self, t, s, eta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, b, c) of the DDIM step t -> s with stochasticity η (0: deterministic, 1: DDPM posterior)."""
        if not (isinstance(eta, (int, float)) and 0.0 <= float(eta) <= 1.0):
            raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
        ab_t, ab_s = self._pair(t, s)
        sigma = float(eta) * ((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s)).clamp(min=0.0).sqrt()
        a = (ab_s / ab_t).sqrt()
        b = (1.0 - ab_s - sigma ** 2).clamp(min=0.0).sqrt() - a * (1.0 - ab_t).sqrt()
        return a, b, sigma

    def step_coefficients(self, sampler: str, t, s, eta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``ddpm_coefficients(t, s)`` or ``ddim_coefficients(t, s, eta)`` by name."""
        if sampler == "ddpm":
            return self.ddpm_coefficients(t, s)
        if sampler == "ddim":
            return self.ddim_coefficients(t, s, eta)
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")

    def timesteps(self, start: int, k: int) -> list[int]:
        """The k + 1 indices of a k-step reverse chain from ``start`` to the data: start = τ_k > ... > τ_1 = 0, -1.

        τ are evenly spaced (rounded) over [0, start], so the chain starts exactly at the noise level ``start``;
        k <= start + 1 keeps them distinct. k = start + 1 is the full chain start, start - 1, ..., 0.
        """
        for name, value in (("start", start), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not 0 <= start < self.n_steps:
            raise ValueError(f"start must be a step index in [0, {self.n_steps - 1}], got {start}")
        if not 1 <= k <= start + 1:
            raise ValueError(f"k must be in [1, start + 1] = [1, {start + 1}] (distinct steps), got {k}")
        if k == 1:
            taus = [start]
        else:
            taus = [int(round(j * start / (k - 1))) for j in range(k - 1, -1, -1)]
        return taus + [-1]
