"""The evaluation's reports: records summarised over seeds (mean ± sample std), the machine, and the tables.

:func:`summarize` gives one row per (data set, detector), plus ``<group> (mean of k)`` rows for grouped
tasks (the digit classes: per seed the mean over the group, then mean ± std over seeds);
:func:`markdown_table`, :func:`goal_check` and :func:`write_reports` write ``results.{md,csv,json}`` with the
facts of :func:`machine_info` (from :mod:`genad_fast.provenance`, which the benchmarks use too).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from genad_fast import provenance
from genad_fast.evaluation.tasks import ALIASES

GENERATIVE = ("flow", "diffusion", "anogan", "fanogan", "vae")
CLASSIC = ("pca", "kde", "knn", "iforest", "ocsvm", "lof")
#: Columns of the tables, in order, with their headings.
METRIC_COLUMNS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("vus_roc", "VUS-ROC"), ("vus_pr", "VUS-PR"),
                  ("f1_best", "F1 (best thr.)"), ("f1_pa_best", "PA-F1 (optimistic)"), ("f1", "F1 @thr"),
                  ("precision", "P @thr"), ("recall", "R @thr"), ("range_f1", "range-F1 @thr"))


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
        platform=platform.platform(), machine=platform.machine(), processor=provenance.cpu_model(),
        cpu_flags=provenance.cpu_flags(), cpu_capability=build.get("cpu_capability"),
        cpus=os.cpu_count(), load_average=provenance.load_average(),
        torch_threads=torch.get_num_threads(), device=device, gpu=provenance.gpu_name(),
        python=versions["python"], genad_fast=versions["genad_fast"], torch=versions["torch"],
        numpy=np.__version__, scikit_learn=installed("scikit-learn"), scipy=installed("scipy"),
        aeon=installed("aeon"),
        extension="loaded" if build.get("loaded") else f"not loaded: {build.get('error')}",
        git=provenance.git_revision(),
    )


# ---------------------------------------------------------------------------------------------- reports
def cpu_text(machine: dict) -> str:
    """The CPU a report's figures come from: its model name, ISA flags and the fused kernels' capability (runs files
    written before these facts were kept give what they have)."""
    text = machine.get("processor") or machine["machine"]
    if machine.get("cpu_flags"):
        text += f" (flags {' '.join(machine['cpu_flags'])})"
    if machine.get("cpu_capability"):
        text += f", fused kernels {machine['cpu_capability']}"
    return text


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
    md = ["# genad-fast eval", "",
          f"{machine['date_utc']} UTC; genad_fast {machine['genad_fast']} (git {machine['git']}), torch "
          f"{machine['torch']}, numpy {machine['numpy']}, scikit-learn {machine['scikit_learn']}, aeon "
          f"{machine['aeon']}; extension {machine['extension']}.",
          f"Machine: {cpu_text(machine)}; {machine['platform']}, {machine['cpus']} CPUs, torch threads "
          f"{machine['torch_threads']}, "
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
