"""The GutenTAG part of the benchmark suite: a fixed, versioned set of synthetic series, generated offline.

GutenTAG (Wenig, Schmidl & Papenbrock, "TimeEval: a benchmarking toolkit for time series anomaly detection
algorithms", PVLDB 15(12), 2022; the ``timeeval-gutentag`` package) composes a series from base oscillations
and injects anomalies of named kinds. :data:`SUITE_VERSION` names the configuration set below; changing any
configuration means a new version (``gutentag_v2``), so published figures stay reproducible.

``gutentag_v1``: every base oscillation of GutenTAG 1.x except the two that read user input (``formula``,
``custom-input``), every anomaly kind, 24 univariate and 6 multivariate series. Each is semi-supervised: a
training series without anomalies of the same generator and a test series with them (two events of one kind
per univariate series, extremum anomalies three single points; the multivariate ones mix kinds over channels).
Lengths are 2,500 (train and test) so the suite runs on two cores. ``seed`` s of the evaluation is GutenTAG's
seed, so seeds draw new noise and anomaly positions from the same configuration.

Series are generated once into a cache directory (``GENAD_FAST_CACHE`` or ``~/.cache/genad_fast``) keyed by
the suite version, the GutenTAG version, a hash of the configuration and the seed.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from typing import Any

import numpy as np

from genad_fast._extras import install_hint

SUITE_VERSION = "gutentag_v1"
LENGTH = 2500
SMALL_LENGTH = 1000
#: Base oscillations of GutenTAG that generate a signal themselves (``formula`` and ``custom-input`` only
#: transform a user's input, so the suite leaves them out).
EXCLUDED_OSCILLATIONS = ("formula", "custom-input")

#: One parameter set per base oscillation (GutenTAG's names; frequency = periods per 100 points).
OSCILLATIONS: dict[str, dict[str, Any]] = {
    "sine": {"frequency": 2.0, "amplitude": 1.0, "variance": 0.05},
    "cosine": {"frequency": 1.25, "amplitude": 1.0, "variance": 0.05},
    "square": {"frequency": 1.0, "amplitude": 1.0, "duty": 0.5, "variance": 0.05},
    "sawtooth": {"frequency": 1.5, "amplitude": 1.0, "width": 0.7, "variance": 0.05},
    "dirichlet": {"frequency": 1.0, "amplitude": 1.0, "periodicity": 8.0, "variance": 0.05},
    "ecg": {"frequency": 2.0, "amplitude": 1.0, "ecg-sim-method": "simple", "variance": 0.05},
    "cylinder-bell-funnel": {"amplitude": 1.0, "avg-pattern-length": 60, "variance-pattern-length": 0.2,
                             "variance-amplitude": 0.1, "variance": 0.05},
    "random-walk": {"amplitude": 1.0, "smoothing": 0.01, "variance": 0.05},
    "polynomial": {"polynomial": [1.0, 0.5, -0.2], "variance": 0.05},
    "mls": {"amplitude": 1.0, "complexity": 6, "variance": 0.05},
    "random-mode-jump": {"frequency": 1.0, "channel-diff": 1.0, "channel-offset": 3.0, "random-seed": 7,
                         "variance": 0.05},
}
#: One parameter set per anomaly kind (GutenTAG's names and parameters).
KINDS: dict[str, dict[str, Any]] = {
    "amplitude": {"amplitude_factor": 2.0},
    "extremum": {"min": False, "local": False},
    "frequency": {"frequency_factor": 2.0},
    "mean": {"offset": 0.5},
    "pattern": {"sinusoid_k": 10.0, "cbf_pattern_factor": 2.0, "square_duty": 0.2, "sawtooth_width": 0.3},
    "pattern-shift": {"shift_by": 5, "transition_window": 10},
    "platform": {"value": 0.0},
    "trend": {"oscillation": {"kind": "polynomial", "polynomial": [0.0, 2.0]}},
    "variance": {"variance": 0.3},
    "mode-correlation": {},
}
#: The univariate series: (base oscillation, anomaly kind), every pair allowed by GutenTAG's compatibility table.
UNIVARIATE: tuple[tuple[str, str], ...] = (
    ("sine", "pattern"), ("sine", "frequency"), ("sine", "extremum"),
    ("cosine", "amplitude"), ("cosine", "pattern-shift"),
    ("square", "pattern"), ("square", "mean"),
    ("sawtooth", "pattern"), ("sawtooth", "frequency"),
    ("dirichlet", "variance"), ("dirichlet", "pattern-shift"),
    ("ecg", "frequency"), ("ecg", "pattern"), ("ecg", "platform"),
    ("cylinder-bell-funnel", "pattern"), ("cylinder-bell-funnel", "amplitude"),
    ("random-walk", "mean"), ("random-walk", "platform"), ("random-walk", "extremum"),
    ("polynomial", "trend"), ("polynomial", "variance"),
    ("mls", "pattern"), ("mls", "trend"), ("mls", "amplitude"),
)
#: The multivariate series: name -> (base oscillation per channel, [(channel, kind, position), ...]).
MULTIVARIATE: dict[str, tuple[tuple[str, ...], tuple[tuple[int, str, str], ...]]] = {
    "mv-periodic-mixed": (("sine", "ecg", "square"),
                          ((0, "pattern", "middle"), (1, "platform", "end"), (2, "extremum", "beginning"))),
    "mv-shapes": (("cylinder-bell-funnel", "sawtooth", "random-walk"),
                  ((0, "variance", "middle"), (1, "frequency", "end"), (2, "mean", "beginning"))),
    "mv-sines-5": (("sine", "cosine", "sine", "cosine", "sine"),
                   ((3, "amplitude", "middle"), (1, "trend", "end"), (4, "pattern-shift", "beginning"))),
    "mv-noise-codes": (("dirichlet", "mls", "cosine"),
                       ((0, "pattern-shift", "middle"), (1, "pattern", "end"), (2, "mean", "beginning"))),
    "mv-mode-jump-3": (("random-mode-jump",) * 3, ((0, "mode-correlation", "middle"),)),
    "mv-mode-jump-2": (("random-mode-jump",) * 2, ((1, "mode-correlation", "end"),)),
}
#: The small profile's series (shorter, :data:`SMALL_LENGTH`): one periodic, one aperiodic, one multivariate.
SMALL = ("sine-pattern", "random-walk-mean", "mv-periodic-mixed")


def _anomaly(channel: int, kind: str, position: str, length: int) -> dict:
    return {"position": position, "length": 1 if kind == "extremum" else length, "channel": channel,
            "kinds": [{"kind": kind, **KINDS[kind]}]}


def suite_configs(length: int = LENGTH, names: tuple[str, ...] | None = None) -> list[dict]:
    """The GutenTAG ``timeseries`` entries of :data:`SUITE_VERSION` (all, or those in ``names``), in order."""
    out: list[dict] = []
    for bo, kind in UNIVARIATE:
        if kind == "extremum":
            anomalies = [_anomaly(0, kind, p, 1) for p in ("beginning", "middle", "end")]
        else:
            anomalies = [_anomaly(0, kind, "middle", 60), _anomaly(0, kind, "end", 120)]
        out.append({"name": f"{bo}-{kind}", "length": length, "semi-supervised": True,
                    "base-oscillations": [{"kind": bo, **OSCILLATIONS[bo]}], "anomalies": anomalies})
    for name, (bos, events) in MULTIVARIATE.items():
        out.append({"name": name, "length": length, "semi-supervised": True,
                    "base-oscillations": [{"kind": bo, **OSCILLATIONS[bo]} for bo in bos],
                    "anomalies": [_anomaly(c, k, p, 100) for c, k, p in events]})
    if names is not None:
        unknown = sorted(set(names) - {c["name"] for c in out})
        if unknown:
            raise ValueError(f"unknown {SUITE_VERSION} series {unknown}; known: {[c['name'] for c in out]}")
        out = [c for c in out if c["name"] in names]
    return out


def config_kinds(configs: list[dict]) -> tuple[set[str], set[str]]:
    """(base oscillations, anomaly kinds) used by ``configs``."""
    bos = {bo["kind"] for c in configs for bo in c["base-oscillations"]}
    kinds = {k["kind"] for c in configs for a in c["anomalies"] for k in a["kinds"]}
    return bos, kinds


def installed_kinds() -> tuple[set[str], set[str]]:
    """(base oscillations, anomaly kinds) the installed GutenTAG knows, less :data:`EXCLUDED_OSCILLATIONS`."""
    from gutenTAG.utils.global_variables import ANOMALY_TYPE_NAMES, BASE_OSCILLATION_NAMES

    def values(ns) -> set[str]:
        return {v for k, v in vars(ns).items() if not k.startswith("_") and isinstance(v, str)}

    return values(BASE_OSCILLATION_NAMES) - set(EXCLUDED_OSCILLATIONS), values(ANOMALY_TYPE_NAMES)


def default_cache_dir() -> str:
    return os.environ.get("GENAD_FAST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "genad_fast")


def _gutentag_version() -> str:
    from genad_fast import provenance

    version = provenance.dist_version("timeeval-gutentag") or provenance.dist_version("timeeval-GutenTAG")
    if version is None:
        raise ImportError(f"the GutenTAG suite needs timeeval-gutentag; {install_hint('eval')}")
    return version


def cache_path(config: dict, seed: int, cache_dir: str | None = None) -> str:
    """Where the series of ``config`` and ``seed`` is cached (suite version, GutenTAG version, config hash)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(cache_dir or default_cache_dir(), SUITE_VERSION, f"gutentag-{_gutentag_version()}",
                        f"{config['name']}-{digest}-seed{seed}.npz")


