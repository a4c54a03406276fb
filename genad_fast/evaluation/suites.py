"""The benchmark suites of ``genad-fast eval --suite NAME``: fixed sets of tasks, seeds and training lengths.

- ``small``: the CI profile (at most 5 minutes on two cores with every detector): three short GutenTAG series
  (periodic, aperiodic, multivariate) and wine, one seed, ``--quick`` training.
- ``full``: wdbc, wine, UCR 135 (kdd135), every GutenTAG series of
  :data:`~genad_fast.evaluation.gutentag_suite.SUITE_VERSION` spread over their generators, the ten digits
  one-class tasks; three seeds;
  ``--quick`` training (the deep detectors' defaults take minutes per series on two cores, which would make the
  full suite a day's run).
- ``gutentag`` / ``real``: the synthetic or the real half of ``full``. Runs of the two halves (at the same training
  profile) merge into one ``full`` report with ``--from-runs`` (:data:`FULL_PARTS`).
- ``tsb:<dir or glob>``: TSB-AD-format files (:mod:`~genad_fast.evaluation.tsb_files`), one seed, full training.

Series tasks of every suite measure VUS as TSB-AD does (``vus_window="period"``: buffers 0..L, L the series'
dominant period).
"""
from __future__ import annotations

import dataclasses

from genad_fast.evaluation.tasks import DEFAULT_DETECTORS, Task, resolve_datasets

SUITE_NAMES = ("small", "full", "gutentag", "real", "tsb:<dir or glob>")
#: The data sets of the ``real`` suite (``digits``: its ten one-class tasks), its tables first.
REAL_TABLES = ("wdbc", "wine", "digits")
REAL_DATASETS = (*REAL_TABLES, "kdd135")
REAL_DESCRIPTION = "kdd135, digits 0-9, wdbc, wine"
#: ``full`` is these two suites together: their runs files merge into a ``full`` report (``--from-runs``).
FULL_PARTS = ("gutentag", "real")
#: Detectors that join the suites' default list when they are registered (added by issue #17 point 4).
OPTIONAL_DETECTORS = ("dte", "ensemble")


@dataclasses.dataclass(frozen=True)
class Suite:
    """A suite's tasks, seeds and whether training is shortened (``quick``: the evaluation's QUICK_PARAMS)."""

    name: str
    tasks: list[Task]
    seeds: int
    quick: bool
    description: str
    vus_window: str = "period"


def suite_detectors() -> list[str]:
    """The evaluation's default detectors plus :data:`OPTIONAL_DETECTORS` that are registered here."""
    from genad_fast.detectors import detector_names

    known = set(detector_names())
    return [*DEFAULT_DETECTORS, *(d for d in OPTIONAL_DETECTORS if d in known and d not in DEFAULT_DETECTORS)]


def _spread(tasks: list[Task]) -> list[Task]:
    """GutenTAG tasks round-robin over their base oscillations (the multivariate ones as one more group), so a
    run cut short (suites run seed-major) has covered many generators rather than the first few."""
    from genad_fast.evaluation.gutentag_suite import OSCILLATIONS

    groups: dict[str, list[Task]] = {}
    for t in tasks:
        name = t.name[3:]  # without "gt-"
        key = "mv" if name.startswith("mv-") else next(
            (bo for bo in sorted(OSCILLATIONS, key=len, reverse=True) if name.startswith(bo + "-")), name)
        groups.setdefault(key, []).append(t)
    out: list[Task] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out.extend(g[i] for g in groups.values() if i < len(g))
    return out


def full_description() -> str:
    """What the ``full`` suite holds, in words (its report's description)."""
    from genad_fast.evaluation.gutentag_suite import SUITE_VERSION

    return f"every {SUITE_VERSION} series (2,500 points), {REAL_DESCRIPTION}"


def resolve_suite(name: str, cache_dir: str | None = None) -> Suite:
    """``name`` -> :class:`Suite`; ValueError for an unknown name or a ``tsb:`` spec without valid files."""
    from genad_fast.evaluation.gutentag_suite import SUITE_VERSION, gutentag_tasks
    from genad_fast.evaluation.tsb_files import tsb_tasks

    key = name.strip()
    low = key.lower()
    if low == "small":
        return Suite("small", [*gutentag_tasks(small=True, cache_dir=cache_dir), *resolve_datasets(["wine"])],
                     1, True, f"CI profile: 3 short {SUITE_VERSION} series (1,000 points) and wine")
    if low == "full":
        return Suite("full", [*resolve_datasets(["wdbc", "wine", "kdd135"]),
                              *_spread(gutentag_tasks(cache_dir=cache_dir)), *resolve_datasets(["digits"])], 3, True,
                     full_description())
    if low == "gutentag":
        return Suite("gutentag", gutentag_tasks(cache_dir=cache_dir), 3, True,
                     f"every {SUITE_VERSION} series (2,500 points)")
    if low == "real":
        return Suite("real", resolve_datasets(REAL_DATASETS), 3, True, REAL_DESCRIPTION)
    if low.startswith("tsb:"):
        spec = key[4:]
        if not spec:
            raise ValueError("--suite tsb:<dir or glob>: the directory or pattern is missing")
        return Suite(f"tsb:{spec}", tsb_tasks(spec), 1, False,
                     f"TSB-AD files {spec}: fit on the first tr rows, score and measure the whole series")
    raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITE_NAMES)}")
