"""GAN training for AnoGAN / f-AnoGAN: WGAN-GP (f-AnoGAN's encoder: :mod:`genad_fast.nn.gan.encoder`).

Why WGAN-GP. AnoGAN (Schlegl et al., IPMI 2017) trained a DCGAN with the original minimax loss, which
is notoriously unstable (mode collapse, vanishing generator gradients once the discriminator wins)
and needs per-dataset tuning. f-AnoGAN (Schlegl et al., Medical Image Analysis 2019) switched to the
Wasserstein GAN with gradient penalty (Gulrajani et al., "Improved Training of Wasserstein GANs",
NeurIPS 2017), which trains reliably with one set of hyper-parameters. We follow f-AnoGAN, with
the paper's Algorithm 1, n_critic = 5 and penalty weight 10 as in the paper, Adam beta2 = 0.9 as in
the paper, but lr 1e-3 and beta1 = 0.5 instead of 1e-4 and 0: the paper's rate is for image networks
trained for 10^5 generator steps, while these small networks on standardised rows or windows get a
few thousand; at the 10x rate, momentum (beta1 = 0.5, the DCGAN value) damps the oscillation of the
two players (a 2-D Gaussian with 32-unit networks, 80 epochs: 4 of 4 seeds converge with beta1 = 0.5,
2 of 4 with beta1 = 0):

    critic:     L_D = E[D(G(z))] - E[D(x)] + gp_weight * E[(||grad_x^ D(x^)||_2 - 1)^2],
                x^ = eps * x + (1 - eps) * G(z),  eps ~ U[0, 1] per sample
    generator:  L_G = -E[D(G(z))]                        (one step after every n_critic critic steps)

with z ~ N(0, I). An epoch is one pass of the critic over the training data (one real batch per
critic step); the n_critic count runs over the whole fit, not per epoch, so a table of fewer than
n_critic batches still trains its generator (a fit that would make no generator step is an error).
Losses are logged per epoch at DEBUG level on the ``genad_fast`` logger and shown on the progress bar;
a non-finite loss raises :class:`~genad_fast.nn.training.TrainingDivergedError`.

Shards and data parallelism (:func:`train_wgan_gp_shards`): as :func:`genad_fast.nn.training.fit_shards`, a
critic step's real batch is one slice of every shard (:class:`~genad_fast.nn.training.BatchPlan`), each shard's
fake samples, interpolation weights and generator codes come from the shard's own generator, and each process
backpropagates its shards' share of the batch means (the critic loss of a slice weighted by its size, the
generator loss by the shard's share of the ``batch_size`` codes), averaged over the processes by the
:class:`~genad_fast.nn.training.GradientSync`. Both networks are wrapped (the critic's loss, penalty included, is
one module's forward; the generator's loss another's, the critic a frozen non-member): the penalty's
``torch.autograd.grad(..., create_graph=True)`` differentiates with respect to the interpolates only, so
DistributedDataParallel sees each critic weight's gradient once, in the backward of the critic loss.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from genad_fast.nn.adam import make_adam
from genad_fast.nn.gan.networks import freeze
from genad_fast.nn.training import (BatchPlan, GradientSync, LocalSync, Shard, TrainingDivergedError, shard_table,
                                   zero_loss)

logger = logging.getLogger("genad_fast")

__all__ = ["GANConfig", "GANHistory", "gradient_penalty", "train_wgan_gp", "train_wgan_gp_shards"]


@dataclass
class GANConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3                # Gulrajani et al., Algorithm 1: 1e-4 (see the module docstring)
    beta1: float = 0.5              # paper: 0
    beta2: float = 0.9              # paper: 0.9
    n_critic: int = 5
    gp_weight: float = 10.0
    ema: float = 0.995              # generator weight averaging (0 = off): see train_wgan_gp


@dataclass
class GANHistory:
    critic_loss: list[float] = field(default_factory=list)        # per epoch, mean over critic steps
    generator_loss: list[float] = field(default_factory=list)     # per epoch, mean over generator steps
    gradient_penalty: list[float] = field(default_factory=list)   # unweighted E[(||grad|| - 1)^2]
    wasserstein: list[float] = field(default_factory=list)        # E[D(x)] - E[D(G(z))], the critic's estimate
    train_seconds: list[float] = field(default_factory=list)      # wall time of each epoch
    n_train: int = 0                                               # training samples (all shards), per epoch
    generator_steps: int = 0                                       # over the whole fit


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """E[(||grad_x^ D(x^)||_2 - 1)^2] on random interpolates of real and fake samples (Gulrajani et al., eq. 3)."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device,
                     dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


