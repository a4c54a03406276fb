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
    (400, 16, 1 + 1, True),    # 23 steps an epoch: one epoch holds the 16 steps
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
