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
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from genad_fast import provenance

__all__ = ["ALIASES", "DEFAULT_DATASETS", "DEFAULT_DETECTORS", "QUICK_PARAMS", "DetectorSpec", "Task",
           "estimate_period", "resolve_detector", "resolve_datasets", "run_evaluation", "summarize",
           "write_reports", "machine_info"]

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
}
#: ``--quick``: short training for a smoke run (each only where the detector has the parameter).
QUICK_PARAMS: dict[str, Any] = {"epochs": 5, "pretrain_epochs": 3, "warm_up_epochs": 2, "encoder_epochs": 5,
                                "iterations": 100}
GENERATIVE = ("flow", "diffusion", "anogan", "fanogan", "vae")
CLASSIC = ("pca", "kde", "knn", "iforest", "ocsvm", "lof")
SERIES_METRICS = ("vus_roc", "vus_pr", "f1_pa_best", "range_precision", "range_recall", "range_f1")
#: Columns of the tables, in order, with their headings.
METRIC_COLUMNS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("vus_roc", "VUS-ROC"), ("vus_pr", "VUS-PR"),
                  ("f1_best", "F1 (best thr.)"), ("f1_pa_best", "PA-F1 (optimistic)"), ("f1", "F1 @thr"),
                  ("precision", "P @thr"), ("recall", "R @thr"), ("range_f1", "range-F1 @thr"))


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
                                                     "pip install genad-fast[data]")
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


