"""``fit_fleet``: one detector per series (a fleet of per-series models), fitted in parallel."""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from genad_fast.distributed import _worker
from genad_fast.distributed._run import new_key, output_names, run_job, shaped, summary_frame
from genad_fast.distributed.collection import collect

__all__ = ["FleetResult", "fit_fleet", "detector_spec"]


class FleetResult(NamedTuple):
    """What :func:`fit_fleet` returns (unpacks as ``models, summary, info``).

    - ``models``: per series, the fitted detector (``return_models=True``, no ``out_dir``) or the path of its
      model file (``out_dir``); None for a series that failed. A list in input order, or a dict by id.
    - ``summary``: a pandas DataFrame, one row per series: ``id``, ``file`` (file inputs), ``n_timestamps``
      (training scores: timestamps or rows), ``n_flagged`` (training scores above its ``threshold_``),
      ``seconds`` (reading and fitting), ``status``, ``error``, ``output`` (with ``out_dir``).
    - ``info``: the run, as :class:`~genad_fast.distributed.score.ScoreResult`'s.
    """

    models: list | dict
    summary: Any
    info: dict


def detector_spec(detector, params: dict | None) -> tuple[type, dict]:
    """``(class, parameters)`` of a fleet's detectors, checked now (a bad parameter fails before any fit).

    ``detector``: a registry name (``"flow"``) with ``params``, or a detector object whose class and
    ``get_params()`` are cloned for every series (fitted or not: nothing of a fit is carried over).
    """
    from genad_fast.detectors import BaseDetector, get_detector

    if isinstance(detector, BaseDetector):
        if params is not None:
            raise TypeError("params= goes with a detector name; set the parameters on the detector object instead")
        cls, params = type(detector), detector.get_params(deep=False)
    elif isinstance(detector, str):
        cls, params = get_detector(detector), dict(params or {})
    else:
        raise TypeError(f"detector must be a registered name or a detector object, got {type(detector).__name__}")
    prototype = cls(**params)
    prototype._check_base_params()
    return cls, prototype.get_params(deep=False)


def fit_fleet(detector, series, *, params: dict | None = None, engine: str = "local", workers: int | None = None,
              threads: int | None = None, chunk_size: int | None = None, columns: list[str] | None = None,
              time_column: str | None = None, id_column: str | None = None,
              out_dir: str | os.PathLike | None = None, return_models: bool = True, fail_fast: bool = False,
              verbose: bool = True) -> FleetResult:
    """Fit one detector per series, in parallel on ``engine``.

    ``detector`` and ``params``: see :func:`detector_spec`; every series gets a fresh detector with the same
    parameters (the same ``seed``), so each model equals ``cls(**params).fit(that series)`` fitted alone in this
    process, bit for bit. ``series``, ``engine``, ``workers``, ``threads``, ``chunk_size``, ``columns``,
    ``time_column``, ``id_column``, ``fail_fast``, ``verbose``: as :func:`~genad_fast.distributed.score.
    score_many` (files are read by the workers; ``columns`` default: all but the time column).

    ``out_dir``: each worker writes one model file per series there (``<file stem>.pt``, or ``<dict key>.pt`` /
    ``<index>.pt``), and ``models`` holds the paths. Otherwise the fitted detectors come back as model-file bytes
    and are loaded here (``return_models=False``: neither, the summary only). A series whose fit fails is
    reported in the summary with its error while the others go on (``fail_fast=True``: raise at the first).
    """
    items, kind = collect(series, id_column=id_column)
    spec = detector_spec(detector, params)
    names = output_names(items, out_dir, ".pt")
    payload = {"key": new_key(), "kind": "fit", "spec": spec, "columns": columns, "time_column": time_column,
               "out_dir": None if out_dir is None else os.fspath(out_dir), "out_names": names,
               "return_results": bool(return_models)}
    rows, info = run_job(engine, payload, items, workers=workers, threads=threads, chunk_size=chunk_size,
                         fail_fast=fail_fast, verbose=verbose, unit="fit")
    models: list[Any] = []
    for row in rows:
        if row["status"] != "ok":
            models.append(None)
        elif row.get("output") is not None:
            models.append(row["output"])
        elif row.get("model") is not None:
            models.append(_worker.detector_from_bytes(row.pop("model")))
        else:
            models.append(None)
    return FleetResult(shaped(kind, items, models), summary_frame(rows, with_output=out_dir is not None), info)
