"""Running a job on an engine: chunks in, rows out as tasks complete, a progress bar, fail-fast, the summary."""
from __future__ import annotations

import os
import sys
import time
import uuid
import warnings
from typing import Any

from genad_fast.distributed.collection import (Item, check_unique_names, chunked, file_name_for_id,
                                               output_name)
from genad_fast.distributed.engines import check_count, check_engine

__all__ = ["SeriesFailedError", "SeriesFailedWarning", "make_engine", "run_job", "summary_frame",
           "output_names", "new_key"]


class SeriesFailedError(RuntimeError):
    """``fail_fast=True``: the first series (or file) that failed, by id, with its error."""

    def __init__(self, series_id: Any, error: str, file: str | None = None) -> None:
        where = f" (file {file})" if file is not None and file != series_id else ""
        super().__init__(f"series {series_id!r}{where} failed: {error}")
        self.series_id = series_id
        self.file = file
        self.error = error


class SeriesFailedWarning(UserWarning):
    """Some series of a job failed; the summary's ``status`` and ``error`` columns say which and why."""


def make_engine(engine: str, workers: int | None, threads: int | None):
    """The engine object for ``engine`` (its optional package imported now: an ImportError naming the extra)."""
    name = check_engine(engine)
    workers = check_count(workers, "workers")
    threads = check_count(threads, "threads")
    if name == "ray":
        from genad_fast.distributed._ray import RayEngine

        return RayEngine(workers, threads)
    if name == "dask":
        from genad_fast.distributed._dask import DaskEngine

        return DaskEngine(workers, threads)
    from genad_fast.distributed._local import LocalEngine

    return LocalEngine(workers, threads)


def new_key() -> str:
    """A job's key: a worker builds its state (loads the model) once per key."""
    return uuid.uuid4().hex


def output_names(items: list[Item], out_dir: str | os.PathLike | None, ext: str) -> dict[int, str] | None:
    """Item index -> result file name in ``out_dir`` (created here); None without ``out_dir``. Two inputs that
    would write the same file are an error now, before any work."""
    if out_dir is None:
        return None
    names = {item.index: output_name(item.source, ext) if item.is_file else file_name_for_id(item.id, ext)
             for item in items}
    check_unique_names({(items[i].source if items[i].is_file else items[i].id): n for i, n in names.items()})
    for item in items:
        if item.is_file and os.path.abspath(os.path.join(out_dir, names[item.index])) == os.path.abspath(item.source):
            raise ValueError(f"out_dir {os.fspath(out_dir)!r}: the result of {item.source!r} would overwrite it; "
                             f"choose another directory")
    os.makedirs(out_dir, exist_ok=True)
    return names


def run_job(engine: str, payload: dict, items: list[Item], *, workers: int | None, threads: int | None,
            chunk_size: int | None, fail_fast: bool, verbose: bool, unit: str) -> tuple[list[dict], dict]:
    """Every item's row (input order) and the run's facts: ``{"engine", "workers", "threads", "tasks",
    "start_seconds" (starting a cluster for the job, 0 when one was running), "seconds" (the job, without
    that start-up), "model_loads" (worker pid -> models it loaded), "worker_cpu_seconds" (worker pid -> the
    CPU time of that process, all its threads, from its start to its last task: start-up, imports, model load
    and tasks; the in-process route reports this process's total), "worker_phases" (worker pid -> where its
    time went: ``before_init_cpu`` (CPU seconds of the process before the job's state: start-up, imports, the
    engine's runtime), ``init_cpu`` / ``init_s`` (the model load), ``tasks_cpu`` / ``tasks_s`` / ``tasks``, ``kept_freed_memory``
    (:func:`genad_fast.distributed._worker.keep_freed_memory` took effect))}``. ``threads``: per worker (a Dask worker
    picks its own share: the values seen, one int when all agree)."""
    from tqdm.auto import tqdm

    chunk_size = check_count(chunk_size, "chunk_size")
    eng = make_engine(engine, workers, threads)
    rows: dict[int, dict] = {}
    loads: dict[int, int] = {}
    cpu: dict[int, float] = {}
    phases: dict[int, dict] = {}
    threads_used: set[int] = set()
    with eng:
        tasks = chunked(items, eng.workers, chunk_size)
        start = time.perf_counter()
        results = eng.results(payload, tasks)
        with tqdm(total=len(items), unit=unit, file=sys.stderr, disable=not verbose, dynamic_ncols=True,
                  desc=f"{eng.name} x{eng.workers}") as bar:
            try:
                for task_rows in results:
                    for row in task_rows:
                        rows[row["index"]] = row
                        pid = row.pop("worker")
                        loads[pid] = row.pop("loads")
                        cpu[pid] = max(cpu.get(pid, 0.0), row.pop("process_cpu"))
                        phases[pid] = _later(phases.get(pid), row.pop("phases"))
                        threads_used.add(row.pop("threads"))
                        if fail_fast and row["status"] != "ok":
                            raise SeriesFailedError(row["id"], row["error"], row["file"])
                    bar.update(len(task_rows))
            finally:
                results.close()  # cancels what has not run (fail-fast, an error, Ctrl-C)
        seconds = time.perf_counter() - start
    threads = eng.threads or (threads_used.pop() if len(threads_used) == 1 else sorted(threads_used))
    info = {"engine": eng.name, "workers": eng.workers, "threads": threads, "tasks": len(tasks),
            "start_seconds": eng.start_seconds, "seconds": seconds, "model_loads": loads,
            "worker_cpu_seconds": cpu, "worker_phases": phases}
    ordered = [rows[item.index] for item in items]
    failed = [r for r in ordered if r["status"] != "ok"]
    if failed:
        first = failed[0]
        warnings.warn(f"{len(failed)} of {len(ordered)} series failed (the first: {first['id']!r}: "
                      f"{first['error']}); see the summary's status and error columns",
                      SeriesFailedWarning, stacklevel=3)
    return ordered, info


def _later(old: dict | None, new: dict) -> dict:
    """The later of two phase records of one worker (tasks complete out of order): the one with more tasks."""
    return new if old is None or new["tasks"] >= old["tasks"] else old


def summary_frame(rows: list[dict], with_output: bool):
    """The summary table: ``id, [file,] n_timestamps, n_flagged, seconds, status, error[, output]``."""
    import pandas as pd

    table = pd.DataFrame({
        "id": [r["id"] for r in rows],
        "file": [r["file"] for r in rows],
        "n_timestamps": pd.array([r["n"] for r in rows], dtype="Int64"),
        "n_flagged": pd.array([r["n_flagged"] for r in rows], dtype="Int64"),
        "seconds": [float(r["seconds"]) for r in rows],
        "status": [r["status"] for r in rows],
        "error": [r["error"] for r in rows],
    })
    if all(f is None or f == i for f, i in zip(table["file"], table["id"])):  # no files, or keyed by path
        table = table.drop(columns=["file"])
    if with_output:
        table["output"] = [r.get("output") for r in rows]
    return table


def shaped(kind: str, items: list[Item], values: list) -> list | dict:
    """``values`` (one per item, input order) as the collection came: a list, or a dict by id."""
    return list(values) if kind == "list" else {item.id: v for item, v in zip(items, values)}
