"""Ranks and the suite's headline comparison: mean rank per detector over tasks, best generative vs best classic.

Input: the rows of :func:`genad_fast.evaluation.summarize` (one per task and detector, metrics as
``<metric>_mean``); group rows (``<group> (mean of k)``) are summaries, not tasks, and are left out.

- :func:`mean_ranks`: per task, detectors ranked by a metric (1 = best, ties share the mean of their ranks,
  as ``scipy.stats.rankdata(method="average")``); per detector the mean over the tasks it was ranked on.
- :func:`family_summary`: the issue's goal (#17): the best generative detector (highest mean over tasks) against
  the best classic one on mean VUS-PR (series tasks) and mean AUROC (every task), and the share of tasks
  where the best generative detector of that task reaches the best classic one on the task's primary metric
  (VUS-PR on series, AUROC on tabular tasks, which have no VUS). Means over different sets of tasks do not
  compare, so only detectors with a result on every task of the metric are candidates for the best (a
  series-only detector competes on VUS-PR, not on AUROC over tabular tasks too).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genad_fast.evaluation.report import CLASSIC, GENERATIVE
from genad_fast.evaluation.tasks import ALIASES

#: Generative detectors added by issue #17 (diffusion time estimation; the generative ensemble).
GENERATIVE_ALL = (*GENERATIVE, "dte", "ensemble")


def family(detector: str) -> str:
    """"generative", "classic" or "other" (the deep but not generative ones: autoencoder, Deep SVDD)."""
    base = ALIASES.get(detector, (detector,))[0]
    if base in GENERATIVE_ALL:
        return "generative"
    if base in CLASSIC:
        return "classic"
    return "other"


def task_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows of single tasks that ran (group means and rows without metrics left out)."""
    return [r for r in rows if "(mean of " not in r["dataset"] and "auroc_mean" in r]


def primary_metric(row: dict) -> str:
    """VUS-PR where the task has it (series), else AUROC (tabular)."""
    return "vus_pr" if "vus_pr_mean" in row else "auroc"


def _by_task(rows: Sequence[dict], metric: str | None) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in task_rows(rows):
        m = metric or primary_metric(r)
        if f"{m}_mean" in r:
            out.setdefault(r["dataset"], {})[r["detector"]] = float(r[f"{m}_mean"])
    return out


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = highest; tied values share the mean of the ranks they span."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(values.size)
    sorted_v = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def mean_ranks(rows: Sequence[dict], metric: str | None = None) -> dict[str, tuple[float, int]]:
    """{detector: (mean rank, tasks ranked on)} by ``metric`` (None: each task's :func:`primary_metric`),
    best mean rank first. Only tasks with at least two detectors are ranked."""
    sums: dict[str, list[float]] = {}
    for per_det in _by_task(rows, metric).values():
        if len(per_det) < 2:
            continue
        dets = list(per_det)
        for d, rk in zip(dets, _average_ranks(np.array([per_det[d] for d in dets]))):
            sums.setdefault(d, []).append(float(rk))
    out = {d: (float(np.mean(v)), len(v)) for d, v in sums.items()}
    return dict(sorted(out.items(), key=lambda kv: (kv[1][0], kv[0])))


def mean_over_tasks(rows: Sequence[dict], metric: str) -> dict[str, tuple[float, int]]:
    """{detector: (mean of ``metric`` over the tasks that have it, number of those tasks)}."""
    acc: dict[str, list[float]] = {}
    for per_det in _by_task(rows, metric).values():
        for d, v in per_det.items():
            acc.setdefault(d, []).append(v)
    return {d: (float(np.mean(v)), len(v)) for d, v in acc.items()}


def family_summary(rows: Sequence[dict]) -> dict:
    """The goal check of issue #17 (see the module's docstring) as a dict; entries are None where a family
    has no detector with results."""
    out: dict = {}
    for metric in ("vus_pr", "auroc"):
        means = mean_over_tasks(rows, metric)
        n_tasks = max((v[1] for v in means.values()), default=0)
        # means over different task sets do not compare: only detectors with results on every task count
        partial = sorted(d for d, v in means.items() if v[1] < n_tasks)
        means = {d: v for d, v in means.items() if v[1] == n_tasks}
        best = {}
        for fam in ("generative", "classic"):
            cands = [(v[0], d) for d, v in means.items() if family(d) == fam]
            best[fam] = max(cands) if cands else None
        out[metric] = dict(best_generative=best["generative"], best_classic=best["classic"],
                           pca=means["pca"][0] if "pca" in means else None,
                           below_pca=sorted(d for d, v in means.items() if family(d) == "generative"
                                            and "pca" in means and v[0] < means["pca"][0]),
                           n_tasks=n_tasks, partial=partial)
    wins, tasks = [], 0
    for task, per_det in _by_task(rows, None).items():
        gen = [v for d, v in per_det.items() if family(d) == "generative"]
        cla = [v for d, v in per_det.items() if family(d) == "classic"]
        if gen and cla:
            tasks += 1
            if max(gen) >= max(cla):
                wins.append(task)
    out["win_rate"] = len(wins) / tasks if tasks else None
    out["wins"], out["tasks_compared"] = wins, tasks
    return out


def summary_lines(rows: Sequence[dict]) -> list[str]:
    """:func:`family_summary` as Markdown bullet lines."""
    s = family_summary(rows)
    lines = []
    for metric, label in (("vus_pr", "mean VUS-PR (series tasks)"), ("auroc", "mean AUROC (every task)")):
        g, c = s[metric]["best_generative"], s[metric]["best_classic"]
        if g is None or c is None:
            lines.append(f"- {label}: not compared (a family has no detector with a result on every task)")
            continue
        verdict = "met" if g[0] >= c[0] else "**not met**"
        lines.append(f"- {label} over {s[metric]['n_tasks']} tasks: best generative {g[1]} {g[0]:.3f} vs best "
                     f"classic {c[1]} {c[0]:.3f}: {verdict} (difference {g[0] - c[0]:+.4f})")
        if s[metric]["pca"] is not None:
            below = ", ".join(s[metric]["below_pca"]) or "none"
            lines.append(f"  - generative detectors below PCA's {s[metric]['pca']:.3f}: {below}")
        if s[metric]["partial"]:
            lines.append(f"  - not compared (no result on some of these tasks): {', '.join(s[metric]['partial'])}")
    if s["win_rate"] is not None:
        verdict = "met" if s["win_rate"] >= 0.8 else "**not met**"
        lines.append(f"- per task (VUS-PR on series, AUROC on tabular tasks): the best generative detector reaches "
                     f"the best classic one on {len(s['wins'])} of {s['tasks_compared']} tasks "
                     f"({100 * s['win_rate']:.0f} %; goal 80 %): {verdict}")
    return lines