class _CriticLoss(nn.Module):
    """The critic step's loss as a module's forward (what a data-parallel wrapper averages): for one slice,
    ``(L_D, gradient penalty, Wasserstein estimate)``; ``real=None`` gives 0 over every critic weight."""

    def __init__(self, critic: nn.Module, gp_weight: float):
        super().__init__()
        self.critic = critic
        self.gp_weight = gp_weight

    def forward(self, real: torch.Tensor | None, fake: torch.Tensor | None, rng: torch.Generator | None):
        if real is None:
            zero = zero_loss(self.critic)
            return zero, zero.detach(), zero.detach()
        d_real, d_fake = self.critic(real).mean(), self.critic(fake).mean()
        gp = gradient_penalty(self.critic, real, fake, rng)
        return d_fake - d_real + self.gp_weight * gp, gp, d_real - d_fake


class _GeneratorLoss(nn.Module):
    """The generator step's loss ``-E[D(G(z))]`` as a module's forward; the critic is held outside the module's
    members (frozen during the step, its weights are not this step's)."""

    def __init__(self, generator: nn.Module, critic: nn.Module):
        super().__init__()
        self.generator = generator
        self._critic = (critic,)

    def forward(self, z: torch.Tensor | None) -> torch.Tensor:
        if z is None:
            return zero_loss(self.generator)
        return -self._critic[0](self.generator(z)).mean()


def train_wgan_gp(generator: nn.Module, critic: nn.Module, data: torch.Tensor, config: GANConfig,
                  rng: torch.Generator, *, verbose: bool = True, desc: str = "WGAN-GP") -> GANHistory:
    """Train ``generator`` (``latent_dim`` attribute) and ``critic`` on ``data`` rows/windows by WGAN-GP.

    ``data`` is ``[N, *sample_shape]`` on the networks' device (a view is fine: batches are gathered by
    index). ``rng`` draws the batch order, latent codes and interpolation weights, so the same state
    gives the same networks on the same backend and thread count. Both networks end in eval mode.

    Generator averaging (``config.ema``, Yazıcı et al., "The Unusual Effectiveness of Averaging in GAN
    Training", ICLR 2019): the returned generator holds an exponential moving average of its weights over
    the generator steps (a running mean while 1/k > 1 − ema). WGAN-GP at this learning rate circles its
    equilibrium rather than settling: on a 2-D Gaussian the last iterate's energy distance to the data
    ranged 0.11–2.96 over six seeds, the average's 0.02–0.14 (0.995: about 200 generator steps).
    """
    if data.shape[0] < 1:
        raise ValueError("train_wgan_gp needs at least one training sample")
    return train_wgan_gp_shards(generator, critic, [Shard(data, rng)], config, verbose=verbose, desc=desc)


