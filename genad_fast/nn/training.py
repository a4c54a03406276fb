"""One training loop for every deep detector: Adam, gradient clipping, a validation split with
early stopping (the best weights are restored), a progress bar, per-epoch debug logs, and a clear
error when the loss diverges instead of a silently broken model."""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

logger = logging.getLogger("genad_fast")


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message says where and what to try."""


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0          # max global gradient norm (0 = off)
    val_fraction: float = 0.1       # held out for early stopping (0 = train on everything, no stopping)
    patience: int = 10              # epochs without validation improvement before stopping
    min_delta: float = 1e-4         # improvement smaller than this does not count


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


def split_train_val(n: int, val_fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random disjoint index sets; the validation set is empty when val_fraction is 0 or n is tiny."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_val < 1:
        n_val = 0
    return perm[n_val:], perm[:n_val]


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor], data: torch.Tensor,
        config: TrainConfig, generator: torch.Generator, *, verbose: bool = True,
        desc: str = "training", epoch_end: Callable[[int], None] | None = None) -> TrainHistory:
    """Minimise ``loss_fn(model, batch)`` (a scalar mean over the batch) over ``data`` rows.

    Batches are drawn in a random order from ``generator``; the same generator state gives the same
    model on the same backend and thread count. ``epoch_end(epoch)``, if given, runs after the
    training steps of each epoch (0-based) and before its validation, e.g. to re-solve a quantity
    that is not a gradient-trained parameter (Deep SVDD's radius) for the validation loss and the
    best-epoch snapshot to see.
    """
    from tqdm.auto import tqdm

    train_idx, val_idx = split_train_val(data.shape[0], config.val_fraction, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory()
    best_val, best_state, waited = math.inf, None, 0

    bar = tqdm(range(config.epochs), desc=desc, disable=not verbose, leave=False, unit="epoch")
    for epoch in bar:
        model.train()
        order = train_idx[torch.randperm(train_idx.numel(), generator=generator, device=generator.device).to(train_idx.device)]
        total, count = 0.0, 0
        for start in range(0, order.numel(), config.batch_size):
            batch = data[order[start:start + config.batch_size]]
            loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"{desc}: the loss became {loss.item()} at epoch {epoch + 1}, batch {start // config.batch_size + 1}; "
                    f"lower the learning rate (lr={config.lr}) or the gradient clip, or check the data scale")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += loss.item() * batch.shape[0]
            count += batch.shape[0]
        history.train_loss.append(total / max(count, 1))
        if epoch_end is not None:
            epoch_end(epoch)

        if val_idx.numel():
            val = evaluate(model, loss_fn, data[val_idx], config.batch_size)
            if not math.isfinite(val):
                raise TrainingDivergedError(f"{desc}: the validation loss became {val} at epoch {epoch + 1}")
            history.val_loss.append(val)
            if val < best_val - config.min_delta:
                best_val, waited, history.best_epoch = val, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4g}",
                        **({"val": f"{history.val_loss[-1]:.4g}"} if history.val_loss else {}))
        logger.debug("%s epoch %d: train loss %.6g%s", desc, epoch + 1, history.train_loss[-1],
                     f", val loss {history.val_loss[-1]:.6g}" if history.val_loss else "")
        if val_idx.numel() and waited >= config.patience:
            history.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor], data: torch.Tensor,
             batch_size: int) -> float:
    """Mean of ``loss_fn`` over ``data`` in eval mode (batch means weighted by batch size)."""
    model.eval()
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        batch = data[start:start + batch_size]
        total += loss_fn(model, batch).item() * batch.shape[0]
    return total / max(data.shape[0], 1)
