"""One training loop for every deep detector: Adam, gradient clipping, a validation split with
early stopping (the best weights are restored), a progress bar, per-epoch debug logs, and a clear
error when the loss diverges instead of a silently broken model.

Shards and data parallelism. :func:`fit` trains on one tensor; :func:`fit_shards` is the same loop over
the training samples cut into *shards* (:class:`Shard`: the samples, their loss with its own random
streams, a generator for the split and the batch order), some of them held by other processes. Each
shard splits off its own validation samples and permutes its training samples every epoch; step k's
global batch is the union of one slice of every shard (:class:`BatchPlan`), so which samples meet in a
batch depends on the shards and the seed only, never on how many processes hold them. The step
minimises the mean loss over the global batch,

    L_k = Σ_s n_s,k · loss_s(slice_s,k) / B_k,        B_k = Σ_s n_s,k,

each process backpropagating ``world_size · n_s,k / B_k · loss_s`` for its own shards; a
:class:`GradientSync` (:class:`LocalSync` here, ``DistributedDataParallel`` in
:mod:`genad_fast.distributed.ddp_sync`) averages the gradients over the processes, so every process
applies the same clipped Adam step. The validation loss (a sample-weighted mean over all shards) and the
divergence check are summed over the processes too: every process stops at the same epoch and keeps the
same best weights. With one shard this is exactly the plain loop (the weights are 1.0).

Epochs over a fraction. ``epoch_fraction`` f < 1 (the windows of a series at stride 1 are near-copies of
their neighbours: a pass over all of them is W passes over every timestamp) makes an epoch ceil(f·N) samples,
but at least ``min_epoch_steps`` batches (early stopping's patience counts epochs) or all N. Each shard sweeps a
random permutation of its training samples, its share of the epoch's samples at a time, and draws a fresh
permutation when the rest of one is too short for an epoch (that rest, fewer than one epoch's share, is skipped
in that sweep), so every sample is used about once per N / (epoch's samples) epochs. Validation is on the same
fraction of each shard's held-out samples, the first of its random split (fixed, so the epochs' losses compare).
f = 1 is exactly the plain loop. With ``patience_in_steps`` an epoch also holds at most :func:`validation_steps`
batches (half the patience), with the epochs raised to keep ``epochs`` passes over the samples. ``autocast`` (a
dtype, e.g. bfloat16) runs each step's forward under ``torch.autocast``; the weights, gradients, Adam's state and
the loss stay float32.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from genad_fast.nn.adam import Optimiser, make_adam
from genad_fast.nn.clipped_adam import ClippedFusedAdam

logger = logging.getLogger("genad_fast")

LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


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
    patience: int = 10              # epochs without validation improvement before stopping (patience_epochs)
    min_delta: float = 1e-4         # improvement smaller than this does not count
    epoch_fraction: float = 1.0     # samples per epoch, and held-out samples validated, as a fraction (module doc)
    min_epoch_steps: int = 8        # ... but an epoch of at least this many batches (or every sample)
    autocast: torch.dtype | None = None   # forward passes under torch.autocast(dtype) (None: float32)
    fused_adam: bool = False        # Adam's fused kernel, the clip folded in (nn.clipped_adam): one pass a step
    patience_in_steps: bool = False  # the patience in optimiser steps only, epochs of at most half of them

    def __post_init__(self):
        if isinstance(self.min_epoch_steps, bool) or not isinstance(self.min_epoch_steps, int) \
                or self.min_epoch_steps < 1:
            raise ValueError(f"min_epoch_steps must be an int >= 1, got {self.min_epoch_steps!r}")
        if not 0.0 < self.epoch_fraction <= 1.0:
            raise ValueError(f"epoch_fraction must be in (0, 1], got {self.epoch_fraction!r}")
        if self.autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16, got {self.autocast!r}")


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    train_seconds: list[float] = field(default_factory=list)   # wall time of each epoch's optimiser steps
    n_train: int = 0                                            # training samples (all shards), per epoch


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16) and oneDNN may use it: there
    bfloat16 products are faster than float32; elsewhere oneDNN emulates them, slower than float32."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return _onednn_may_use("BF16", "AMX") and any(_cpu_check(check) for check in checks)


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later) and neither oneDNN nor MKL is capped below
    them (``MKL_ENABLE_INSTRUCTIONS`` other than an AVX-512 level: the flow's bfloat16 products are MKL's). There a
    wide flow's products run 2.5-5× faster with bfloat16 operands (docs/training_speed.md, ninth pass); AVX512-BF16
    alone (AMD Zen 4) doubles the rate at most, which the casts around the products can eat."""
    mkl_cap = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").upper()
    return (_onednn_may_use("AMX") and (not mkl_cap or mkl_cap.startswith("AVX512"))
            and _cpu_check(getattr(torch.cpu, "_is_amx_tile_supported", None)))