def generate(config: dict, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train ``[T, C]``, test ``[T, C]``, labels ``[T]``) of one configuration, generated by GutenTAG now."""
    try:
        with warnings.catch_warnings():  # its validator imports jsonschema's deprecated RefResolver
            warnings.simplefilter("ignore", DeprecationWarning)
            from gutenTAG import GutenTAG
            from gutenTAG.timeseries import TrainingType
    except ImportError as exc:
        raise ImportError(f"the GutenTAG suite needs timeeval-gutentag ({exc}); {install_hint('eval')}") \
            from exc
    # GutenTAG draws progress bars on stderr and warns about parameters it ignores: keep the run's log clean
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = GutenTAG.from_dict({"timeseries": [config]}, seed=int(seed)).generate(return_timeseries=True)
    by_type = {ts.training_type: ts.timeseries for ts in out}
    test, train = by_type[TrainingType.TEST], by_type[TrainingType.TRAIN_NO_ANOMALIES]
    labels = test.pop("is_anomaly").to_numpy().astype(np.int8)
    if train.pop("is_anomaly").to_numpy().any():
        raise RuntimeError(f"GutenTAG's training series of {config['name']!r} holds anomalies")
    return train.to_numpy(np.float64), test.to_numpy(np.float64), labels


def load(config: dict, seed: int, cache_dir: str | None = None):
    """The series of ``config`` for ``seed`` as :class:`~genad_fast.data.SeriesData`, from the cache or
    generated and cached (written to a temporary name, then renamed, so a killed run leaves no torn file)."""
    from genad_fast.data.ucr import series_from_labels

    path = cache_path(config, seed, cache_dir)
    if os.path.isfile(path):
        with np.load(path) as z:
            train, test, labels = z["train"], z["test"], z["labels"]
    else:
        train, test, labels = generate(config, seed)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, train=train, test=test, labels=labels)
        os.replace(tmp, path)
    params = dict(source=f"GutenTAG ({SUITE_VERSION})", config=config, seed=seed)
    return series_from_labels(train, test, labels, params, dtype=np.float32)


def gutentag_tasks(small: bool = False, cache_dir: str | None = None) -> list:
    """The suite's GutenTAG series as evaluation tasks (``gt-<name>``); the small profile's three if ``small``."""
    from genad_fast.evaluation.tasks import Task

    try:
        _gutentag_version()
    except ImportError as exc:
        return [Task(f"gt-{SUITE_VERSION}", "series", None, reason=f"unavailable: {exc}")]
    configs = suite_configs(SMALL_LENGTH, SMALL) if small else suite_configs()
    return [Task(f"gt-{c['name']}", "series", (lambda s, c=c: load(c, s, cache_dir)), group="gutentag")
            for c in configs]
