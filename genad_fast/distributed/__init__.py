"""Scale-out: many series and fleets of per-series models on this machine's processes, Ray or Dask; the
pandas entry point for Spark; and data-parallel training of one detector (torchrun DDP).

- :func:`score_many` — many series, one fitted model (loaded once per worker), ``engine="local" | "ray" | "dask"``.
- :func:`fit_fleet` — one detector per series, in parallel; fitted objects or one model file per series.
- :func:`score_frame` — a pandas DataFrame of one or many series in, scores out: what Spark's
  ``groupBy(...).applyInPandas(...)`` calls; :func:`score_chunk` is the function every engine runs per task.
- :func:`fit_distributed` — one detector trained data-parallel on shards by every process of a ``torchrun`` job
  (:mod:`genad_fast.distributed.ddp`; :func:`row_ranges` cuts one file into shards).

Ray and Dask are optional (the ``ray`` and ``dask`` extras: ``pip install --no-build-isolation -e '.[ray,dask]'``
from a clone) and imported only when their engine is asked for. See docs/scale_out.md.
"""
from genad_fast.distributed._run import SeriesFailedError, SeriesFailedWarning
from genad_fast.distributed.chunk import cached_model, score_chunk, score_frame
from genad_fast.distributed.collection import expand_paths
from genad_fast.distributed.engines import ENGINES
from genad_fast.distributed.fleet import FleetResult, fit_fleet
from genad_fast.distributed.score import ScoreResult, score_many

# torchrun / DDP (genad_fast/distributed/ddp.py and ddp_data.py): exported lazily, on first use. An eager import
# here would put genad_fast.distributed.ddp in sys.modules before ``python -m genad_fast.distributed.ddp`` runs
# it (runpy's "found in sys.modules" warning in every torchrun process), and costs torch.distributed's import.
_LAZY = {"fit_distributed": "genad_fast.distributed.ddp", "row_ranges": "genad_fast.distributed.ddp_data"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENGINES",
    "FleetResult",
    "ScoreResult",
    "SeriesFailedError",
    "SeriesFailedWarning",
    "cached_model",
    "expand_paths",
    "fit_distributed",
    "fit_fleet",
    "score_chunk",
    "score_frame",
    "row_ranges",
    "score_many",
]