def _cpu_check(check) -> bool:
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def _onednn_may_use(*isa_words: str) -> bool:
    """False where ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``) caps oneDNN below every ISA named
    with one of ``isa_words`` (e.g. ``AVX2``, to measure an AVX2 machine's speed): the CPU's flags alone would then
    choose bfloat16 products that oneDNN emulates."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return cap in ("ALL", "DEFAULT") or any(word in cap for word in isa_words)


def epoch_share(n: int, fraction: float) -> int:
    """ceil(fraction · n), at most n: held-out samples validated at the epoch's fraction of the training ones."""
    return n if fraction >= 1.0 else min(n, math.ceil(n * fraction))


def patience_epochs(config: TrainConfig, steps_per_epoch: int) -> int:
    """Epochs without improvement of the held-out loss before training stops: ``patience``, but at least
    ``patience`` · ``min_epoch_steps`` optimiser steps' worth of epochs.

    The patience counts epochs, and an epoch of a small table is one or two steps (124 rows at batch 128: one), so
    ten epochs judged the held-out loss over ten steps of an optimiser that had just started: the autoencoder, the
    VAE and Deep SVDD stopped after 50-60 steps on a digits class, all three below PCA (docs/quality_study.md,
    "Patience in steps"). Epochs of at least ``min_epoch_steps`` batches (the rule of :func:`epoch_samples` for
    a share of the windows) are unchanged.

    With ``config.patience_in_steps`` the patience is those steps alone, rounded up to whole epochs, also where an
    epoch is longer than ``min_epoch_steps`` batches, and epochs hold at most half of them
    (:func:`validation_steps`): a table of 20,000 rows then waits 2 epochs of 40 steps instead of 10 passes of 71
    (710 steps), as a series fit over epochs of 8 batches waits 80 steps. What early stopping waits for is updates
    without improvement, and their number should not depend on how the data is cut into epochs
    (docs/training_speed.md, "Patience in steps on long epochs")."""
    steps = math.ceil(config.patience * config.min_epoch_steps / max(1, steps_per_epoch))
    return steps if config.patience_in_steps else max(config.patience, steps)


def epoch_samples(n: int, config: TrainConfig) -> int:
    """Training samples per epoch of ``n``: ceil(epoch_fraction · n), but at least ``min_epoch_steps`` batches
    (or all n): early stopping counts its patience in epochs, and a few steps per epoch would make it judge the
    noisy validation loss over too few steps. With ``patience_in_steps``, at most :func:`validation_steps`
    batches."""
    share = _fraction_samples(n, config)
    cap = validation_steps(config)
    return share if cap is None else min(share, cap * config.batch_size)


def _fraction_samples(n: int, config: TrainConfig) -> int:
    """:func:`epoch_samples` without the cap of ``patience_in_steps``."""
    if config.epoch_fraction >= 1.0:
        return n
    return max(epoch_share(n, config.epoch_fraction), min(n, config.min_epoch_steps * config.batch_size))


