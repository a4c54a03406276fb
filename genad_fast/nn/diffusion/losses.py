"""Training objectives of the denoisers: ε-prediction on windows ``[b, W, C]`` (the batches of
:func:`genad_fast.nn.training.fit`).

``ReconstructLoss`` is DDPM's simplified objective (Ho et al., NeurIPS 2020, eq. 14): t uniform over the N steps,
x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·z by the fused :func:`genad_fast.ops.add_noise`, and the mean squared error
of the predicted noise. ``ImputeLoss`` is CSDI's (Tashiro et al., NeurIPS 2021) as ImDiffusion (Chen et al.,
VLDB 2023) trains it: a random mask per window, the conditional denoiser sees the observed points, and the error
counts on the masked (imputed) points only.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser
from genad_fast.ops import Dispatch

__all__ = ["ImputeLoss", "ReconstructLoss"]


class ReconstructLoss:
    """ε-prediction MSE: t uniform over the N steps, x_t from the fused add_noise.

    Its random numbers (t, z, and the masks of :class:`ImputeLoss`) come from ``generator``, on the data's
    device; ``backend`` is the fit call's :class:`~genad_fast.ops.Dispatch` (or a backend name)."""

    def __init__(self, alpha_bar: torch.Tensor, backend: Dispatch | str | None, generator: torch.Generator):
        self.alpha_bar = alpha_bar
        self.backend = backend
        self.generator = generator

    def noisy(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x0.shape[0]
        t = torch.randint(0, self.alpha_bar.numel(), (b,), generator=self.generator, device=x0.device)
        ab = self.alpha_bar[t]
        z = torch.randn(x0.shape, generator=self.generator, device=x0.device, dtype=x0.dtype)
        x_t = ops.add_noise(x0.reshape(b, -1), ab.sqrt(), (1.0 - ab).sqrt(), 0, 0, noise=z.reshape(b, -1),
                            backend=self.backend).view_as(x0)
        return x_t, z, t

    def __call__(self, model: Denoiser, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.transpose(1, 2).contiguous()  # [b, C, W]
        x_t, z, t = self.noisy(x0)
        return torch.mean((model(x_t, t) - z) ** 2)


class ImputeLoss(ReconstructLoss):
    """CSDI/ImDiffusion training: a random mask per window (a grid mask of ``block`` timestamps with random phase,
    or each point with probability 1/2, as allowed by ``kinds``); ε-prediction MSE on the masked points only."""

    def __init__(self, alpha_bar: torch.Tensor, backend: Dispatch | str | None, generator: torch.Generator,
                 kinds: tuple[str, ...], block: int):
        super().__init__(alpha_bar, backend, generator)
        self.kinds = kinds
        self.block = block

    def target_mask(self, b: int, C: int, W: int, device: torch.device) -> torch.Tensor:
        kind = torch.randint(0, len(self.kinds), (b, 1, 1), generator=self.generator, device=device)
        phase = torch.randint(0, 2 * self.block, (b, 1, 1), generator=self.generator, device=device)
        t = torch.arange(W, device=device).view(1, 1, W)
        grid = (((t + phase) // self.block) % 2).to(torch.float32).expand(b, C, W)
        rand = (torch.rand(b, C, W, generator=self.generator, device=device) < 0.5).to(torch.float32)
        pick_grid = torch.tensor([k == "grid" for k in self.kinds], device=device)[kind]
        return torch.where(pick_grid, grid, rand)

    def __call__(self, model: ConditionalDenoiser, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.transpose(1, 2).contiguous()
        target = self.target_mask(x0.shape[0], x0.shape[1], x0.shape[2], x0.device)
        x_t, z, t = self.noisy(x0)
        err = (model(x_t, x0, 1.0 - target, t) - z) ** 2
        return (err * target).sum() / target.sum().clamp(min=1.0)
