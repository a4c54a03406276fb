"""What runs inside a worker process, whatever the engine: its state (the model, loaded once), its thread
count, and the two kinds of task (score a chunk of series with the model; fit one detector per series).

A job's *payload* reaches each worker once (the local pool's initializer, a Ray actor's constructor, a Dask
broadcast): ``{"key", "kind": "score" | "fit", "model": model-file bytes | "spec": (class, params), options}``.
A *task* is a chunk of :class:`~genad_fast.distributed.collection.Item`; its result is one row per item:
``{"index", "id", "n", "n_flagged", "seconds", "status", "error", ...}`` plus the scores, the written file, or
the fitted model's file bytes. A series that fails gives a row with ``status="failed"`` and the error; the
other series of the chunk go on.
"""
from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

from genad_fast.distributed.chunk import score_chunk, score_one, scores_table
from genad_fast.distributed.collection import Item, read_series

_LOCK = threading.Lock()
#: This process's worker state: the payload key it was built for, the detector, the thread count, and how
#: many times this job's model was loaded here (the tests hold it to one per worker and job).
_STATE: dict[str, Any] = {"loads": 0}


# ---------------------------------------------------------------------------------------------- model bytes
def detector_bytes(det) -> bytes:
    """The model file of a fitted detector (``det.save``), as bytes: what travels to the workers."""
    fd, tmp = tempfile.mkstemp(prefix="genad_fast-model-", suffix=".pt")
    os.close(fd)
    try:
        det.save(tmp)
        with open(tmp, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(tmp)


def detector_from_bytes(data: bytes):
    """The detector of model-file bytes, through the model-file loader (every check of ``genad_fast.load``)."""
    from genad_fast.detectors import load

    fd, tmp = tempfile.mkstemp(prefix="genad_fast-model-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return load(tmp, map_location="cpu")
    finally:
        os.unlink(tmp)


# ---------------------------------------------------------------------------------------------- state
def set_threads(threads: int):
    """This worker's share of the cores, for torch's intra-op pool and for the BLAS/OpenMP pools that numpy,
    scipy and scikit-learn use (threadpoolctl): several workers on one machine must not each take every core.
    Returns threadpoolctl's limiter (``restore_original_limits()`` undoes the BLAS part), or None."""
    import torch

    torch.set_num_threads(int(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn depends on it; without it only torch's pool is limited
        return None
    return threadpool_limits(int(threads))


#: glibc's mallopt parameters (malloc.h) and the values a worker sets (:func:`keep_freed_memory`).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): blocks above it are mmapped
TRIM_THRESHOLD = 256 * 2**20  # free memory at the heap's top kept for the next task before it is returned
KEEP_FREED_MEMORY_ENV = "GENAD_FAST_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory a scoring call frees for the next call, instead of handing it back
    to the OS and page-faulting it in again (zeroed) at the next call. True when set (Linux with glibc).

    Why: glibc's default *dynamic* mmap threshold rises to the size of the large blocks a process frees, so a
    process that allocates the same large tensors call after call soon serves them from its heap. Setting any
    malloc tunable turns that adaptation off, and Dask's nanny does: it starts every worker with
    ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``). Every block over 128 KiB is then
    a fresh ``mmap``: scoring one series of 5,000 x 8 with a FlowDetector took about 35,000 page faults per
    call instead of 5,000, and about 1.7x the CPU time (bench/scale_out.py, docs/scale_out.md). This sets the
    threshold to glibc's largest and keeps up to :data:`TRIM_THRESHOLD` bytes free at the heap's top, so the
    worker re-uses the same pages task after task, whatever its environment (its peak memory is the same; its
    resident memory stays near that peak between tasks). Only worker processes call it, never the caller's.
    ``GENAD_FAST_KEEP_FREED_MEMORY=0`` in the workers' environment turns it off (the allocator as it came).
    """
    flag = os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip()
    if flag not in ("0", "1"):
        raise ValueError(f"{KEEP_FREED_MEMORY_ENV} must be 0 or 1, got {flag!r}")
    if flag == "0" or not sys.platform.startswith("linux") or not _glibc():
        return False  # musl, macOS, Windows: other allocators, other defaults; nothing to restore
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # the name is unknown to this C library
        return False


def init(payload: dict, threads: int, worker_process: bool = True) -> None:
    """Build this process's worker state for ``payload`` (the local pool's initializer, a Ray actor's __init__;
    ``worker_process=False``: the in-process route, in the caller's process, whose allocator is left alone)."""
    with _LOCK:
        _init_locked(payload, threads, worker_process)


def _init_locked(payload: dict, threads: int, worker_process: bool = True) -> None:
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    _restore_blas()
    _STATE["blas_limits"] = set_threads(threads)
    kept = keep_freed_memory() if worker_process else False
    det = None
    if payload["kind"] == "score":
        det = detector_from_bytes(payload["model"])
        det.verbose = False  # the job's progress bar counts series; per-call bars would interleave
        # Loads for this job in this process (a Dask worker outlives jobs): one, unless a worker reloads.
        _STATE["loads"] = _STATE["loads"] + 1 if _STATE.get("key") == payload["key"] else 1
    _STATE.update(key=payload["key"], det=det, threads=threads)
    # Where a worker's CPU time goes (bench/scale_out.py prints it): before this state (the process's start,
    # its imports of torch and genad_fast, the engine's own runtime), building it (the model load), the tasks.
    _STATE["phases"] = {"before_init_cpu": cpu_before, "init_cpu": time.process_time() - cpu_before,
                        "init_s": time.perf_counter() - wall_before, "tasks_cpu": 0.0, "tasks_s": 0.0, "tasks": 0,
                        "kept_freed_memory": kept}


def ensure(payload: dict, threads: int) -> None:
    """Build the state unless this process already holds it for this payload (Dask: the first task on a worker
    loads the model, the next ones reuse it; a new job's payload replaces it)."""
    with _LOCK:
        if _STATE.get("key") != payload["key"]:
            _init_locked(payload, threads)


def clear() -> None:
    """Drop the state and undo the BLAS thread limit (the in-process route: the caller's process keeps neither)."""
    with _LOCK:
        _restore_blas()
        for key in ("key", "det", "threads", "phases"):
            _STATE.pop(key, None)


def _restore_blas() -> None:
    limits = _STATE.pop("blas_limits", None)
    if limits is not None:
        limits.restore_original_limits()


def task_payload(payload: dict) -> dict:
    """The payload without the model bytes: what every task carries (the model went to each worker once)."""
    return {k: v for k, v in payload.items() if k != "model"}


def run(payload: dict, task: list[Item]) -> list[dict]:
    """Run one task of ``payload``'s kind on this worker's state; one result row per item."""
    if _STATE.get("key") != payload["key"]:
        raise RuntimeError("worker state missing: the engine did not initialise this worker for the job")
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    rows = _score_task(payload, task) if payload["kind"] == "score" else _fit_task(payload, task)
    phases = _STATE["phases"]
    phases["tasks_cpu"] += time.process_time() - cpu_before
    phases["tasks_s"] += time.perf_counter() - wall_before
    phases["tasks"] += 1
    for row in rows:
        row.update(worker=os.getpid(), loads=_STATE["loads"], threads=_STATE["threads"],
                   process_cpu=time.process_time(),  # this process's CPU seconds so far, all threads
                   phases=dict(phases))
    return rows


# ---------------------------------------------------------------------------------------------- rows
def error_text(exc: BaseException) -> str:
    """An exception as one line, with its type: what the summary's ``error`` column holds."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _row(item: Item, seconds: float, error: BaseException | None = None, **extra) -> dict:
    row = {"index": item.index, "id": item.id, "file": item.source if item.is_file else None,
           "n": None, "n_flagged": None, "seconds": seconds,
           "status": "ok" if error is None else "failed", "error": "" if error is None else error_text(error)}
    row.update(extra)
    return row


def _load(item: Item, columns, time_column):
    """``(data, time values or None)`` of an item: a file is read here, on the worker."""
    if item.is_file:
        return read_series(item.source, columns, time_column)
    return item.source, None


def _output_path(payload: dict, item: Item) -> str | None:
    names = payload.get("out_names")
    return None if names is None else os.path.join(payload["out_dir"], names[item.index])


# ---------------------------------------------------------------------------------------------- score
def _score_task(payload: dict, task: list[Item]) -> list[dict]:
    det = _STATE["det"]
    columns = payload.get("columns")
    if columns is None and getattr(det, "feature_names_in_", None) is not None:
        columns = list(det.feature_names_in_)  # files: the columns the model was fitted on, by name
    rows: dict[int, dict] = {}
    loaded: list[tuple[Item, Any, Any, float]] = []
    for item in task:
        start = time.perf_counter()
        try:
            data, when = _load(item, columns, payload.get("time_column"))
            loaded.append((item, data, when, time.perf_counter() - start))
        except Exception as exc:
            rows[item.index] = _row(item, time.perf_counter() - start, exc)
    start = time.perf_counter()
    try:
        results: list[Any] = score_chunk(det, [data for _, data, _, _ in loaded])
    except Exception:
        # One bad series fails the packed call; score each alone to say which (same numbers for the others).
        results = []
        for _, data, _, _ in loaded:
            try:
                results.append(score_one(det, data))
            except Exception as exc:
                results.append(exc)
    share = (time.perf_counter() - start) / max(1, len(loaded))  # a packed call's time, split evenly
    for (item, _, when, read_s), scores in zip(loaded, results):
        begin = time.perf_counter()
        if isinstance(scores, BaseException):
            rows[item.index] = _row(item, read_s + share, scores)
            continue
        out = _output_path(payload, item)
        try:
            if out is not None:
                from genad_fast.data.files import write_table

                write_table(scores_table(scores, det.threshold_, when, payload.get("time_column")), out)
        except Exception as exc:
            rows[item.index] = _row(item, read_s + share + time.perf_counter() - begin, exc)
            continue
        rows[item.index] = _row(item, read_s + share + time.perf_counter() - begin, n=int(scores.shape[0]),
                                n_flagged=int(np.count_nonzero(scores > det.threshold_)), output=out,
                                scores=scores if payload.get("return_results", True) else None)
    return [rows[item.index] for item in task]


# ---------------------------------------------------------------------------------------------- fit
def _fit_task(payload: dict, task: list[Item]) -> list[dict]:
    from sklearn.base import clone

    cls, params = payload["spec"]
    prototype = cls(**params)
    rows = []
    for item in task:
        start = time.perf_counter()
        try:
            data, _ = _load(item, payload.get("columns"), payload.get("time_column"))
            det = clone(prototype)
            verbose, det.verbose = det.verbose, False  # one bar for the whole fleet, not one per fit
            det.fit(data)
            det.verbose = verbose
            out = _output_path(payload, item)
            model = None
            if out is not None:
                det.save(out)
            elif payload.get("return_results", True):
                model = detector_bytes(det)
            scores = det.decision_scores_
            rows.append(_row(item, time.perf_counter() - start, n=int(scores.shape[0]),
                             n_flagged=int(np.count_nonzero(scores > det.threshold_)), output=out, model=model))
        except Exception as exc:
            rows.append(_row(item, time.perf_counter() - start, exc))
    return rows
