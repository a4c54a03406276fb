"""The denoisers' training objectives (genad_fast.nn.diffusion.losses): validation draws keyed on the window.

In eval mode (the training loop's validation) t, z and the imputation masks are functions of each window's content
and fixed seeds, so every epoch's held-out loss scores the same windows at the same noise; training batches draw
from the loss's generator."""
from __future__ import annotations

import pytest
import torch

from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser
from genad_fast.nn.diffusion.losses import ImputeLoss, ReconstructLoss
from genad_fast.nn.diffusion.schedules import NoiseSchedule

ALPHA_BAR = NoiseSchedule.from_name("quadratic", 20, None, None).alpha_bars.float()


def _loss(mode: str, generator: torch.Generator):
    if mode == "reconstruct":
        return Denoiser(3, residual_channels=8, n_layers=2), ReconstructLoss(ALPHA_BAR, "eager", generator)
    return (ConditionalDenoiser(3, residual_channels=8, n_layers=2),
            ImputeLoss(ALPHA_BAR, "eager", generator, ("grid", "random"), 4))


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # the last layer starts at zero: give every weight a value so the loss depends on them
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _setup(mode: str, training: bool):
    """(generator, model in train or eval mode, loss, 12 windows [b, W, C], the generator's state)."""
    generator = torch.Generator().manual_seed(0)
    model, loss = _loss(mode, generator)
    model = _trained_like(model).train(training)
    windows = torch.randn(12, 16, 3, generator=torch.Generator().manual_seed(1))
    return generator, model, loss, windows, generator.get_state()


@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
def test_validation_draws_are_the_same_in_every_epoch_and_batch(mode):
    generator, model, loss, windows, state = _setup(mode, training=False)
    with torch.no_grad():
        whole = loss(model, windows)
        again = loss(model, windows)
        halves = [loss(model, windows[:6]), loss(model, windows[6:])]
    assert torch.equal(whole, again)
    if mode == "reconstruct":
        # a window's draws do not depend on its batch: the mean of two halves' means is the batch's mean
        torch.testing.assert_close((halves[0] + halves[1]) / 2, whole, rtol=1e-5, atol=0)
    else:  # ImputeLoss divides by the batch's masked count: each half alone is the same in every call
        with torch.no_grad():
            assert torch.equal(loss(model, windows[:6]), halves[0])
    assert torch.equal(generator.get_state(), state)  # validation takes nothing from the training stream


@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
def test_training_draws_come_from_the_generator(mode):
    generator, model, loss, windows, state = _setup(mode, training=True)
    with torch.no_grad():
        first, second = loss(model, windows), loss(model, windows)
    assert not torch.equal(first, second)
    assert not torch.equal(generator.get_state(), state)
    generator.set_state(state)
    with torch.no_grad():
        assert torch.equal(loss(model, windows), first)  # the generator's stream, reproducible


def test_keyed_validation_draws_cover_the_schedule_and_are_standard_normal():
    generator = torch.Generator().manual_seed(0)
    loss = ReconstructLoss(ALPHA_BAR, "eager", generator)
    windows = torch.randn(4000, 3, 8, generator=torch.Generator().manual_seed(2))  # [b, C, W], as noisy takes them
    from genad_fast.nn.keyed_noise import row_keys

    _, z, t = loss.noisy(windows, row_keys(windows))
    counts = torch.bincount(t, minlength=20)
    assert counts.numel() == 20 and int(counts.min()) > 120  # 200 expected per step
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1.0) < 0.02
