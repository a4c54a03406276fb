"""``docs/benchmark.md``: the suite's report, written by ``genad-fast eval --suite NAME --report PATH``.

Sections: how it was made (command, machine, load, versions, suite, seeds, training), the headline comparison
of issue #17 (:func:`genad_fast.evaluation.ranking.summary_lines`), the mean rank of every detector, the
VUS-PR and AUROC of every task and detector as matrices, and the full table (mean ± sample std over seeds,
fit and score seconds). PA-F1 is printed only in the full table, in the column right of VUS-PR: point
adjustment credits a whole event for one flagged point, so alone it overstates every detector.
"""
from __future__ import annotations

from collections.abc import Sequence

from genad_fast.evaluation.ranking import family, mean_over_tasks, mean_ranks, summary_lines, task_rows
from genad_fast.evaluation.report import cpu_text

#: Columns of the full table: (key, heading); PA-F1 stands beside VUS-PR on purpose.
FULL_COLUMNS = (("vus_pr", "VUS-PR"), ("f1_pa_best", "PA-F1 (optimistic)"), ("vus_roc", "VUS-ROC"),
                ("auroc", "AUROC"), ("auprc", "AUC-PR"), ("f1_best", "F1 (best thr.)"))


def _cell(row: dict, key: str, digits: int = 3) -> str:
    if f"{key}_mean" not in row:
        return "—"
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    return f"{m:.{digits}f} ± {s:.{digits}f}" if row.get("seeds_ok", 1) > 1 else f"{m:.{digits}f}"


def _status(row: dict) -> str:
    reason = row.get("reason")
    text = row["status"] if not reason else reason if reason.startswith(row["status"]) else \
        f"{row['status']}: {reason}"
    return text.replace("|", "/")[:160]


def rank_table(rows: Sequence[dict]) -> str:
    """Mean rank per detector by the primary metric, VUS-PR and AUROC, with the mean metrics beside."""
    primary, vus, roc = mean_ranks(rows), mean_ranks(rows, "vus_pr"), mean_ranks(rows, "auroc")
    mvus, mroc = mean_over_tasks(rows, "vus_pr"), mean_over_tasks(rows, "auroc")
    fit = {}
    for r in task_rows(rows):
        fit.setdefault(r["detector"], []).append((r.get("fit_s_mean", 0.0), r.get("score_s_mean", 0.0)))
    lines = ["| detector | family | mean rank (primary) | mean rank VUS-PR | mean rank AUROC | mean VUS-PR | "
             "mean AUROC | total fit s | total score s |", "|---|---|---|---|---|---|---|---|---|"]

    def rk(d, table):
        return f"{table[d][0]:.2f} ({table[d][1]})" if d in table else "—"

    def mv(d, table):
        return f"{table[d][0]:.3f}" if d in table else "—"

    for d in primary:
        f = fit.get(d, [])
        lines.append(f"| {d} | {family(d)} | {rk(d, primary)} | {rk(d, vus)} | {rk(d, roc)} | {mv(d, mvus)} | "
                     f"{mv(d, mroc)} | {sum(a for a, _ in f):.1f} | {sum(b for _, b in f):.1f} |")
    return "\n".join(lines)


