"""Shards of the training data of a data-parallel fit: what a shard is, which process reads it, and the statistics
that have to be those of all the shards together.

A shard is a path (``.csv``, ``.tsv``, ``.parquet``, read by :func:`genad_fast.data.files.read_table`; ``.npy``,
by ``numpy.load``), an array (numpy, pandas, torch), or a callable that returns one, such as a :class:`RowRange`
of one big file. Process r of W reads shards r, r + W, r + 2W, ... and nothing else (:func:`local_indices`);
the number of shards is the user's choice and does not change with W, so the same shards give the same model
whatever the number of processes. A series shard is a series of its own: its windows lie inside it (the W - 1
windows that would cross a cut between two shards are never formed).

The normaliser is fitted on all the shards: each gives its row count, mean and sum of squared deviations
(float64, two passes), and every process combines them in shard order with Chan et al.'s pairwise update
("Updating formulae and a pairwise algorithm for computing sample variances", 1979):

    n = n_a + n_b,   δ = mean_b - mean_a,   mean = mean_a + δ·n_b/n,   M2 = M2_a + M2_b + δ²·n_a·n_b/n,

std = sqrt(M2 / n) (the population std, as :class:`genad_fast.series.Normalizer`), the same constant-channel
rule; equal to ``Normalizer.fit`` on all the rows to float64 round-off, and bit for bit the same on every process.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from genad_fast.nn.training import Shard, shard_table
from genad_fast.series import Normalizer, constant_columns

__all__ = ["LocalShard", "RowRange", "global_normalizer", "local_indices", "read_source", "row_ranges"]


def local_indices(num_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards process ``rank`` reads: ``rank, rank + world_size, ...``."""
    return list(range(rank, num_shards, world_size))


def _kind(path: str) -> str:
    p = path.lower()
    return "npy" if p.endswith(".npy") else "parquet" if p.endswith((".parquet", ".pq")) else "table"


def _count_rows(path: str) -> int:
    kind = _kind(path)
    if kind == "npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    import pandas as pd

    from genad_fast.data.files import read_table, table_kind

    sep = "\t" if table_kind(path, "input") == "tsv" else ","
    if not os.path.exists(path):
        read_table(path)  # its message for a missing file
    return int(len(pd.read_csv(path, sep=sep, usecols=[0])))


@dataclass(frozen=True)
class RowRange:
    """Rows ``[start, stop)`` of one file, read alone: ``.npy`` through a memory map, CSV/TSV by skipping to them
    (the file is scanned, not parsed, up to ``start``; one record per line), Parquet by reading the file and
    slicing it (prefer one Parquet file per shard)."""

    path: str
    start: int
    stop: int

    def __call__(self) -> Any:
        kind = _kind(self.path)
        if kind == "npy":
            return np.array(np.load(self.path, mmap_mode="r")[self.start:self.stop])
        from genad_fast.data.files import read_table, table_kind

        if kind == "parquet":
            return read_table(self.path).iloc[self.start:self.stop].reset_index(drop=True)
        import pandas as pd

        sep = "\t" if table_kind(self.path, "input") == "tsv" else ","
        return pd.read_csv(self.path, sep=sep, skiprows=range(1, self.start + 1), nrows=self.stop - self.start)

    def __str__(self) -> str:
        return f"{self.path}[{self.start}:{self.stop}]"


def row_ranges(path: str | os.PathLike, num_shards: int) -> list[RowRange]:
    """One file as ``num_shards`` shards of consecutive rows, ``[floor(i·n/K), floor((i+1)·n/K))``."""
    path = os.fspath(path)
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    n = _count_rows(path)
    if n < num_shards:
        raise ValueError(f"{path} has {n} rows, fewer than num_shards={num_shards}")
    cuts = [i * n // num_shards for i in range(num_shards + 1)]
    return [RowRange(path, cuts[i], cuts[i + 1]) for i in range(num_shards)]


def read_source(source: Any) -> Any:
    """The data of one shard: a callable is called, a path read, anything else returned as it is."""
    if callable(source) and not isinstance(source, (np.ndarray, torch.Tensor)):
        return source()
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if _kind(path) == "npy":
            if not os.path.exists(path):
                raise ValueError(f"input file {path!r} does not exist")
            return np.load(path)
        from genad_fast.data.files import read_table

        return read_table(path)
    return source


def describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike, RowRange)):
        return str(source)
    shape = getattr(source, "shape", None)
    return f"{type(source).__name__} of shape {tuple(shape)}" if shape is not None else type(source).__name__


@dataclass
class LocalShard:
    """A shard this process holds: ``x`` the checked data ``[rows or timestamps, channels]`` on the model's device,
    ``samples`` what the network trains on (the normalised rows, or the grid windows of the normalised series),
    ``z`` the normalised data."""

    index: int
    x: torch.Tensor
    columns: list | None
    z: torch.Tensor | None = None
    samples: torch.Tensor | None = None

    def as_shard(self, generator: torch.Generator, loss_fn: Callable | None = None) -> Shard:
        return Shard(self.samples, generator, self.index, loss_fn)


def global_normalizer(shards: Sequence[LocalShard], sync: Any) -> tuple[Normalizer, torch.Tensor]:
    """The :class:`~genad_fast.series.Normalizer` of all the shards' rows (see the module docstring) and the
    boolean ``[C]`` mask of the constant channels; with one shard, ``Normalizer.fit`` itself (the fit of one
    process on that data, bit for bit)."""
    if sync.num_shards == 1:
        return Normalizer.fit(shards[0].x), constant_columns(shards[0].x)
    stats = []
    for sh in shards:
        xd = sh.x.detach().to(device="cpu", dtype=torch.float64)
        mean = xd.mean(dim=0)
        stats.append([float(xd.shape[0]), *mean.tolist(), *(xd - mean).square().sum(dim=0).tolist()])
    table = shard_table(sync, [Shard(sh.x, None, sh.index) for sh in shards], stats)
    C = (table.shape[1] - 1) // 2
    n, mean, m2 = float(table[0, 0]), table[0, 1:C + 1].clone(), table[0, C + 1:].clone()
    for row in table[1:]:
        nb, mb, m2b = float(row[0]), row[1:C + 1], row[C + 1:]
        total = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta.square() * (n * nb / total)
        n = total
    std = (m2 / n).clamp_min(0).sqrt()
    constant = std <= 10 * torch.finfo(torch.float64).eps * torch.clamp(mean.abs(), min=1.0)  # Normalizer's rule
    return Normalizer(mean=mean, scale=torch.where(constant, torch.ones_like(std), std)), constant
