"""Scale-out: many series and fleets of per-series models on this machine's processes, Ray or Dask; the
pandas entry point for Spark; and data-parallel training of one detector (torchrun DDP).

- :func:`score_many` — many series, one fitted model (loaded once per worker), ``engine="local" | "ray" | "dask"``.
- :func:`fit_fleet` — one detector per series, in parallel; fitted objects or one model file per series.
- :func:`score_frame` — a pandas DataFrame of one or many series in, scores out: what Spark's
  ``groupBy(...).applyInPandas(...)`` calls; :func:`score_chunk` is the function every engine runs per task.

Ray and Dask are optional (``pip install genad-fast[ray]``, ``genad-fast[dask]``) and imported only when their
engine is asked for. See docs/scale_out.md.
"""
from genad_fast.distributed._run import SeriesFailedError, SeriesFailedWarning
from genad_fast.distributed.chunk import cached_model, score_chunk, score_frame
from genad_fast.distributed.collection import expand_paths
from genad_fast.distributed.engines import ENGINES
from genad_fast.distributed.fleet import FleetResult, fit_fleet
from genad_fast.distributed.score import ScoreResult, score_many

# --- torchrun / DDP (genad_fast/distributed/ddp.py, its own helper): its public names are exported here when
# --- that module lands, e.g. ``from genad_fast.distributed.ddp import ...`` and the names added to __all__.

__all__ = [
    "ENGINES",
    "FleetResult",
    "ScoreResult",
    "SeriesFailedError",
    "SeriesFailedWarning",
    "cached_model",
    "expand_paths",
    "fit_fleet",
    "score_chunk",
    "score_frame",
    "score_many",
]
