"""The denoising loss of whole windows: DiffusionDetector's window-level evidence (``elbo_levels``).

The reconstruction error (:mod:`genad_fast.nn.diffusion.sampler`) restores a series from one low noise level, so
a pattern that is plausible stretch by stretch (a changed shape or frequency within the period) comes back as it
was and leaves little error. The training objective itself, evaluated on a test window, asks how well the model
explains the window as a whole. DDPM's simplified objective (Ho et al., NeurIPS 2020, eq. 14), the ELBO with
its per-level weights dropped, is

    L(x) = E_{t, z} || z - ε_θ( sqrt(ᾱ_t)·x + sqrt(1 - ᾱ_t)·z, t ) ||²  /  (C·W)

and is low where the model assigns the window a high likelihood. Here the expectation over t is a grid of
``levels`` steps t_k = round(N·k / (levels + 1)), k = 1..levels, evenly over the chain without its ends. Each
level uses one noise draw z_k [C, W], the same for every window: with common random numbers, the windows'
losses differ by what the windows hold, not by the draws. Windows lie on a grid of stride max(1, W // 4), the last
one ending at T. Each timestamp gets the mean loss of the windows covering it
(:func:`genad_fast.series.windows_to_timestamps`).

Used alone, this score misses what a likelihood misses (Kirichenko et al., NeurIPS 2020). Simple inputs, such as a
held level or a smoothed stretch, get a low loss. It also spreads a spike over 2W - 1 timestamps. The detector
takes it as a third evidence beside the point and window reconstruction errors (``score_reduction="multiscale"``).
"""
from __future__ import annotations

import torch

from genad_fast.nn.diffusion.denoiser import Denoiser
from genad_fast.nn.diffusion.plan import DenoiserInference
from genad_fast.series import WindowGrid

__all__ = ["STRIDE_DIVISOR", "WindowLoss", "loss_levels"]

#: Windows at stride W // STRIDE_DIVISOR: each timestamp is covered by about STRIDE_DIVISOR windows.
STRIDE_DIVISOR = 4
#: Windows per network call.
_BATCH = 256


def loss_levels(n_steps: int, levels: int) -> list[int]:
    """The 0-based steps t_k = round(N·k / (levels + 1)) - 1 for k = 1..levels, clipped to [0, N - 1]."""
    return [min(n_steps - 1, max(0, round(n_steps * k / (levels + 1)) - 1)) for k in range(1, levels + 1)]


class WindowLoss:
    """L(x) of a fixed denoiser at fixed levels, for the series of one scoring call, in float32.

    ``fused``: the network runs as the sampler's inference plan (:class:`~genad_fast.nn.diffusion.plan.
    DenoiserInference`: the module's ε̂ to float rounding), as the sampler runs it where the call's backend has
    compiled kernels; otherwise (the eager backend) as the module. The plan and its per-level step constants are
    built once here (about 10 ms for the default denoiser) and reused for every series of the call. The plan's
    buffers are written by every network call, so an instance belongs to one thread.
    """

    def __init__(self, model: Denoiser, alpha_bars: torch.Tensor, levels: list[int], fused: bool = True):
        self.levels = list(levels)
        self.dtype = torch.float32
        self.model = model
        self.plan = DenoiserInference(model, self.dtype) if fused else None
        device = alpha_bars.device
        with torch.no_grad():
            steps = model.step_embedding(torch.tensor(self.levels, device=device))  # [levels, E]
            self.per_level = [(self.plan.step_constants(steps[k]) if fused else steps[k:k + 1],
                               alpha_bars[t].to(self.dtype)) for k, t in enumerate(self.levels)]

    def _eps(self, x_t: torch.Tensor, step: object) -> torch.Tensor:
        if self.plan is not None:
            return self.plan(x_t.contiguous(), step)  # a view into the plan's buffer, read before the next call
        return self.model(x_t, step=step.expand(x_t.shape[0], -1))

    def __call__(self, series: torch.Tensor, window: int, noise: torch.Tensor) -> torch.Tensor:
        """Per-timestamp L(x) of the windows of ``series`` [T, C] (module docstring), float64 ``[T]``.

        ``noise`` is ``[len(levels), C, W]``, the draw of each level. ``window`` is clipped to T, so a series as
        short as a window is one window."""
        T = series.shape[0]
        W = min(int(window), T)
        grid = WindowGrid(T, W, max(1, W // STRIDE_DIVISOR))
        draws = noise.to(device=series.device, dtype=self.dtype)
        losses = []
        with torch.no_grad():
            for batch in grid.batches(series, _BATCH):  # views [b, W, C], the end-aligned window last
                x0 = batch.to(self.dtype).transpose(1, 2)  # [b, C, W]
                total = torch.zeros(x0.shape[0], dtype=torch.float64, device=series.device)
                for (step, ab), z in zip(self.per_level, draws):
                    x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * z
                    total += ((self._eps(x_t, step) - z) ** 2).mean(dim=(1, 2)).double()
                losses.append(total / len(self.levels))
        return grid.to_timestamps(torch.cat(losses), reduce="mean")
