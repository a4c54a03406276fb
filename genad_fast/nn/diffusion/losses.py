"""Training objectives of the denoisers: ε-prediction on windows ``[b, W, C]`` (the batches of
:func:`genad_fast.nn.training.fit`).

``ReconstructLoss`` is DDPM's simplified objective (Ho et al., NeurIPS 2020, eq. 14): t uniform over the N steps,
x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·z by the fused :func:`genad_fast.ops.add_noise`, and the mean squared error
of the predicted noise. ``ImputeLoss`` is CSDI's (Tashiro et al., NeurIPS 2021) as ImDiffusion (Chen et al.,
VLDB 2023) trains it: a random mask per window, the conditional denoiser sees the observed points, and the error
counts on the masked (imputed) points only.

**Validation draws are keyed on the window.** Early stopping compares the held-out loss of one epoch with the best
so far. With fresh t and z at every validation, that loss moves with the draws as much as with the model: a few
hundred held-out windows at random steps of a 50-step schedule. In eval mode (the training loop's validation) the
losses therefore draw t, z and the masks as functions of each window's content and fixed seeds
(:mod:`genad_fast.nn.keyed_noise`): every epoch scores the same windows at the same noise (common random numbers),
so a change of the held-out loss is a change of the model. Training batches draw from ``generator`` as before.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser
from genad_fast.nn.keyed_noise import keyed_integers, keyed_normals, row_keys
from genad_fast.ops import Dispatch

__all__ = ["ImputeLoss", "ReconstructLoss"]

# Seeds of the validation draws (fixed: the same draws in every epoch, run and process), one per draw.
_SEED_T, _SEED_Z, _SEED_KIND, _SEED_PHASE, _SEED_MASK = 0x7A11, 0x2E05, 0x61D0, 0x9A5E, 0x3A5C


def _validation_keys(model: Denoiser | ConditionalDenoiser, x0: torch.Tensor) -> torch.Tensor | None:
    """Each window's key when ``model`` is validated (eval mode), None while it trains."""
    return None if model.training else row_keys(x0)


class ReconstructLoss:
    """ε-prediction MSE: t uniform over the N steps, x_t from the fused add_noise.

    Its random numbers (t, z, and the masks of :class:`ImputeLoss`) come from ``generator``, on the data's
    device; ``backend`` is the fit call's :class:`~genad_fast.ops.Dispatch` (or a backend name)."""

    def __init__(self, alpha_bar: torch.Tensor, backend: Dispatch | str | None, generator: torch.Generator):
        self.alpha_bar = alpha_bar
        self.backend = backend
        self.generator = generator

    def noisy(self, x0: torch.Tensor, keys: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_t, z and t for the windows x0 ``[b, C, W]``: drawn from ``generator``, or keyed on ``keys``."""
        b = x0.shape[0]
        if keys is None:
            t = torch.randint(0, self.alpha_bar.numel(), (b,), generator=self.generator, device=x0.device)
            z = torch.randn(x0.shape, generator=self.generator, device=x0.device, dtype=x0.dtype)
        else:
            t = keyed_integers(keys, _SEED_T, self.alpha_bar.numel())
            z = keyed_normals(keys, _SEED_Z, x0[0].numel(), x0.dtype).view_as(x0)
        ab = self.alpha_bar[t]
        x_t = ops.add_noise(x0.reshape(b, -1), ab.sqrt(), (1.0 - ab).sqrt(), 0, 0, noise=z.reshape(b, -1),
                            backend=self.backend).view_as(x0)
        return x_t, z, t

    def __call__(self, model: Denoiser, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.transpose(1, 2).contiguous()  # [b, C, W]
        x_t, z, t = self.noisy(x0, _validation_keys(model, x0))
        return torch.mean((model(x_t, t, backend=self.backend) - z) ** 2)


class ImputeLoss(ReconstructLoss):
    """CSDI/ImDiffusion training: a random mask per window (a grid mask of ``block`` timestamps with random phase,
    or each point with probability 1/2, as allowed by ``kinds``); ε-prediction MSE on the masked points only."""

    def __init__(self, alpha_bar: torch.Tensor, backend: Dispatch | str | None, generator: torch.Generator,
                 kinds: tuple[str, ...], block: int):
        super().__init__(alpha_bar, backend, generator)
        self.kinds = kinds
        self.block = block

    def target_mask(self, b: int, C: int, W: int, device: torch.device,
                    keys: torch.Tensor | None = None) -> torch.Tensor:
        """The masked (target) points ``[b, C, W]``: drawn from ``generator``, or keyed on ``keys``."""
        if keys is None:
            kind = torch.randint(0, len(self.kinds), (b, 1, 1), generator=self.generator, device=device)
            phase = torch.randint(0, 2 * self.block, (b, 1, 1), generator=self.generator, device=device)
            rand = (torch.rand(b, C, W, generator=self.generator, device=device) < 0.5).to(torch.float32)
        else:
            kind = keyed_integers(keys, _SEED_KIND, len(self.kinds)).view(b, 1, 1)
            phase = keyed_integers(keys, _SEED_PHASE, 2 * self.block).view(b, 1, 1)
            rand = (keyed_normals(keys, _SEED_MASK, C * W) > 0).view(b, C, W).to(torch.float32)
        t = torch.arange(W, device=device).view(1, 1, W)
        grid = (((t + phase) // self.block) % 2).to(torch.float32).expand(b, C, W)
        pick_grid = torch.tensor([k == "grid" for k in self.kinds], device=device)[kind]
        return torch.where(pick_grid, grid, rand)

    def __call__(self, model: ConditionalDenoiser, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.transpose(1, 2).contiguous()
        keys = _validation_keys(model, x0)
        target = self.target_mask(x0.shape[0], x0.shape[1], x0.shape[2], x0.device, keys)
        x_t, z, t = self.noisy(x0, keys)
        err = (model(x_t, x0, 1.0 - target, t, backend=self.backend) - z) ** 2
        return (err * target).sum() / target.sum().clamp(min=1.0)