def train_wgan_gp_shards(generator: nn.Module, critic: nn.Module, shards: Sequence[Shard], config: GANConfig, *,
                         sync: GradientSync | None = None, verbose: bool = True,
                         desc: str = "WGAN-GP") -> GANHistory:
    """:func:`train_wgan_gp` over this process's ``shards`` (each with its generator: batch order, codes,
    interpolation weights); ``sync`` joins the processes holding the others (see the module docstring)."""
    from tqdm.auto import tqdm

    if not 0.0 <= config.ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {config.ema}")
    sync = sync if sync is not None else LocalSync(len(shards))
    world = sync.world_size
    sizes = shard_table(sync, shards, [(sh.data.shape[0],) for sh in shards], torch.int64)[:, 0].tolist()
    n = sum(sizes)
    bs = min(int(config.batch_size), n)
    plan = BatchPlan(sizes, bs)
    bounds = [plan.bounds(sh.index) for sh in shards]
    codes = plan.shares(bs)  # the generator step's bs latent codes, shared out over the shards
    device = shards[0].data.device
    betas = (config.beta1, config.beta2)
    opt_d = make_adam(critic.parameters(), lr=config.lr, betas=betas)  # torch.optim.Adam's update (nn.adam)
    opt_g = make_adam(generator.parameters(), lr=config.lr, betas=betas)
    critic_loss = sync.wrap(_CriticLoss(critic, config.gp_weight))
    generator_loss = sync.wrap(_GeneratorLoss(generator, critic))
    history = GANHistory(n_train=n)
    latent = int(generator.latent_dim)

    def noise(k: int, rng: torch.Generator) -> torch.Tensor:
        return torch.randn(k, latent, generator=rng, device=device)

    def sync_ctx(wrapped: nn.Module, i: int, count: int) -> contextlib.AbstractContextManager:
        # one gradient average per step: the earlier forwards of this process go without it
        return sync.no_sync(wrapped) if i < count - 1 else contextlib.nullcontext()

    generator.train()
    critic.train()
    gen_params = list(generator.parameters())
    averaged = [p.detach().clone() for p in gen_params] if config.ema > 0 else None
    if config.epochs * plan.steps < config.n_critic:
        raise ValueError(f"{desc}: {config.epochs} epoch(s) of {plan.steps} critic step(s) on {n} samples make no "
                         f"generator step (one follows every n_critic={config.n_critic} critic steps); raise epochs "
                         f"to at least {math.ceil(config.n_critic / plan.steps)}")
    # Critic steps are counted over the whole fit, not per epoch: an epoch of fewer than n_critic batches (a table
    # of at most 256 rows at batch 64) made no generator step at all when the count restarted every epoch, and the
    # generator stayed at its initialisation (AnoGAN AUROC 0.36 on a digits class, below chance).
    total_d_steps = total_g_steps = 0
    bar = tqdm(range(config.epochs), desc=desc, disable=not (verbose and sync.is_main), leave=False, unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        orders = [torch.randperm(sh.data.shape[0], generator=sh.generator, device=sh.generator.device).to(device)
                  for sh in shards]
        # Sums stay tensors: one host sync per epoch, not per step. [critic, penalty, Wasserstein, generator]
        sums = torch.zeros(4, device=device)
        d_steps = g_steps = 0
        for k in range(plan.steps):
            B = int(plan.global_sizes[k])
            if B == 0:
                continue
            pieces = [(j, orders[j][int(b[k]):int(b[k + 1])]) for j, b in enumerate(bounds) if b[k + 1] > b[k]]
            terms = []
            for i, (j, idx) in enumerate(pieces):
                real = shards[j].data[idx]
                with torch.no_grad():
                    fake = generator(noise(real.shape[0], shards[j].generator))
                with sync_ctx(critic_loss, i, len(pieces)):
                    loss_d, gp, w = critic_loss(real, fake, shards[j].generator)
                weight = idx.numel() / B
                terms.append(loss_d * (world * weight))
                sums[:3] += torch.stack([loss_d.detach(), gp.detach(), w.detach()]) * weight
            if not terms:
                terms.append(critic_loss(None, None, None)[0])
            opt_d.zero_grad(set_to_none=True)
            (terms[0] if len(terms) == 1 else sum(terms)).backward()
            opt_d.step()
            d_steps += 1
            total_d_steps += 1
            if total_d_steps % config.n_critic == 0:
                for p in critic.parameters():  # no critic gradients on the generator step
                    p.requires_grad_(False)
                mine = [(j, int(codes[sh.index])) for j, sh in enumerate(shards) if codes[sh.index] > 0]
                terms = []
                for i, (j, c) in enumerate(mine):
                    z = noise(c, shards[j].generator)
                    with sync_ctx(generator_loss, i, len(mine)):
                        loss_g = generator_loss(z)
                    terms.append(loss_g * (world * c / bs))
                    sums[3] += loss_g.detach() * (c / bs)
                if not terms:
                    terms.append(generator_loss(None))
                opt_g.zero_grad(set_to_none=True)
                (terms[0] if len(terms) == 1 else sum(terms)).backward()
                opt_g.step()
                total_g_steps += 1
                if averaged is not None:
                    # Running mean until 1/k < 1 - ema, then the exponential average: no pull towards the
                    # untrained start.
                    weight = max(1.0 - config.ema, 1.0 / total_g_steps)
                    with torch.no_grad():
                        torch._foreach_lerp_(averaged, gen_params, weight)
                for p in critic.parameters():
                    p.requires_grad_(True)
                g_steps += 1
        d_sum, gp_sum, w_sum, g_sum = sync.sum_(sums.double().cpu()).tolist()
        history.train_seconds.append(time.perf_counter() - started)
        d_mean = d_sum / d_steps
        g_mean = g_sum / g_steps if g_steps else math.nan
        if not math.isfinite(d_mean) or (g_steps and not math.isfinite(g_mean)):
            raise TrainingDivergedError(
                f"{desc}: the {'critic' if not math.isfinite(d_mean) else 'generator'} loss became "
                f"{d_mean if not math.isfinite(d_mean) else g_mean} in epoch {epoch + 1}; lower the learning "
                f"rate (lr={config.lr}) or check the data scale")
        history.critic_loss.append(d_mean)
        history.generator_loss.append(g_mean)
        history.gradient_penalty.append(gp_sum / d_steps)
        history.wasserstein.append(w_sum / d_steps)
        bar.set_postfix(d=f"{d_mean:.4g}", g=f"{g_mean:.4g}", w=f"{history.wasserstein[-1]:.4g}")
        if sync.is_main:
            logger.debug("%s epoch %d/%d: critic loss %.6g, generator loss %.6g, gradient penalty %.6g, "
                         "Wasserstein estimate %.6g", desc, epoch + 1, config.epochs, d_mean, g_mean,
                         history.gradient_penalty[-1], history.wasserstein[-1])
    bar.close()
    history.generator_steps = total_g_steps
    if averaged is not None:
        with torch.no_grad():
            torch._foreach_copy_(gen_params, averaged)
    freeze(generator)
    freeze(critic)
    return history
