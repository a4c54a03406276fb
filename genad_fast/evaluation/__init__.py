"""Side-by-side evaluation of detectors on data sets (the logic of ``genad-fast eval``).

For every data set, detector and seed: fit on the clean (or given) training part, time it, score the test
part, time that, and compute every metric of :func:`genad_fast.metrics.evaluate` with the detector's own
``threshold_``. Results are aggregated as mean ± sample std over seeds and written as Markdown, CSV and JSON,
with the machine, versions and git revision; series tasks also get a PNG of the scores (labelled anomalies
shaded, threshold drawn). A detector or data set that cannot run here is a row saying why, never dropped.

Seeds: seed ``s`` seeds the detector (``seed=s``) and, where a data set is drawn at random (the synthetic
series, the digits split, the subsampled outliers of wdbc/wine), the data too; kdd135 is one fixed series,
so its spread is the detector's alone.

Tabular tasks report only AUROC, AUPRC, best F1 and F1 at the threshold: VUS, point adjustment and range
metrics assume time order and are meaningless for rows in random order.

Layout: :mod:`~genad_fast.evaluation.tasks` (detector and data set names resolved),
:mod:`~genad_fast.evaluation.runner` (the runs, timed and measured), :mod:`~genad_fast.evaluation.report`
(summary over seeds, machine facts, Markdown/CSV/JSON). The benchmark suites (``genad-fast eval --suite``):
:mod:`~genad_fast.evaluation.suites` (the profiles), :mod:`~genad_fast.evaluation.gutentag_suite` (GutenTAG
series), :mod:`~genad_fast.evaluation.tsb_files` (TSB-AD files), :mod:`~genad_fast.evaluation.ranking` (mean
ranks, best generative vs best classic) and :mod:`~genad_fast.evaluation.benchmark_doc` (docs/benchmark.md).
"""
# Every name of the former single module is importable from here (the CLI and the tests use some beyond __all__).
from genad_fast.evaluation.report import (  # noqa: F401
    CLASSIC, GENERATIVE, METRIC_COLUMNS, goal_check, machine_info, markdown_table, summarize, write_reports)
from genad_fast.evaluation.runner import SERIES_METRICS, estimate_period, run_evaluation  # noqa: F401
from genad_fast.evaluation.tasks import (  # noqa: F401
    ALIASES, DATASET_CHOICES, DEFAULT_DATASETS, DEFAULT_DETECTORS, QUICK_PARAMS, UNKNOWN_KIND, DetectorSpec, Task,
    resolve_datasets, resolve_detector)

__all__ = ["ALIASES", "DEFAULT_DATASETS", "DEFAULT_DETECTORS", "QUICK_PARAMS", "DetectorSpec", "Task",
           "estimate_period", "resolve_detector", "resolve_datasets", "run_evaluation", "summarize",
           "write_reports", "machine_info"]
