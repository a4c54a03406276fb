"""What ``genad-fast eval`` runs: detector names (registry names or aliases) and data set names resolved.

:func:`resolve_detector` turns a name into a :class:`DetectorSpec` (the class, or why it is unavailable);
:func:`resolve_datasets` turns data set names into :class:`Task` objects, each loading its data for a seed.
A name that cannot run here resolves to a spec or task that says why, so the report shows it as a row.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from genad_fast._extras import install_hint

DEFAULT_DETECTORS = ("flow", "diffusion", "anogan", "vae", "deepsvdd", "ae", "pca", "kde", "knn", "iforest",
                     "ocsvm", "lof")
DEFAULT_DATASETS = ("synthetic", "kdd135", "digits")
#: The data set names :func:`resolve_datasets` knows, as the CLI's errors list them.
DATASET_CHOICES = "synthetic, kdd135, digits, digits-<0..9>, wdbc, wine, file:<path>"
#: ``Task.kind`` of a name :func:`resolve_datasets` does not know (the CLI rejects it before any run).
UNKNOWN_KIND = "unknown"
#: The issue's short names for registered detectors, with fixed parameters.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ae": ("autoencoder", {}),
    "dcae": ("autoencoder", {}),
    "deepsvdd": ("deep_svdd", {}),
    "deepsvdd-soft": ("deep_svdd", {"objective": "soft-boundary"}),
    # FlowDetector's corrected likelihood scores (issue #17 point 3; docs/flow_scores.md)
    "flow-nll": ("flow", {"anomaly_score": "nll"}),
    "flow-typicality": ("flow", {"anomaly_score": "typicality"}),
    "flow-lr": ("flow", {"anomaly_score": "likelihood_ratio"}),
    "flow-complexity": ("flow", {"anomaly_score": "complexity"}),
}
#: ``--quick``: short training for a smoke run (each only where the detector has the parameter). Five epochs of
#: a series' 2,500 windows are ~100 optimiser steps, but five of a 115-row table (a digits class) at batch 128 are
#: five: ``min_steps`` gives small data the same ~200 steps, so a quick run ranks detectors rather than how few
#: rows a table has (digits, wine, wdbc at min_steps=200, one seed: mean AUROC VAE 0.730 -> 0.967, Deep SVDD
#: 0.731 -> 0.964, autoencoder 0.973 -> 0.977; a few seconds more in all).
QUICK_PARAMS: dict[str, Any] = {"epochs": 5, "pretrain_epochs": 3, "warm_up_epochs": 2, "encoder_epochs": 5,
                                "iterations": 100, "min_steps": 200}


# ---------------------------------------------------------------------------------------------- detectors
@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """A name as asked for, the registry entry it resolves to, fixed parameters, and the class or why not."""

    name: str
    registry_name: str
    params: dict
    cls: type | None
    reason: str | None = None


def resolve_detector(name: str) -> DetectorSpec:
    """``name`` (registry name or alias) -> :class:`DetectorSpec`; ``cls`` None with ``reason`` if unavailable."""
    from genad_fast.detectors import get_detector

    key = name.strip().lower()
    registry_name, params = ALIASES.get(key, (key, {}))
    try:
        return DetectorSpec(key, registry_name, dict(params), get_detector(registry_name))
    except (ValueError, TypeError) as exc:
        return DetectorSpec(key, registry_name, dict(params), None, f"unavailable: {exc}")


# ---------------------------------------------------------------------------------------------- data sets
@dataclasses.dataclass(frozen=True)
class Task:
    """A data set as the evaluation sees it: ``load(seed)`` -> SeriesData/TabularData.

    ``kind`` is "series" or "tabular"; ``detector_params`` are set on every detector (e.g. digits are
    already scaled by the protocol, so ``normalize=False``); ``reason`` says why the task cannot run.
    ``group`` names tasks averaged together in the summary (the ten digit classes).
    """

    name: str
    kind: str
    load: Callable[[int], Any] | None
    seeded: bool = True
    detector_params: dict = dataclasses.field(default_factory=dict)
    reason: str | None = None
    group: str | None = None


def _synthetic(quick: bool) -> Task:
    from genad_fast.data import ALL_SERIES_TYPES, make_series

    kw = dict(T=3000, C=4, period=32) if quick else dict(T=10000, C=8, period=64)
    return Task("synthetic", "series", lambda s: make_series(anomaly_types=ALL_SERIES_TYPES, seed=s, **kw))


def _kdd135() -> Task:
    from genad_fast.data import load_kdd_tsad_135

    try:
        import aeon.datasets  # noqa: F401
    except ImportError as exc:
        return Task("kdd135", "series", None, reason=f"unavailable: needs aeon ({exc}); "
                                                     + install_hint("data"))
    return Task("kdd135", "series", lambda s: load_kdd_tsad_135(), seeded=False)


def _digits(classes: Sequence[int]) -> list[Task]:
    from genad_fast.data import load_digits_one_class

    group = "digits" if len(classes) > 1 else None
    return [Task(f"digits-{c}", "tabular", (lambda s, c=c: load_digits_one_class(c, seed=s)),
                 detector_params={"normalize": False}, group=group) for c in classes]


def resolve_datasets(names: Sequence[str], *, quick: bool = False, label_column: str | None = None,
                     train_fraction: float = 0.5, file_kind: str = "series") -> list[Task]:
    """Data set names -> tasks: ``synthetic``, ``kdd135``, ``digits`` (ten one-class tasks) or ``digits-<k>``,
    ``wdbc``, ``wine``, ``file:<path>`` (a CSV/TSV/Parquet file, ``label_column`` its labels). An unknown
    name is a task with ``reason`` set, so the report shows it."""
    from genad_fast.data import load_file, load_wdbc, load_wine

    tasks: list[Task] = []
    for raw in names:
        name = raw.strip()
        low = name.lower()
        if low == "synthetic":
            tasks.append(_synthetic(quick))
        elif low in ("kdd135", "kdd-tsad-135", "ucr135"):
            tasks.append(_kdd135())
        elif low == "digits":
            tasks.extend(_digits(range(10)))
        elif low.startswith(("digits-", "digits:")) and low[7:].isdigit() and 0 <= int(low[7:]) <= 9:
            tasks.extend(_digits([int(low[7:])]))
        elif low == "wdbc":
            tasks.append(Task("wdbc", "tabular", lambda s: load_wdbc(seed=s)))
        elif low == "wine":
            tasks.append(Task("wine", "tabular", lambda s: load_wine(seed=s)))
        elif low.startswith("file:"):
            path = name[5:]
            tasks.append(Task(os.path.basename(path) or path, file_kind,
                              lambda s, p=path: load_file(p, label_column=label_column, kind=file_kind,
                                                          train_fraction=train_fraction), seeded=False))
        else:
            tasks.append(Task(name, UNKNOWN_KIND, None, reason=f"unavailable: unknown data set; choose from "
                                                                f"{DATASET_CHOICES}"))
    return tasks
