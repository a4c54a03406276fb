"""``engine="dask"``: tasks on the workers of a Dask distributed cluster.

The payload (the model file's bytes) is scattered to every worker once (``client.scatter(..., broadcast=True)``);
each task receives it as an argument that already sits on the worker, and the worker process loads the model at
its first task of the job and keeps it for the next ones (:func:`genad_fast.distributed._worker.ensure`). Dask
is imported here, when the engine is asked for: ``pip install --no-build-isolation -e '.[dask]'`` from a clone.

The cluster is the one of the current client (``distributed.get_client()``: a ``Client`` made beforehand);
if there is none, a ``LocalCluster`` of ``workers`` processes with one thread each (default: the cores) is
started and closed after the job.
"""
from __future__ import annotations

import logging
import time
from typing import Iterator
from urllib.parse import urlparse

from genad_fast.distributed import _worker
from genad_fast.distributed.engines import require, thread_share, usable_cores


def _host(address: str) -> str:
    return urlparse(address).hostname or address


def dask_task(payload: dict, task: list, host_threads: dict[str, int], threads: int | None) -> list[dict]:
    """One task on a Dask worker: the worker state for the payload (built at its first task), then the task."""
    if threads is None:  # this process's share of its machine: the cores over the task threads on that host
        from distributed import get_worker

        busy = host_threads.get(_host(get_worker().address), 1)
        threads = thread_share(usable_cores(), busy)
    _worker.ensure(payload, threads)
    return _worker.run(payload, task)


class DaskEngine:
    """Tasks on the workers of the current Dask client, or of a LocalCluster started for the job."""

    name = "dask"

    def __init__(self, workers: int | None, threads: int | None) -> None:
        self.distributed = require("dask")
        self._asked = (workers, threads)
        self._own = None
        self.start_seconds = 0.0

    def __enter__(self) -> "DaskEngine":
        distributed = self.distributed
        workers, threads = self._asked
        try:
            self.client = distributed.get_client()
        except ValueError:  # no client: a local cluster for this job
            start = time.perf_counter()
            cluster = distributed.LocalCluster(n_workers=workers or usable_cores(), threads_per_worker=1,
                                               processes=True, dashboard_address=None,
                                               silence_logs=logging.ERROR)
            self.client = distributed.Client(cluster)
            self._own = cluster
            self.start_seconds = time.perf_counter() - start
        nthreads = dict(sorted(self.client.nthreads().items()))
        if not nthreads:
            self.__exit__(None, None, None)
            raise ValueError("the Dask cluster has no workers")
        if workers is not None and workers > len(nthreads):
            self.__exit__(None, None, None)
            raise ValueError(f"workers={workers}, but the Dask cluster has {len(nthreads)} workers")
        self.addresses = list(nthreads)[: workers or len(nthreads)]
        self.workers = len(self.addresses)
        self.host_threads: dict[str, int] = {}
        for address in self.addresses:
            host = _host(address)
            self.host_threads[host] = self.host_threads.get(host, 0) + nthreads[address]
        self.threads = threads  # None: each worker computes its share on its own machine (dask_task)
        return self

    def __exit__(self, *exc) -> None:
        if self._own is not None:
            self.client.close()
            self._own.close()
            self._own = None

    def results(self, payload: dict, tasks: list) -> Iterator[list[dict]]:
        """Each task's rows, as tasks complete."""
        distributed = self.distributed
        client = self.client
        # One scattered object: a dict or list would be scattered item by item.
        [shared] = client.scatter([payload], broadcast=True, hash=False, workers=self.addresses)
        futures = [client.submit(dask_task, shared, task, self.host_threads, self.threads, pure=False,
                                 workers=self.addresses, allow_other_workers=False) for task in tasks]
        try:
            for future in distributed.as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures + [shared])
