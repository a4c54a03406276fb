"""Early stopping counts its patience in epochs of enough optimiser steps (``training.patience_epochs``): an epoch of
a small table is a step or two, and ten of them judged the held-out loss too soon (docs/quality_study.md,
"Patience in steps")."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from genad_fast.nn import training

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("patience", "steps", "expected"), [
    (10, 1, 80), (10, 2, 40), (10, 3, 27), (10, 8, 10), (10, 40, 10), (3, 1, 24), (1, 5, 2)])
def test_patience_is_at_least_patience_times_min_epoch_steps_steps(patience, steps, expected):
    config = training.TrainConfig(patience=patience, min_epoch_steps=8)
    assert training.patience_epochs(config, steps) == expected


@pytest.mark.parametrize(("patience", "steps", "expected"), [
    (10, 1, 80), (10, 8, 10), (10, 9, 9), (10, 71, 2), (10, 80, 1), (10, 500, 1), (3, 5, 5)])
def test_patience_in_steps_also_shortens_long_epochs(patience, steps, expected):
    """``patience_in_steps``: ceil(patience · min_epoch_steps / steps per epoch) epochs, below ``patience`` too."""
    config = training.TrainConfig(patience=patience, min_epoch_steps=8, patience_in_steps=True)
    assert training.patience_epochs(config, steps) == expected


class _WorseEveryEpoch:
    """A loss whose held-out value rises every epoch after the first (the best epoch is epoch 0)."""

    def __init__(self):
        self.validations = 0

    def __call__(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        loss = ((model(batch) - batch) ** 2).mean()
        if model.training:
            return loss
        self.validations += 1
        return loss * 0.0 + float(self.validations)


@pytest.mark.parametrize(("n_rows", "batch_size", "epochs_run", "patience_in_steps"), [
    (40, 64, 1 + 16, False),   # 36 training rows, one step an epoch: patience 2 is 16 epochs (2 · 8 steps)
    (400, 16, 1 + 2, False),   # 23 steps an epoch: the patience as given
    (40, 64, 1 + 16, True),    # the same 16 steps
    (400, 16, 1 + 2, True),    # 23 steps a pass, epochs of 8 (half the patience's 16 steps): 2 epochs
])
def test_a_fit_stops_after_the_patience_in_steps(n_rows, batch_size, epochs_run, patience_in_steps):
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    config = training.TrainConfig(epochs=100, batch_size=batch_size, val_fraction=0.1, patience=2, min_epoch_steps=8,
                                  patience_in_steps=patience_in_steps)
    history = training.fit(model, _WorseEveryEpoch(), torch.randn(n_rows, 3), config,
                           torch.Generator().manual_seed(0), verbose=False)
    assert history.stopped_early and history.best_epoch == 0
    assert len(history.train_loss) == epochs_run


@pytest.mark.parametrize(("patience", "batches_a_pass", "expected_steps"), [
    (10, 71, 40), (10, 352, 40), (10, 36, 36), (10, 41, 40), (2, 71, 8), (1, 71, 8), (3, 71, 12)])
def test_patience_in_steps_validates_every_half_patience(patience, batches_a_pass, expected_steps):
    """``patience_in_steps``: an epoch holds at most ceil(patience · min_epoch_steps / 2) batches (at least
    min_epoch_steps), so the patience is the steps it names, not a pass rounded up: 80 steps on a 20,000-row
    table (71 batches a pass) instead of 142."""
    config = training.TrainConfig(patience=patience, min_epoch_steps=8, patience_in_steps=True, batch_size=16)
    n = batches_a_pass * 16
    per_epoch = training.epoch_samples(n, config)
    assert per_epoch == expected_steps * 16
    waited = training.patience_epochs(config, expected_steps) * expected_steps
    assert patience * 8 <= waited < patience * 8 + expected_steps
    # without it an epoch is the pass
    assert training.epoch_samples(n, training.TrainConfig(patience=patience, batch_size=16)) == n


@pytest.mark.parametrize(("epochs", "batches_a_pass", "expected"), [(100, 71, 178), (100, 40, 100), (3, 352, 27)])
def test_shorter_epochs_keep_the_passes(epochs, batches_a_pass, expected):
    """``epochs`` bounds passes over the samples: where epochs hold fewer samples than a pass, there are as many
    more of them (ceil(epochs · pass / epoch))."""
    config = training.TrainConfig(epochs=epochs, patience=10, min_epoch_steps=8, patience_in_steps=True,
                                  batch_size=16)
    assert training.epochs_for_passes(batches_a_pass * 16, config) == expected
    assert training.epochs_for_passes(batches_a_pass * 16, training.TrainConfig(epochs=epochs)) == epochs


def test_a_fit_validates_every_half_patience_on_long_epochs():
    """400 rows at batch 16 (23 steps a pass) with patience 2 · 8 steps: epochs of 8 steps, each validated, and
    the fit stops two epochs (16 steps) after its best."""
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    loss = _WorseEveryEpoch()
    config = training.TrainConfig(epochs=100, batch_size=16, val_fraction=0.1, patience=2, min_epoch_steps=8,
                                  patience_in_steps=True)
    history = training.fit(model, loss, torch.randn(400, 3), config, torch.Generator().manual_seed(0), verbose=False)
    assert history.n_train == 8 * 16
    assert len(history.train_loss) == len(history.val_loss) == 3
    assert history.stopped_early and history.best_epoch == 0