def validation_steps(config: TrainConfig) -> int | None:
    """With ``patience_in_steps``, the most optimiser steps between two validations: half the patience's steps,
    ceil(patience · min_epoch_steps / 2), and at least ``min_epoch_steps`` (None without it: an epoch is the
    fraction of the samples).

    Patience in steps is rounded up to whole epochs (:func:`patience_epochs`), and an epoch of a table was a pass
    over its rows: 71 steps of 20,000 rows at batch 256 made the 80 steps of patience 142, and a pass of 100,000
    rows (352 steps) made them 352. Epochs of at most half the patience make it 80 steps wherever epochs are long,
    and every stop comes within 80 steps of the best held-out loss, i.e. at two validations without improvement:
    one would stop at the first noisy rise. The held-out samples validated shrink with the epoch (the same fraction
    as the training ones, :func:`fit_shards`), so validation costs the same per step as before. Measured on tables
    of 20,000-100,000 rows: 23-55 % less time to a test AUROC within -0.0010..+0.0003 (docs/training_speed.md,
    "validation every 40 steps")."""
    if not config.patience_in_steps:
        return None
    return max(config.min_epoch_steps, math.ceil(config.patience * config.min_epoch_steps / 2))


def epochs_for_passes(n: int, config: TrainConfig) -> int:
    """The epochs :func:`fit_shards` runs on ``n`` training samples: ``config.epochs``, or as many more as keep
    the passes over the samples where :func:`validation_steps` shortened the epochs (``epochs`` bounds passes)."""
    capped = epoch_samples(n, config)
    full = _fraction_samples(n, config)
    return config.epochs if capped >= full else math.ceil(config.epochs * full / max(capped, 1))


class _Sweep:
    """A shard's training samples, ``share`` per epoch, in random permutations swept across the epochs
    (module docstring); ``share`` = all of them draws one permutation per epoch, as the plain loop."""

    def __init__(self, train: torch.Tensor, generator: torch.Generator, share: int):
        self.train, self.generator, self.share = train, generator, share
        self.order, self.pos = train[:0], 0

    def next(self) -> torch.Tensor:
        if self.pos + self.share > self.order.numel():
            perm = torch.randperm(self.train.numel(), generator=self.generator, device=self.generator.device)
            self.order, self.pos = self.train[perm.to(self.train.device)], 0
        self.pos += self.share
        return self.order[self.pos - self.share:self.pos]


def gather_rows(data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``data[index]`` for a 1-D integer ``index``, by ``index_select``: the same values; where ``data`` is a series'
    windows (an overlapping view, ``Tensor.unfold``) it copies each window's rows as a block, where advanced indexing
    computes every element's offset: 65 against 135 µs for 256 windows of 193 × 8 (one Sapphire Rapids thread;
    61 against 133 µs with ATen capped at AVX2)."""
    return data.index_select(0, index.to(data.device))


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(training, held-out) sample counts of :func:`split_train_val` of ``n`` samples: round(val_fraction · n)
    held out, none where that would leave no training sample."""
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    return (n, 0) if n - n_val < 1 else (n - n_val, n_val)


