"""Data-parallel training of one network detector with ``torch.distributed`` (DistributedDataParallel), launched by
``torchrun``: each process reads its own shards of the training data, and the model is the one a single process
would train on all the shards.

From the command line (one process per core or GPU; rank 0 writes the model file, the others write nothing)::

    torchrun --nproc_per_node=2 -m genad_fast.distributed.ddp --detector flow --input 'data/part-*.csv' \\
        --params '{"window": 32, "epochs": 5}' --out model.pt

In your own torchrun script::

    from genad_fast.detectors.flow import FlowDetector
    from genad_fast.distributed.ddp import fit_distributed
    det = fit_distributed(FlowDetector(window=32, epochs=5), ["part-0.csv", "part-1.csv", "part-2.csv"],
                          out="model.pt")

What is the same as a one-process fit on the same shards, whatever the number of processes W (1 <= W <= number
of shards): the normaliser (statistics of all shards, :mod:`~genad_fast.distributed.ddp_data`), every data-wide
quantity (:mod:`~genad_fast.distributed.ddp_recipes`), the global batches, random draws, validation split and
early-stopping decisions (:mod:`genad_fast.nn.training`), hence the loss curve and the model, up to float
round-off from the order in which the processes' gradients are summed. With one shard in one process it is
``detector.fit(data)`` bit for bit. Windows never cross the boundary between two shards.

The training scores (``decision_scores_``, which ``threshold_`` comes from) are those of every shard, concatenated
in shard order on rank 0 (8 bytes per row or timestamp: the one thing gathered in one place); every process gets
``threshold_``.
"""
from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from genad_fast import _backend
from genad_fast.detectors._auto_window import combine_windows, is_auto, series_window
from genad_fast.detectors._device import resolve_device
from genad_fast.detectors._extremes import warn_constant
from genad_fast.distributed.ddp_data import LocalShard, describe, global_normalizer, local_indices, read_source
from genad_fast.distributed.ddp_recipes import Work, recipe_for
from genad_fast.distributed.ddp_sync import (DDPSync, agreed, broadcast, decided_on_main, gather_to_main,
                                             join_process_group, rank_device)

__all__ = ["fit_distributed"]


def fit_distributed(detector: Any, shards: Sequence[Any], *, out: str | os.PathLike | None = None) -> Any:
    """Fit ``detector`` (a network detector) on ``shards`` with every process of the torchrun job; returns it.

    ``shards``: the same list on every process, one entry per shard: a path (.csv, .tsv, .parquet, .npy), an
    array, or a callable returning one (:func:`~genad_fast.distributed.ddp_data.row_ranges` cuts one file);
    process r reads entries r, r + W, ... only. Each shard is a series of its own (``window`` set) or a block
    of rows. ``out``: the model file, written by rank 0 only. Must be called by every process of the group
    (joined here from torchrun's environment if the caller has not initialised one: gloo for a model on the CPU,
    NCCL on GPUs). Errors of one process (a bad shard) are raised on all of them.
    """
    recipe = recipe_for(detector)
    if isinstance(shards, (str, os.PathLike)) or not isinstance(shards, Sequence) or len(shards) == 0:
        raise TypeError("shards must be a non-empty list of paths, arrays or callables (one per shard); for one "
                        "file cut into row ranges use genad_fast.distributed.ddp_data.row_ranges(path, num_shards)")
    detector._check_params()
    if getattr(detector, "batch_norm", False):
        raise ValueError(f"{type(detector).__name__}(batch_norm=True) cannot train data-parallel: each process "
                         f"would keep running statistics of its own shards; use batch_norm=False")
    device = rank_device(resolve_device(detector.device))
    _backend.resolve(detector.backend, device)  # an explicitly named backend that cannot run fails here
    join_process_group(device)
    sync = DDPSync(len(shards), device)
    if sync.world_size > sync.num_shards:
        raise ValueError(f"{sync.world_size} processes but {sync.num_shards} shard(s): every process needs at least "
                         f"one shard; cut the data into at least {sync.world_size} (a shard count that does not "
                         f"depend on the number of processes keeps the model the same when it changes)")
    for attr in ("threshold_", "decision_scores_", "window_"):  # a failed re-fit must not look fitted
        detector.__dict__.pop(attr, None)
    detector.device_ = device
    detector.seed_ = broadcast(int(detector.seed) if detector.seed is not None else
                               int(np.random.SeedSequence().entropy % (1 << 63)), sync)

    local, (n_features, names) = _read_shards(detector, shards, sync)
    detector.window_ = _auto_window(detector, local, shards, sync) if is_auto(detector.window) else \
        None if detector.window is None else int(detector.window)
    normalizer, constant = global_normalizer(local, sync)
    detector.n_features_in_ = n_features
    detector.feature_names_in_ = names  # shard 0's column names if all are str (else None: no attribute)
    detector.input_stats_ = normalizer
    detector.normalizer_ = normalizer if detector.normalize else None
    if sync.is_main and bool(constant.any()):
        warn_constant(constant, names, type(detector).__name__)
    for sh in local:
        sh.z = detector._apply_normalizer(sh.x)
        sh.samples = detector._grid(sh.z.shape[0]).windows(sh.z) if detector.is_series else sh.z
    work = Work(detector, local, sync)
    total, need = work.total(), detector._min_fit_samples()
    if total < need:
        what = "windows" if detector.is_series else "rows"
        raise ValueError(f"the {sync.num_shards} shard(s) give {total} training {what}, but "
                         f"{type(detector).__name__} needs at least {need} to fit")

    try:
        with detector._call_scope("fit"):
            recipe(work)
    finally:
        # The loops' DistributedDataParallel wrappers sit in reference cycles: free them while the group is alive,
        # also when the recipe raised. Left to a later garbage collection (after destroy_process_group), gloo
        # aborted the process at exit in 2 of 17 runs here ("terminate called without an active exception"); 0 of
        # 17 with this collection.
        gc.collect()
    _training_scores(detector, local, sync)
    if out is not None:
        with agreed("writing the model file", sync):
            if sync.is_main:
                detector.save(os.fspath(out))
    return detector


