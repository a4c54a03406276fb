"""``engine="ray"``: a pool of Ray actors, one per worker, each holding the model.

The payload (the model file's bytes) is put in Ray's object store once and handed to every actor's constructor,
which loads the model; tasks then go to whichever actor is free (:class:`ray.util.ActorPool`), carrying only
their chunk of series (or file paths, which the actor reads). Ray is imported here, when the engine is asked
for: ``pip install --no-build-isolation -e '.[ray]'`` from a clone.

The cluster is the one this process is connected to (``ray.init(...)`` beforehand, e.g. ``ray.init(address=
"auto")`` on a cluster); if there is none, a local one is started with ``workers`` CPUs (default: the cores)
and shut down after the job.
"""
from __future__ import annotations

import time
from typing import Iterator

from genad_fast.distributed import _worker
from genad_fast.distributed.engines import require, thread_share, usable_cores


class RayWorker:
    """The actor: the worker state of one job (the model loaded once, the thread count), and its tasks."""

    def __init__(self, payload: dict, threads: int) -> None:
        _worker.init(payload, threads)

    def run(self, payload: dict, task: list) -> list[dict]:
        return _worker.run(payload, task)


class RayEngine:
    """``workers`` actors of ``threads`` CPUs each (defaults: the cluster's CPUs, one each)."""

    name = "ray"

    def __init__(self, workers: int | None, threads: int | None) -> None:
        self.ray = require("ray")
        self._asked = (workers, threads)
        self._started = False
        self.start_seconds = 0.0

    def __enter__(self) -> "RayEngine":
        ray = self.ray
        workers, threads = self._asked
        if not ray.is_initialized():
            start = time.perf_counter()
            cpus = (workers or usable_cores()) * (threads or 1)
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
            self._started = True
            self.start_seconds = time.perf_counter() - start
        cluster = int(ray.cluster_resources().get("CPU", 0))
        self.workers = workers or max(1, cluster // (threads or 1))
        self.threads = threads or thread_share(cluster, self.workers)
        if self.workers * self.threads > cluster:  # Ray would wait forever for actors that cannot be placed
            self.__exit__(None, None, None)
            raise ValueError(f"workers={self.workers} x threads={self.threads} need {self.workers * self.threads} "
                             f"CPUs; the Ray cluster has {cluster}")
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def results(self, payload: dict, tasks: list) -> Iterator[list[dict]]:
        """Each task's rows, as tasks complete."""
        ray = self.ray
        from ray.util import ActorPool

        actor = ray.remote(num_cpus=self.threads)(RayWorker)
        payload_ref = ray.put(payload)  # once in the object store; each actor reads it from there
        actors = [actor.remote(payload_ref, self.threads) for _ in range(self.workers)]
        light = ray.put(_worker.task_payload(payload))
        pool = ActorPool(actors)
        try:
            for task in tasks:
                pool.submit(lambda a, t: a.run.remote(light, t), task)
            while pool.has_next():
                yield pool.get_next_unordered()
        finally:
            for a in actors:
                ray.kill(a)
