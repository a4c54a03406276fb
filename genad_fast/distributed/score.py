"""``score_many``: many series scored with one fitted model, on this machine's processes, Ray or Dask."""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from genad_fast.data.files import table_kind
from genad_fast.distributed import _worker
from genad_fast.distributed._run import new_key, output_names, run_job, shaped, summary_frame
from genad_fast.distributed.collection import collect

__all__ = ["ScoreResult", "score_many"]


class ScoreResult(NamedTuple):
    """What :func:`score_many` returns (unpacks as ``scores, summary, info``).

    - ``scores``: one float64 array per series (``det.decision_function`` of it), a list in input order or a
      dict by id (as the series came); None for a series that failed, and for every series when
      ``return_scores=False``.
    - ``summary``: a pandas DataFrame, one row per series in input order: ``id``, ``file`` (file inputs),
      ``n_timestamps``, ``n_flagged`` (scores above ``threshold_``), ``seconds`` (reading, its share of the
      chunk's scoring call, writing), ``status`` (``"ok"`` / ``"failed"``), ``error`` (the exception as one
      line), ``output`` (with ``out_dir``: the file written).
    - ``info``: the run: ``engine``, ``workers``, ``threads`` (per worker; None: each Dask worker's own share),
      ``tasks``, ``start_seconds`` (starting a cluster for the job; 0 when one was running), ``seconds`` (the
      job without that start-up), ``model_loads`` (worker process id -> models loaded there: one each),
      ``worker_cpu_seconds`` (worker process id -> its CPU time, all threads, from its start to its last task;
      what a worker cost whatever else ran on the machine), ``worker_phases`` (worker process id -> its CPU
      seconds before the job's state (start-up, imports), loading the model, running its tasks; and whether it
      keeps the memory its calls free, :func:`genad_fast.distributed._worker.keep_freed_memory`).
    """

    scores: list | dict
    summary: Any
    info: dict


def _model_bytes(model) -> tuple[bytes, Any]:
    """The model file's bytes and the detector (loaded here once: a bad file fails before any worker starts)."""
    from genad_fast.detectors import BaseDetector, load

    if isinstance(model, BaseDetector):
        model._check_fitted()
        return _worker.detector_bytes(model), model
    if isinstance(model, (str, os.PathLike)):
        det = load(model, map_location="cpu")
        with open(model, "rb") as fh:
            return fh.read(), det
    raise TypeError(f"model must be a fitted detector or the path of a model file, got {type(model).__name__}")


def score_many(model, series, *, engine: str = "local", workers: int | None = None, threads: int | None = None,
               chunk_size: int | None = None, columns: list[str] | None = None, time_column: str | None = None,
               id_column: str | None = None, out_dir: str | os.PathLike | None = None, out_format: str = ".csv",
               return_scores: bool = True, fail_fast: bool = False, verbose: bool = True) -> ScoreResult:
    """Score many series with one fitted model, in parallel on ``engine``.

    ``model``: a fitted detector or the path of a model file (``det.save``). The model goes to each worker once,
    as its model file's bytes, and each worker loads it once (local: the pool's initializer; Ray: an actor per
    worker; Dask: a broadcast scatter, loaded at the worker's first task).

    ``series``: a list or dict of arrays, frames or tensors; file paths (CSV/TSV/Parquet, read by the workers
    themselves, so the data does not pass through this process); a glob pattern or directory; or a long
    DataFrame with ``id_column``. See :func:`genad_fast.distributed.collection.collect`. ``columns`` and
    ``time_column`` apply to files (default: the columns the model was fitted on, by name, else all but the time
    column).

    ``engine``: ``"local"`` (processes on this machine; ``workers=1`` scores in this process), ``"ray"`` or
    ``"dask"`` (optional extras ``ray`` / ``dask``, installed from a clone; the current Ray cluster or Dask
    client, else a local one for the job). ``workers``: default the cores (local, or a cluster started here) or
    the cluster's. ``threads``: torch (and BLAS) threads per worker, default the cores divided among the workers
    of a machine (see :func:`genad_fast.distributed.engines.thread_share`). ``chunk_size``: series per task
    (default about four tasks per worker); a task scores its chunk with one call
    (:func:`genad_fast.distributed.chunk.score_chunk`).

    ``out_dir``: each worker writes its series' scores there as ``[time column,] score, is_anomaly`` tables named
    after the input file's stem (or the dict key / ``<index>`` for in-memory series) with ``out_format``
    (``.csv``, ``.tsv``, ``.parquet``); ``return_scores=False`` then keeps the scores out of this process.

    A series that fails (an unreadable file, NaN in the data, the wrong channel count) does not stop the others:
    its row in the summary says ``failed`` and why, its score is None, and a :class:`SeriesFailedWarning` counts
    the failures. ``fail_fast=True`` raises :class:`SeriesFailedError` at the first instead. A progress bar over
    the series runs on stderr as tasks complete (``verbose=False``: none).

    The scores equal ``det.decision_function(series)`` in this process, bit for bit, whatever the engine,
    workers and chunks (the tests check it on local, Ray and Dask clusters).
    """
    items, kind = collect(series, id_column=id_column)
    ext = out_format if out_format.startswith(".") else "." + out_format
    table_kind("x" + ext, "out_format")  # .csv, .tsv, .parquet: a ValueError naming the others
    data, det = _model_bytes(model)
    names = output_names(items, out_dir, ext)
    payload = {"key": new_key(), "kind": "score", "model": data, "columns": columns, "time_column": time_column,
               "out_dir": None if out_dir is None else os.fspath(out_dir), "out_names": names,
               "return_results": bool(return_scores)}
    rows, info = run_job(engine, payload, items, workers=workers, threads=threads, chunk_size=chunk_size,
                         fail_fast=fail_fast, verbose=verbose, unit="file" if items[0].is_file else "series")
    scores = shaped(kind, items, [r.get("scores") for r in rows])
    return ScoreResult(scores, summary_frame(rows, with_output=out_dir is not None), info)