def split_train_val(n: int, val_fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random disjoint index sets (training, held out) of :func:`split_sizes`' sizes."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    n_val = split_sizes(n, val_fraction)[1]
    return perm[n_val:], perm[:n_val]


@dataclass
class Shard:
    """One shard of the training samples: ``data`` ``[n, *sample_shape]`` (a view is fine), ``generator`` (its
    validation split and batch order), ``index`` (its place among all shards, 0-based) and ``loss_fn`` (its
    loss, with random streams of its own so that a shard draws the same numbers in any process)."""

    data: torch.Tensor
    generator: torch.Generator
    index: int = 0
    loss_fn: LossFn | None = None


class GradientSync(Protocol):
    """How the processes that hold the shards agree (:class:`LocalSync`: one process holds them all)."""

    world_size: int
    num_shards: int
    is_main: bool                  # shows progress and logs

    def wrap(self, module: nn.Module) -> nn.Module: ...               # gradients averaged over the processes
    def no_sync(self, wrapped: nn.Module) -> contextlib.AbstractContextManager: ...  # forward without it
    def sum_(self, t: torch.Tensor) -> torch.Tensor: ...              # in place, over the processes
    def sum_async(self, t: torch.Tensor) -> Any: ...                  # .wait() -> the summed t


class _Done:
    def __init__(self, t: torch.Tensor):
        self.t = t

    def wait(self) -> torch.Tensor:
        return self.t


class LocalSync:
    """Every shard in this process: nothing to average, sums are the values."""

    world_size = 1
    is_main = True

    def __init__(self, num_shards: int = 1):
        self.num_shards = num_shards

    def wrap(self, module: nn.Module) -> nn.Module:
        return module

    def no_sync(self, wrapped: nn.Module) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sum_async(self, t: torch.Tensor) -> _Done:
        return _Done(t)


def shard_table(sync: GradientSync, shards: Sequence[Shard], values: Sequence[Sequence[float]],
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[num_shards, k]``: row ``s`` holds shard s's ``k`` values, whichever process has it (rows filled with
    zeros elsewhere, then summed: x + 0 is exact, so every process gets the same table bit for bit)."""
    k = len(values[0]) if values else 0
    table = torch.zeros(sync.num_shards, k, dtype=dtype)
    for shard, row in zip(shards, values):
        table[shard.index] = torch.as_tensor(row, dtype=dtype)
    return sync.sum_(table)


class BatchPlan:
    """Which samples of each shard make step k's global batch: the same on every process and world size.

    With n_s training samples in shard s, N = Σ n_s and S = ceil(N / batch_size) steps per epoch, shard s gives
    positions [c_s(k), c_s(k + 1)) of its epoch's permutation to step k,

        c_s(k) = min(n_s, floor(k · batch_size · n_s / N)),

    every shard in proportion to its size, every training sample once per epoch. One shard: batches of
    ``batch_size`` in order, the last one partial. The global batch B_k = Σ_s (c_s(k+1) - c_s(k)) differs from
    ``batch_size`` by less than the number of shards; a step where it is 0 (only possible with more shards than
    ``batch_size``) is skipped by every process.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int):
        self.sizes = np.asarray([int(n) for n in sizes], dtype=np.int64)
        self.batch_size = int(batch_size)
        self.total = int(self.sizes.sum())
        if self.total < 1:
            raise ValueError("no training samples in any shard")
        if self.total * int(self.sizes.max()) >= 1 << 62:  # k · batch_size · n_s stays exact in int64
            raise ValueError(f"{self.total} training samples in one shard plan: too many (at most about 2e9)")
        self.steps = -(-self.total // self.batch_size)
        self._ks = np.arange(self.steps + 1, dtype=np.int64) * self.batch_size
        self.global_sizes = np.zeros(self.steps, dtype=np.int64)
        for s in range(self.sizes.shape[0]):
            self.global_sizes += np.diff(self.bounds(s))

    def bounds(self, s: int) -> np.ndarray:
        """``[steps + 1]``: c_s(0) = 0, ..., c_s(steps) = n_s."""
        n = int(self.sizes[s])
        return np.minimum(n, self._ks * n // self.total)

    def shares(self, total: int) -> np.ndarray:
        """``total`` split over the shards in proportion to their sizes (cumulative floors; they sum to ``total``):
        e.g. the latent codes of a GAN's generator step."""
        cum = np.concatenate([[0], np.cumsum(self.sizes)])
        return np.diff(cum * int(total) // self.total)


class _Objective(nn.Module):
    """``model`` and the shards' losses as one module whose forward is the loss: a data-parallel wrapper
    (DistributedDataParallel) averages gradients only through a module's forward, and the losses call other
    methods of the model (``log_prob``, ``encode``, ...)."""

    def __init__(self, model: nn.Module, losses: Sequence[LossFn]):
        super().__init__()
        self.model = model
        self.losses = list(losses)

    def forward(self, batch: torch.Tensor | None, which: int | None) -> torch.Tensor:
        if batch is None:
            return zero_loss(self.model)
        return self.losses[which](self.model, batch)


def zero_loss(module: nn.Module) -> torch.Tensor:
    """0 with every trainable parameter of ``module`` in its graph: a process with no samples at a step still
    takes part in the gradient average, with zeros."""
    return sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0


def fit(model: nn.Module, loss_fn: LossFn, data: torch.Tensor, config: TrainConfig, generator: torch.Generator, *,
        verbose: bool = True, desc: str = "training", epoch_end: Callable[[int], None] | None = None) -> TrainHistory:
    """Minimise ``loss_fn(model, batch)`` (a scalar mean over the batch) over ``data`` rows.

    Batches are drawn in a random order from ``generator``; the same generator state gives the same
    model on the same backend and thread count. ``epoch_end(epoch)``, if given, runs after the
    training steps of each epoch (0-based) and before its validation, e.g. to re-solve a quantity
    that is not a gradient-trained parameter (Deep SVDD's radius) for the validation loss and the
    best-epoch snapshot to see.
    """
    return fit_shards(model, [Shard(data, generator, 0, loss_fn)], config, verbose=verbose, desc=desc,
                      epoch_end=epoch_end)


def fit_shards(model: nn.Module, shards: Sequence[Shard], config: TrainConfig, *, sync: GradientSync | None = None,
               verbose: bool = True, desc: str = "training",
               epoch_end: Callable[[int], None] | None = None) -> TrainHistory:
    """:func:`fit` over this process's ``shards`` (see the module docstring); ``sync`` joins the processes that
    hold the others (None: all shards are here). Every process must call it with the same ``config``."""
    from tqdm.auto import tqdm

    sync = sync if sync is not None else LocalSync(len(shards))
    world = sync.world_size
    splits = [split_train_val(sh.data.shape[0], config.val_fraction, sh.generator) for sh in shards]
    sizes = shard_table(sync, shards, [(tr.numel(), va.numel()) for tr, va in splits], torch.int64)
    n_all = int(sizes[:, 0].sum())
    per_epoch = epoch_samples(n_all, config)
    frac = per_epoch / max(n_all, 1)
    # each shard's samples per epoch: its share of per_epoch (cumulative floors: the same on every process); the
    # validated ones: the first ceil(frac·n_val) of its held-out samples (a random order already)
    shares = BatchPlan(sizes[:, 0].tolist(), config.batch_size).shares(per_epoch)
    plan = BatchPlan(shares.tolist(), config.batch_size)
    splits = [(tr, va[:epoch_share(va.numel(), frac)]) for tr, va in splits]
    n_val = sum(epoch_share(int(v), frac) for v in sizes[:, 1].tolist())
    bounds = [plan.bounds(sh.index) for sh in shards]
    sweeps = [_Sweep(tr, sh.generator, int(shares[sh.index])) for sh, (tr, _) in zip(shards, splits)]
    autocast = (lambda: torch.autocast(_device_type(model), dtype=config.autocast)) if config.autocast else \
        contextlib.nullcontext
    objective = sync.wrap(_Objective(model, [sh.loss_fn for sh in shards]))
    optimizer = _adam(model, config)
    history = TrainHistory(n_train=plan.total)
    best_val, best_state, waited = math.inf, None, 0
    patience = patience_epochs(config, plan.steps)

    bar = tqdm(range(epochs_for_passes(n_all, config)), desc=desc, disable=not (verbose and sync.is_main),
               leave=False, unit="epoch")
    for epoch in bar:
        model.train()
        started = time.perf_counter()
        orders = [sweep.next() for sweep in sweeps]
        total, count = 0.0, 0
        for k in range(plan.steps):
            B = int(plan.global_sizes[k])
            if B == 0:
                continue
            pieces = [(j, orders[j][int(b[k]):int(b[k + 1])]) for j, b in enumerate(bounds) if b[k + 1] > b[k]]
            terms, local = [], 0.0
            for i, (j, idx) in enumerate(pieces):
                # one gradient average per step: the earlier forwards of this process go without it
                with sync.no_sync(objective) if i < len(pieces) - 1 else contextlib.nullcontext(), autocast():
                    loss = objective(gather_rows(shards[j].data, idx), j).float()
                terms.append(loss * (world * idx.numel() / B))
                local += loss.item() * idx.numel()
            if not terms:
                terms.append(objective(None, None))
            step_sum = sync.sum_async(torch.tensor([local], dtype=torch.float64))
            optimizer.zero_grad(set_to_none=True)
            (terms[0] if len(terms) == 1 else sum(terms)).backward()
            step_loss = float(step_sum.wait()[0])
            if not math.isfinite(step_loss):
                raise TrainingDivergedError(
                    f"{desc}: the loss became {step_loss / B} at epoch {epoch + 1}, batch {k + 1}; "
                    f"lower the learning rate (lr={config.lr}) or the gradient clip, or check the data scale")
            if config.grad_clip > 0 and not isinstance(optimizer, ClippedFusedAdam):  # that one clips in its step
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += step_loss
            count += B
        history.train_seconds.append(time.perf_counter() - started)
        history.train_loss.append(total / max(count, 1))
        if epoch_end is not None:
            epoch_end(epoch)

        if n_val:
            val = float(sync.sum_(torch.tensor([sum(
                _loss_total(model, sh.loss_fn, gather_rows(sh.data, va), config.batch_size, autocast)
                for sh, (_, va) in zip(shards, splits) if va.numel())], dtype=torch.float64))[0]) / n_val
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
        if sync.is_main:
            logger.debug("%s epoch %d: train loss %.6g%s", desc, epoch + 1, history.train_loss[-1],
                         f", val loss {history.val_loss[-1]:.6g}" if history.val_loss else "")
        if n_val and waited >= patience:
            history.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


@torch.no_grad()
def _loss_total(model: nn.Module, loss_fn: LossFn, data: torch.Tensor, batch_size: int,
                autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> float:
    """Σ over batches of ``loss_fn`` · batch size, in eval mode (under ``autocast()``)."""
    model.eval()
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        batch = data[start:start + batch_size]
        with autocast():
            total += loss_fn(model, batch).float().item() * batch.shape[0]
    return total


def _adam(model: nn.Module, config: TrainConfig) -> Optimiser | torch.optim.Adam:
    """Adam over ``model``'s parameters; with ``config.fused_adam`` (CPU and CUDA) torch's fused kernel with the
    gradient clip folded in (:class:`~genad_fast.nn.clipped_adam.ClippedFusedAdam`: the same update, one pass over
    every parameter instead of ~10 elementwise ops per tensor; on CPU torch's default is that per-tensor loop, which
    for a flow's ~140 small tensors cost ~20 % of a step, docs/training_speed.md)."""
    if config.fused_adam and _device_type(model) in ("cpu", "cuda"):
        return ClippedFusedAdam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                max_norm=config.grad_clip)
    # on the CPU torch.optim.Adam's update without torch.optim's import of torch._dynamo (genad_fast.nn.adam)
    return make_adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _device_type(model: nn.Module) -> str:
    p = next(model.parameters(), None)
    return p.device.type if p is not None else "cpu"


def evaluate(model: nn.Module, loss_fn: LossFn, data: torch.Tensor, batch_size: int) -> float:
    """Mean of ``loss_fn`` over ``data`` in eval mode (batch means weighted by batch size)."""
    return _loss_total(model, loss_fn, data, batch_size) / max(data.shape[0], 1)