def _read_shards(detector: Any, shards: Sequence[Any], sync: DDPSync) -> tuple[list[LocalShard], tuple]:
    """This process's shards, read and checked, and shard 0's (channel count, str column names or None): every
    shard must have its channel count, and its column names where both have names."""
    local = []
    with agreed("reading the shards", sync):
        for s in local_indices(sync.num_shards, sync.rank, sync.world_size):
            try:
                t, columns = detector._validate(read_source(shards[s]), fitting=True)
                local.append(LocalShard(s, detector._cast(t), columns))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"shard {s} ({describe(shards[s])}): {exc}") from exc
    first = local[0]
    names = [str(c) for c in first.columns] if first.columns is not None else None
    n, names = broadcast((int(first.x.shape[1]), names if names is not None and
                          all(isinstance(c, str) for c in first.columns) else None), sync)
    with agreed("checking the shards", sync):
        for sh in local:
            if sh.x.shape[1] != n or (names is not None and sh.columns is not None and list(sh.columns) != names):
                raise ValueError(f"shard {sh.index} ({describe(shards[sh.index])}) has {_columns_text(sh)}, shard 0 "
                                 f"has {n} columns" + (f" {names}" if names is not None else "") +
                                 ": every shard needs the same channels, in the same order")
    return local, (n, names)


def _auto_window(detector: Any, local: Sequence[LocalShard], shards: Sequence[Any], sync: DDPSync) -> int:
    """``window="auto"`` over every shard, as a fit on the collection of them resolves it: each shard's own window
    (its dominant period), then their median, computed once on rank 0 from every process's shards (so the same
    for any number of processes) and sent to all; a shard shorter than the window is an error on all of them."""
    with agreed("finding the shards' periods", sync):
        mine = [(sh.index, series_window(sh.x), int(sh.x.shape[0])) for sh in local]
    parts = gather_to_main(mine, sync)

    def decide() -> int:
        rows = sorted(p for part in parts for p in part)
        return combine_windows([w for _, w, _ in rows], tuple(T for _, _, T in rows), detector.stride,
                               lambda i: f"shard {i} ({describe(shards[i])})")

    return decided_on_main(decide, sync)


def _columns_text(sh: LocalShard) -> str:
    return f"{sh.x.shape[1]} columns" + (f" {list(sh.columns)}" if sh.columns is not None else "")


def _training_scores(detector: Any, local: Sequence[LocalShard], sync: DDPSync) -> None:
    """``decision_scores_`` (rank 0) and ``threshold_`` (every process) from the scores of all the shards."""
    with agreed("scoring the training data", sync):
        mine = [(sh.index, detector._score_normalized(sh.z)) for sh in local]
    parts = gather_to_main(mine, sync)

    def decide() -> float:
        scores = np.concatenate([s for _, s in sorted((p for part in parts for p in part), key=lambda p: p[0])])
        bad = ~np.isfinite(scores)
        if bad.any():
            raise ValueError(f"{type(detector).__name__} gives non-finite scores on {int(bad.sum())} of "
                             f"{scores.size} training {'timestamps' if detector.is_series else 'rows'} (the first at "
                             f"{int(np.argmax(bad))} of the shards in order); the fit diverged or the data is "
                             f"degenerate")
        threshold = detector._fit_threshold(getattr(detector, "threshold", None), scores, None)
        detector.decision_scores_ = scores  # rank 0 only
        return threshold

    detector.threshold_ = decided_on_main(decide, sync)


if __name__ == "__main__":  # torchrun ... -m genad_fast.distributed.ddp --detector ... --input ... --out ...
    import sys

    from genad_fast.distributed.ddp_cli import main

    sys.exit(main(fit_distributed))