def matrix(rows: Sequence[dict], metric: str, order: Sequence[str] = ()) -> str:
    """Tasks as rows, detectors as columns (in ``order``, then any other), the mean of ``metric`` (the best of
    each task in bold)."""
    tr = [r for r in task_rows(rows) if f"{metric}_mean" in r]
    seen = list(dict.fromkeys(r["detector"] for r in task_rows(rows)))
    dets = [d for d in order if d in seen] + [d for d in seen if d not in order]
    tasks = list(dict.fromkeys(r["dataset"] for r in tr))
    val = {(r["dataset"], r["detector"]): r[f"{metric}_mean"] for r in tr}
    lines = ["| task | " + " | ".join(dets) + " |", "|---|" + "---|" * len(dets)]
    for t in tasks:
        best = max(v for (tt, _), v in val.items() if tt == t)
        cells = []
        for d in dets:
            v = val.get((t, d))
            cells.append("—" if v is None else f"**{v:.3f}**" if v == best else f"{v:.3f}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def full_table(rows: Sequence[dict]) -> str:
    head = ["task", "detector", *[h for _, h in FULL_COLUMNS], "fit s", "score s", "seeds", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "(mean of " in r["dataset"]:
            continue
        cells = [r["dataset"], r["detector"], *[_cell(r, k) for k, _ in FULL_COLUMNS], _cell(r, "fit_s", 2),
                 _cell(r, "score_s", 2), f"{r['seeds_ok']}/{r['seeds']}", _status(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_markdown(rows: Sequence[dict], machine: dict, config: dict) -> str:
    """The whole document (see the module's docstring)."""
    quick = ("shortened (--quick: epochs=5, iterations=100 and the like, at least 200 optimiser steps)"
             if config.get("quick") else "library defaults")
    # a run of --datasets has no suite: the title and the first line name its data sets instead
    if config.get("suite"):
        title, what = f"suite `{config['suite']}`", f"Suite: {config.get('suite_description', '')}"
    else:
        names, notes = ", ".join(config.get("datasets") or ()), config.get("suite_description")
        title, what = f"data sets {names}", f"Data sets: {names}" + (f"; {notes}" if notes else "")
    md = [f"# genad-fast benchmark: {title}", "",
          "Generated by one command (do not edit by hand):", "", f"    {machine['command']}", "",
          f"{what}. Detectors: {', '.join(config['detectors'])}. Seeds "
          f"{config['seeds']}; training {quick}; detector parameters otherwise the library's defaults.", "",
          f"{machine['date_utc']} UTC; genad_fast {machine['genad_fast']} (git {machine['git']}), torch "
          f"{machine['torch']}, numpy {machine['numpy']}, scikit-learn {machine['scikit_learn']}, aeon "
          f"{machine['aeon']}; extension {machine['extension']}. Machine: {cpu_text(machine)}; {machine['platform']}, "
          f"{machine['cpus']} CPUs, torch threads "
          f"{machine['torch_threads']}, device {machine['device']}; load average at start "
          f"{machine['load_average']} (fit and score times are wall-clock on this shared machine).", "",
          "Metrics: VUS-PR and VUS-ROC as TSB-AD's get_metrics computes them (buffers 0..L, L the dominant period "
          "of the scored series' first channel, TSB-AD's find_length_rank); AUC-PR (average precision) and AUROC "
          "point-wise. Tabular tasks (digits, wdbc, wine) have no VUS: their primary metric is AUROC. Cells are "
          "mean ± sample std over seeds; a detector that could not run on a task is a row saying why.", "",
          "## Best generative vs best classic (issue #17's goal)", "",
          "Generative: flow, diffusion, anogan, fanogan, vae, dte, ensemble; classic: "
          "pca, kde, knn, iforest, ocsvm, lof; the autoencoder and Deep SVDD are neither.", "",
          *summary_lines(rows), "",
          "## Mean rank per detector", "",
          "Per task the detectors are ranked (1 = best; ties share the mean of their ranks) by the primary metric "
          "(VUS-PR on series, AUROC on tabular tasks), by VUS-PR (series tasks) and by AUROC (every task); in "
          "brackets the number of tasks ranked on.", "", rank_table(rows), "",
          "## VUS-PR per task (series)", "", matrix(rows, "vus_pr", config["detectors"]), "",
          "## AUROC per task", "", matrix(rows, "auroc", config["detectors"]), "",
          "## Every task and detector", "",
          "PA-F1 (point-adjusted best F1, Xu et al. 2018) is optimistic by construction and shown only beside "
          "VUS-PR; F1 (best thr.) picks the threshold on the test labels (an oracle).", "",
          full_table(rows), ""]
    return "\n".join(md)
