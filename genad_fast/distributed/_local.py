"""``engine="local"``: worker processes of :class:`concurrent.futures.ProcessPoolExecutor` on this machine.

Each worker is a fresh interpreter (the ``spawn`` start method: nothing of the caller's threads, CUDA state or
open files is inherited, and it behaves the same on Linux, macOS and Windows); the pool's initializer loads the
model once per worker and sets the worker's thread count. ``workers=1`` runs the tasks in this process instead,
with the same state and code, so the one-worker baseline pays no process start-up.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Iterator

from genad_fast.distributed import _worker
from genad_fast.distributed.engines import thread_share, usable_cores


class LocalEngine:
    """Worker processes on this machine; ``threads`` each (default: the cores divided among the workers)."""

    name = "local"

    def __init__(self, workers: int | None, threads: int | None) -> None:
        cores = usable_cores()
        self.workers = workers or cores
        self.threads = threads or thread_share(cores, self.workers)
        self.start_seconds = 0.0  # the pool starts with the job; its start-up is part of the job's time

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def results(self, payload: dict, tasks: list) -> Iterator[list[dict]]:
        """Each task's rows, as tasks complete."""
        if self.workers == 1:
            yield from self._in_process(payload, tasks)
            return
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_worker.init,
                                   initargs=(payload, self.threads))
        futures = [pool.submit(_worker.run, _worker.task_payload(payload), task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:  # fail-fast or an error: drop what has not started, wait for what runs
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _in_process(self, payload: dict, tasks: list) -> Iterator[list[dict]]:
        import torch

        before = torch.get_num_threads()
        _worker.init(payload, self.threads, worker_process=False)
        try:
            for task in tasks:
                yield _worker.run(payload, task)
        finally:  # the caller's process gets its thread counts back and keeps no model
            _worker.clear()
            torch.set_num_threads(before)

