"""The command line of data-parallel training: ``torchrun --nproc_per_node=N -m genad_fast.distributed.ddp ...``.

Several ``--input`` files (or a glob) are one shard each; one file is cut into ``--num-shards`` row ranges
(default: the number of processes; give it explicitly to get the same model from any number of processes).
Rank 0 prints one summary line, writes ``--out`` and, with ``--report``, a JSON file of the run (loss per epoch,
training time, samples per second); the other processes print and write nothing. Exit status 1 on any error,
with the message on rank 0's stderr.
"""
from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import sys
import time
from typing import Any, Callable

__all__ = ["main"]


class _Selected:
    """A shard source read with the chosen columns (``--columns``, without ``--time-column``)."""

    def __init__(self, source: Any, columns: list[str] | None, time_column: str | None):
        self.source, self.columns, self.time_column = source, columns, time_column

    def __call__(self) -> Any:
        from genad_fast.data.files import select_columns
        from genad_fast.distributed.ddp_data import read_source

        data = read_source(self.source)
        if hasattr(data, "columns"):
            data, _ = select_columns(data, self.columns, self.time_column, str(self.source))
        elif self.columns or self.time_column:
            raise ValueError(f"{self.source}: --columns/--time-column need a table with column names")
        return data

    def __str__(self) -> str:
        return str(self.source)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m genad_fast.distributed.ddp",
                                description="Train one network detector data-parallel (DDP) on sharded data.")
    p.add_argument("--detector", required=True, help="flow, diffusion, vae, autoencoder, deep_svdd, anogan, fanogan")
    p.add_argument("--input", required=True, action="append",
                   help="a data file (.csv, .tsv, .parquet, .npy) or a glob; repeat for more; each file is a shard")
    p.add_argument("--num-shards", type=int, default=None,
                   help="with one input file: cut it into this many row ranges (default: the number of processes)")
    p.add_argument("--params", default="{}", help="the detector's parameters as a JSON object")
    p.add_argument("--out", required=True, help="the model file (written by rank 0)")
    p.add_argument("--columns", default=None, help="comma-separated data columns (default: all but --time-column)")
    p.add_argument("--time-column", default=None, help="a column that is not data (timestamps)")
    p.add_argument("--report", default=None, help="a JSON file of the run (rank 0)")
    return p


def _files(patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                raise ValueError(f"--input {pattern!r} matches no file")
            files.extend(found)
        else:
            files.append(pattern)
    return files


def _shards(args: argparse.Namespace, world_size: int) -> list[Any]:
    from genad_fast.distributed.ddp_data import row_ranges

    files = _files(args.input)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if len(files) == 1:
        sources = row_ranges(files[0], args.num_shards if args.num_shards is not None else world_size)
    elif args.num_shards not in (None, len(files)):
        raise ValueError(f"{len(files)} input files are {len(files)} shards; --num-shards={args.num_shards} "
                         f"disagrees (it cuts a single file)")
    else:
        sources = files
    return [_Selected(src, columns, args.time_column) for src in sources]


def _detector(args: argparse.Namespace) -> Any:
    from genad_fast.detectors import get_detector

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise ValueError(f"--params must be a JSON object, got {type(params).__name__}")
    cls = get_detector(args.detector)
    known = set(cls._get_param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{args.detector} has no parameter {', '.join(map(repr, unknown))} "
                         f"(its parameters: {', '.join(sorted(known))})")
    return cls(**params)


def _report(det: Any, world_size: int, num_shards: int, fit_seconds: float) -> dict[str, Any]:
    import torch

    history = getattr(det, "history_", None) or getattr(det, "gan_history_", None)
    losses = getattr(history, "train_loss", None) or getattr(history, "critic_loss", [])
    train_seconds = float(sum(history.train_seconds))
    samples = history.n_train * len(history.train_seconds)
    nets = [m for m in vars(det).values() if isinstance(m, torch.nn.Module)]
    return {"detector": type(det).__name__, "world_size": world_size, "num_shards": num_shards,
            "device": str(det.device_), "epochs": len(losses), "n_train": history.n_train,
            "parameters": sum(p.numel() for net in nets for p in net.parameters()),
            "train_loss": list(losses), "val_loss": list(getattr(history, "val_loss", [])),
            "epoch_seconds": list(history.train_seconds), "train_seconds": train_seconds, "fit_seconds": fit_seconds,
            "samples_per_s": samples / train_seconds if train_seconds else None,
            "samples_per_s_per_process": samples / train_seconds / world_size if train_seconds else None,
            "threshold": float(det.threshold_)}


def main(fit_distributed: Callable[..., Any], argv: list[str] | None = None) -> int:
    """Run the command line with ``fit_distributed`` (:func:`genad_fast.distributed.ddp.fit_distributed`, handed
    over by that module's ``__main__``, which this module does not import)."""
    args = _parser().parse_args(argv)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    import torch.distributed as dist

    try:
        det = _detector(args)
        shards = _shards(args, world_size)
        started = time.perf_counter()
        fit_distributed(det, shards, out=args.out)
        fit_seconds = time.perf_counter() - started
        if rank == 0:
            report = _report(det, world_size, len(shards), fit_seconds)
            if args.report:
                with open(args.report, "w") as f:
                    json.dump(report, f, indent=1)
            rate = report["samples_per_s_per_process"]
            print(f"fitted {args.detector} on {report['n_train']} training samples in {len(shards)} shards by "
                  f"{world_size} process(es) on {report['device']}: {report['epochs']} epochs, loss "
                  f"{report['train_loss'][-1]:.6g}, {rate:.0f} samples/s per process, threshold "
                  f"{report['threshold']:.6g} -> {args.out}")
        return 0
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            gc.collect()  # objects holding the group's gloo state go while it is alive (genad_fast.distributed.ddp)
            dist.destroy_process_group()