def estimate_period(x: np.ndarray, max_lag: int = 500, fallback: int = 64) -> int:
    """Dominant period of a series ``[T, C]``: the lag >= 4 of the highest local maximum of the channel-mean
    autocorrelation (lags up to ``min(max_lag, T // 3)``), as TSB-AD picks window lengths; ``fallback``
    when no local maximum reaches 0.1 (no clear periodicity)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    T = x.shape[0]
    L = min(max_lag, T // 3)
    if L < 6:
        return fallback
    z = x - x.mean(0)
    sd = z.std(0)
    z = z[:, sd > 0] / sd[sd > 0]
    if z.shape[1] == 0:
        return fallback
    n = 1 << int(np.ceil(np.log2(2 * T)))
    f = np.fft.rfft(z, n=n, axis=0)
    acf = np.fft.irfft(f * np.conj(f), n=n, axis=0)[: L + 1].mean(1)
    acf = acf / acf[0]
    peaks = [k for k in range(4, L) if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1] and acf[k] >= 0.1]
    if not peaks:
        return fallback
    return int(max(peaks, key=lambda k: acf[k]))


def _window_for(spec: DetectorSpec, task: Task, train: np.ndarray) -> int | None:
    """Series: the detector's own default window if it has one (diffusion: a training crop length), else
    the estimated period clipped to [8, 256] and to a third of the training part. Tabular: None."""
    if task.kind != "series":
        return None
    default = spec.cls._param_defaults().get("window") if spec.cls is not None else None
    if default is not None:
        return int(default)
    return int(np.clip(estimate_period(train), 8, max(8, min(256, train.shape[0] // 3))))


# ---------------------------------------------------------------------------------------------- running
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or ""
    return f"{type(exc).__name__}: {text}"[:300]


def _run_one(spec: DetectorSpec, task: Task, data, seed: int, *, quick: bool, device: str,
             contamination: float | None, extra: dict) -> dict:
    from genad_fast.metrics import evaluate

    params = dict(spec.params)
    names = set(spec.cls._get_param_names())
    if quick:
        params.update({k: v for k, v in QUICK_PARAMS.items() if k in names and k not in params})
    params.update({k: v for k, v in task.detector_params.items() if k in names})
    window = _window_for(spec, task, data.train)
    if task.kind == "series" and "window" in names:
        params["window"] = window
    params.update(seed=seed, verbose=False, device=device)
    if contamination is not None:
        params["contamination"] = contamination
    params.update(extra)
    record: dict[str, Any] = dict(dataset=task.name, detector=spec.name, seed=seed, kind=task.kind,
                                  n_train=int(data.train.shape[0]), n_test=int(data.test.shape[0]),
                                  n_features=int(data.train.shape[1]), window=params.get("window"),
                                  params={k: v for k, v in params.items() if k not in ("verbose",)})
    if task.kind == "tabular" and spec.cls._param_defaults().get("window") is not None:
        record.update(status="n/a", reason=f"{spec.cls.__name__} models series only (it needs a window); "
                                           "not run on tabular data")
        return record
    if not data.labels.any() or data.labels.all():
        record.update(status="failed", reason="the test labels hold one class only; metrics need both")
        return record
    try:
        det = spec.cls(**params)
        start = time.perf_counter()
        det.fit(data.train)
        record["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        scores = det.decision_function(data.test)
        record["score_s"] = time.perf_counter() - start
        threshold = float(det.threshold_)
        metrics = evaluate(data.labels, scores, threshold=threshold if math.isfinite(threshold) else None,
                           series=task.kind == "series")
    except Exception as exc:  # a detector that fails here is reported, with its reason, not dropped
        record.update(status="failed", reason=_one_line(exc))
        return record
    if task.kind != "series":  # NaN there: order-based metrics mean nothing for rows
        metrics = {k: v for k, v in metrics.items() if k not in SERIES_METRICS}
    record.update(status="ok", threshold=threshold, metrics=metrics,
                  throughput=data.test.shape[0] / record["score_s"] if record["score_s"] > 0 else float("inf"))
    record["_scores"] = np.asarray(scores, dtype=np.float64)  # for plots; not written to JSON
    return record


def run_evaluation(detectors: Sequence[str], tasks: Sequence[Task], seeds: Sequence[int], *, quick: bool = False,
                   device: str = "cpu", contamination: float | None = None,
                   detector_params: dict[str, dict] | None = None, plot_dir: str | None = None,
                   log: Callable[[str], None] | None = print) -> list[dict]:
    """Run every (task, detector, seed); one record each (``status`` "ok", "failed" or "unavailable").

    ``detector_params`` maps a detector name (as given) to extra constructor parameters. With ``plot_dir``,
    the first successful seed of each series (task, detector) is plotted there.
    """
    specs = [resolve_detector(d) for d in detectors]
    detector_params = detector_params or {}
    records: list[dict] = []
    for task in tasks:
        if task.reason is not None:
            records.append(dict(dataset=task.name, detector="*", seed=None, kind=task.kind, status="unavailable",
                                reason=task.reason))
            if log:
                log(f"[{task.name}] {task.reason}")
            continue
        for seed in seeds:
            try:
                data = task.load(seed)
            except Exception as exc:  # a data set that cannot load is a row saying why
                reason = _one_line(exc)
                records.append(dict(dataset=task.name, detector="*", seed=seed, kind=task.kind,
                                    status="unavailable", reason=f"unavailable: {reason}"))
                if log:
                    log(f"[{task.name}] seed {seed}: {reason}")
                continue
            for spec in specs:
                if spec.cls is None:
                    rec = dict(dataset=task.name, detector=spec.name, seed=seed, kind=task.kind,
                               status="unavailable", reason=spec.reason)
                else:
                    rec = _run_one(spec, task, data, seed, quick=quick, device=device, contamination=contamination,
                                   extra=detector_params.get(spec.name, {}))
                rec["group"] = task.group
                scores = rec.pop("_scores", None)
                if (plot_dir and scores is not None and task.kind == "series" and not any(
                        r.get("plotted") for r in records if r["dataset"] == task.name
                        and r["detector"] == spec.name)):
                    rec["plot"] = _plot(plot_dir, task, spec, data, scores, rec)
                    rec["plotted"] = True
                records.append(rec)
                if log:
                    if rec["status"] == "ok":
                        m = rec["metrics"]
                        vus = f" VUS-PR {m['vus_pr']:.3f}" if "vus_pr" in m else ""
                        log(f"[{task.name}] {spec.name} seed {seed}: AUROC {m['auroc']:.3f} AUPRC {m['auprc']:.3f}"
                            f"{vus}, fit {rec['fit_s']:.2f} s, score {rec['score_s']:.2f} s")
                    else:
                        reason = rec["reason"]
                        prefix = "" if reason.startswith(rec["status"]) else f"{rec['status']}: "
                        log(f"[{task.name}] {spec.name} seed {seed}: {prefix}{reason}")
    return records


def _plot(plot_dir: str, task: Task, spec: DetectorSpec, data, scores: np.ndarray, rec: dict) -> str | None:
    from genad_fast.eval_plot import plot_eval_scores

    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, f"{_safe(task.name)}__{_safe(spec.name)}.png")
    m = rec["metrics"]
    title = (f"{spec.name} on {task.name} (seed {rec['seed']}): AUROC {m['auroc']:.3f}, VUS-PR "
             f"{m.get('vus_pr', float('nan')):.3f}")
    try:
        plot_eval_scores(path, data.test, scores, rec["threshold"], data.labels, title=title)
    except ImportError as exc:  # matplotlib missing: say so in the record, keep the numbers
        rec["plot_error"] = str(exc)
        return None
    return path


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


# ---------------------------------------------------------------------------------------------- summary
def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(records: Sequence[dict]) -> list[dict]:
    """One row per (data set, detector): mean and std over the seeds that ran, with status and reasons.

    Data sets in a group (the digit classes) also get a row ``<group> (mean of k)``: per seed the mean over
    the group's tasks, then mean ± std over seeds (only seeds where every task of the group ran).
    """
    order: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        key = (r["dataset"], r["detector"])
        if key not in by_key:
            order.append(key)
            by_key[key] = []
        by_key[key].append(r)
    rows = [_row(ds, det, by_key[(ds, det)]) for ds, det in order]
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in records:
        g = r.get("group")
        if g and r["status"] == "ok":
            groups.setdefault((g, r["detector"]), {}).setdefault(r["dataset"], []).append(r)
    for (g, det), per_task in groups.items():
        n_tasks = len(per_task)
        if n_tasks < 2:
            continue
        seeds = set.intersection(*({r["seed"] for r in rs} for rs in per_task.values()))
        merged = []
        for s in sorted(seeds):
            rs = [next(r for r in per_task[t] if r["seed"] == s) for t in per_task]
            keys = set.intersection(*(set(r["metrics"]) for r in rs))
            merged.append(dict(status="ok", seed=s, metrics={k: float(np.mean([r["metrics"][k] for r in rs]))
                                                              for k in keys},
                               fit_s=float(np.sum([r["fit_s"] for r in rs])),
                               score_s=float(np.sum([r["score_s"] for r in rs])),
                               throughput=float(np.sum([r["n_test"] for r in rs]) / np.sum([r["score_s"] for r in rs])),
                               kind=rs[0]["kind"]))
        if merged:
            row = _row(f"{g} (mean of {n_tasks})", det, merged)
            row["note"] = "metrics: mean over the tasks per seed; fit/score time: sum over the tasks"
            rows.append(row)
    return rows


def _row(dataset: str, detector: str, recs: list[dict]) -> dict:
    ok = [r for r in recs if r["status"] == "ok"]
    row: dict[str, Any] = dict(dataset=dataset, detector=detector, seeds_ok=len(ok), seeds=len(recs))
    bad = sorted({f"{r['status']}: {r['reason']}" if not str(r['reason']).startswith(r['status']) else r["reason"]
                  for r in recs if r["status"] != "ok"})
    if not ok:
        row["status"] = recs[0]["status"]
        row["reason"] = "; ".join(bad)
        return row
    row["status"] = "ok" if len(ok) == len(recs) else "partial"
    if bad:
        row["reason"] = "; ".join(bad)
    keys = [k for k in ok[0]["metrics"] if all(k in r["metrics"] for r in ok)]
    for k in keys:
        row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([r["metrics"][k] for r in ok])
    for k in ("fit_s", "score_s", "throughput"):
        row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([r[k] for r in ok])
    return row


# ---------------------------------------------------------------------------------------------- machine
def machine_info(device: str = "cpu") -> dict:
    """Machine, load, threads, versions, the compiled extension and the git revision, for the report
    (the facts come from :mod:`genad_fast.provenance`, which the benchmarks use too)."""
    import torch

    versions = provenance.versions()
    build = versions["genad_fast_build"]

    def installed(dist: str) -> str:
        return provenance.dist_version(dist) or "not installed"

    return dict(
        date_utc=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        command=" ".join(sys.argv),
        platform=platform.platform(), machine=platform.machine(), processor=platform.processor() or None,
        cpus=os.cpu_count(), load_average=provenance.load_average(),
        torch_threads=torch.get_num_threads(), device=device, gpu=provenance.gpu_name(),
        python=versions["python"], genad_fast=versions["genad_fast"], torch=versions["torch"],
        numpy=np.__version__, scikit_learn=installed("scikit-learn"), scipy=installed("scipy"),
        aeon=installed("aeon"),
        extension="loaded" if build.get("loaded") else f"not loaded: {build.get('error')}",
        git=provenance.git_revision(),
    )


# ---------------------------------------------------------------------------------------------- reports
def _fmt(row: dict, key: str, digits: int = 3) -> str:
    if f"{key}_mean" not in row:
        return "—"
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    if row.get("seeds_ok", 1) > 1:
        return f"{m:.{digits}f} ± {s:.{digits}f}"
    return f"{m:.{digits}f}"


def _fmt_rate(row: dict) -> str:
    if "throughput_mean" not in row:
        return "—"
    return f"{row['throughput_mean']:,.0f}"


def markdown_table(rows: Sequence[dict]) -> str:
    head = ["data set", "detector", *[h for _, h in METRIC_COLUMNS], "fit s", "score s", "rows/s", "seeds",
            "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        reason = r.get("reason")
        status = r["status"] if not reason else reason if reason.startswith(r["status"]) else \
            f"{r['status']}: {reason}"
        cells = [r["dataset"], r["detector"], *[_fmt(r, k) for k, _ in METRIC_COLUMNS], _fmt(r, "fit_s", 2),
                 _fmt(r, "score_s", 2), _fmt_rate(r), f"{r['seeds_ok']}/{r['seeds']}", status.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_check(rows: Sequence[dict]) -> list[str]:
    """Per data set: does the best generative detector reach the best classic baseline on AUROC and VUS-PR?"""
    out = []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for ds in datasets:
        rs = [r for r in rows if r["dataset"] == ds and "auroc_mean" in r]
        for metric in ("auroc", "vus_pr"):
            gen = [(r[f"{metric}_mean"], r["detector"]) for r in rs
                   if ALIASES.get(r["detector"], (r["detector"],))[0] in GENERATIVE and f"{metric}_mean" in r]
            cla = [(r[f"{metric}_mean"], r["detector"]) for r in rs
                   if ALIASES.get(r["detector"], (r["detector"],))[0] in CLASSIC and f"{metric}_mean" in r]
            if not gen or not cla:
                continue
            g, c = max(gen), max(cla)
            verdict = "yes" if g[0] >= c[0] else "**no**"
            out.append(f"- {ds}, {metric}: best generative {g[1]} {g[0]:.3f} vs best classic {c[1]} {c[0]:.3f}: "
                       f"{verdict}")
    return out


def write_reports(out_dir: str, records: Sequence[dict], rows: Sequence[dict], machine: dict,
                  config: dict) -> dict[str, str]:
    """``results.md``, ``results.csv``, ``results.json`` in ``out_dir``; returns their paths."""
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"results.{k}") for k in ("md", "csv", "json")}
    md = [f"# genad-fast eval", "",
          f"{machine['date_utc']} UTC; genad_fast {machine['genad_fast']} (git {machine['git']}), torch "
          f"{machine['torch']}, numpy {machine['numpy']}, scikit-learn {machine['scikit_learn']}, aeon "
          f"{machine['aeon']}; extension {machine['extension']}.",
          f"Machine: {machine['platform']}, {machine['cpus']} CPUs, torch threads {machine['torch_threads']}, "
          f"device {machine['device']}{', GPU ' + machine['gpu'] if machine['gpu'] else ''}, load average at start "
          f"{machine['load_average']}.",
          f"Seeds {config['seeds']}; quick={config['quick']}; command: `{machine['command']}`.", "",
          "Cells are mean ± sample std over seeds. F1 (best thr.) and PA-F1 pick the threshold on the test labels "
          "(an oracle); PA-F1 (point-adjusted, Xu et al. 2018) is optimistic by construction. The @thr columns "
          "use the detector's own threshold_ (contamination quantile of its training scores). Tabular data sets "
          "have no VUS, PA-F1 or range metrics (—): those assume time order.", "",
          markdown_table(rows), ""]
    goals = goal_check(rows)
    if goals:
        md += ["## Best generative detector vs best classic baseline", "", *goals, ""]
    plots = [r["plot"] for r in records if r.get("plot")]
    if plots:
        md += ["## Plots", "", *[f"- `{os.path.relpath(p, out_dir)}`" for p in plots], ""]
    with open(paths["md"], "w") as fh:
        fh.write("\n".join(md))
    pd.DataFrame(list(rows)).to_csv(paths["csv"], index=False)
    with open(paths["json"], "w") as fh:
        json.dump(dict(machine=machine, config=config, summary=list(rows),
                       runs=[{k: v for k, v in r.items() if k != "plotted"} for r in records]),
                  fh, indent=1, default=_json_default)
    return paths


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
