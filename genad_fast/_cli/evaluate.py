"""``genad-fast eval``: the names, parameters and data sets checked before any run, then
:func:`genad_fast.evaluation.run_evaluation` and its reports."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from genad_fast._cli.checks import CLIError, check_output_dir, check_output_path, split_list
from genad_fast._cli.params import build_detector, check_param_names, parse_value
from genad_fast._cli.runs_files import merge_runs


def _eval_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--param DETECTOR.KEY=VALUE`` -> {detector: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, value = item.partition("=")
        det, dot, key = target.strip().partition(".")
        if not eq or not dot or not det or not key:
            raise CLIError(f"--param {item!r}: expected DETECTOR.KEY=VALUE (e.g. flow.epochs=20)")
        out.setdefault(det.lower(), {})[key] = parse_value(value)
    return out


def _eval_specs(detectors: list[str], extra: dict[str, dict[str, Any]], device: str) -> None:
    """Check ``--detectors`` and ``--param`` of ``eval`` before any run: unknown names, unknown parameters and
    invalid values are errors here, not rows of a report that ends with status 0. A registered detector that
    cannot be imported stays a report row (it names what is missing)."""
    from genad_fast import evaluation as ev
    from genad_fast.detectors import detector_names

    specs = {spec.name: spec for spec in map(ev.resolve_detector, detectors)}
    known = detector_names()
    unknown = [name for name, spec in specs.items() if spec.registry_name not in known]
    if unknown:
        raise CLIError(f"--detectors: unknown detector{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(repr, unknown))}; choose from {', '.join(sorted({*known, *ev.ALIASES}))}")
    for det, params in extra.items():
        spec = specs.get(det)
        if spec is None:
            raise CLIError(f"--param for {det!r}, which is not in --detectors")
        if spec.cls is None:
            continue
        check_param_names(spec.cls, params, det)
        build_detector(spec.cls, {**spec.params, "device": device, **params}, det)


def _eval_tasks(args: argparse.Namespace, datasets: list[str]) -> list:
    """``--datasets`` as tasks; an unknown name or a ``file:`` that does not exist is an error before any run."""
    from genad_fast import evaluation as ev

    if not 0.0 < args.train_fraction < 1.0:
        raise CLIError(f"--train-fraction must be in (0, 1), got {args.train_fraction}")
    files = [name for name in datasets if name.lower().startswith("file:")]
    for name in files:
        if not os.path.isfile(name[5:]):
            raise CLIError(f"--datasets {name!r}: file {name[5:]!r} does not exist")
    if args.label_column is not None and not files:  # it would be ignored: say so rather than drop it
        raise CLIError(f"--label-column {args.label_column!r} applies to file:<path> data sets, and --datasets "
                       f"has none")
    tasks = ev.resolve_datasets(datasets, quick=args.quick, label_column=args.label_column,
                                train_fraction=args.train_fraction, file_kind=args.file_kind)
    unknown = [t.name for t in tasks if t.kind == ev.UNKNOWN_KIND]
    if unknown:
        raise CLIError(f"--datasets: unknown data set{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(repr, unknown))}; choose from {ev.DATASET_CHOICES}")
    return tasks


def _eval_suite(args: argparse.Namespace):
    """``--suite NAME`` as a Suite; conflicting options and an unknown suite are errors before any run."""
    from genad_fast.evaluation.suites import resolve_suite

    if args.datasets is not None:
        raise CLIError("--suite and --datasets are exclusive: a suite fixes its data sets")
    if args.label_column is not None:
        raise CLIError("--label-column applies to --datasets file:<path>, not to --suite")
    try:
        return resolve_suite(args.suite, cache_dir=args.cache_dir)
    except ValueError as exc:
        raise CLIError(f"--suite: {exc}") from exc


RUNS_FILE = "runs.jsonl"


def _write_benchmark(path: str, rows: list, machine: dict, config: dict) -> None:
    from genad_fast.evaluation.benchmark_doc import benchmark_markdown

    with open(path, "w") as fh:
        fh.write(benchmark_markdown(rows, machine, config))
    print(f"wrote {path}")


def _add_note(config: dict, note: str) -> None:
    """Append ``note`` to the report's description line (a run of --datasets has no suite description)."""
    before = config.get("suite_description")
    config["suite_description"] = f"{before}; {note}" if before else note


def _eval_from_runs(args: argparse.Namespace) -> int:
    """``--from-runs OUT/runs.jsonl [MORE/runs.jsonl ...] --report PATH``: the report of earlier runs (complete
    or cut short; several files are parts of one suite, merged by :func:`~genad_fast._cli.runs_files.merge_runs`),
    nothing run again."""
    from genad_fast import evaluation as ev

    if args.report is None:
        raise CLIError("--from-runs needs --report PATH (the report to write)")
    check_output_path(args.report, "--report")
    machine, config, records, note = merge_runs(args.from_runs)
    if note:
        _add_note(config, note)
    # a seed-major run cut short: the first seed is kept as far as it went; a later seed only if it covered
    # every (task, detector) of the first (a half-done seed would mix 1- and 2-seed means in one table)
    pairs: dict = {}
    for r in records:
        if r.get("seed") is not None:
            pairs.setdefault(r["seed"], set()).add((r["dataset"], r["detector"]))
    seeds_ran = sorted(pairs)
    kept = [s for s in seeds_ran if s == seeds_ran[0] or pairs[s] >= pairs[seeds_ran[0]]]
    if kept != config["seeds"]:
        left = [s for s in seeds_ran if s not in kept]
        _add_note(config, f"CUT SHORT: seeds {kept} of {config['seeds']} reported"
                  + (f", seed {left} ran in part and is left out" if left else ""))
    records = [r for r in records if r.get("seed") is None or r["seed"] in kept]
    # the (task, seed) the run stopped in has some detectors only: left out, so every task has every detector
    done: dict = {}
    for r in records:
        done.setdefault((r["dataset"], r.get("seed")), set()).add(r["detector"])
    whole = {k for k, dets in done.items() if "*" in dets or dets >= set(config["detectors"])}
    cut = sorted({k[0] for k in done if k not in whole})
    if cut:
        _add_note(config, f"left out, stopped part-way: {', '.join(cut)}")
    reached = {dataset for dataset, _ in done}
    never = [d for d in config.get("datasets") or () if d not in reached]
    if never:
        _add_note(config, f"not reached: {', '.join(never)}")
    records = [r for r in records if (r["dataset"], r.get("seed")) in whole]
    config["seeds"] = kept
    _write_benchmark(args.report, ev.summarize(records), machine, config)
    return 0


def _suite_tasks(suite, names: str | None) -> list:
    """The suite's tasks, or only those ``--tasks`` names (in the suite's order): a part of a suite run apart."""
    if names is None:
        return list(suite.tasks)
    wanted = split_list(names, "tasks")
    known = [t.name for t in suite.tasks]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise CLIError(f"--tasks: {', '.join(unknown)} not in the suite {suite.name!r}; its tasks: {', '.join(known)}")
    return [t for t in suite.tasks if t.name in wanted]


def cmd_eval(args: argparse.Namespace) -> int:
    from genad_fast import evaluation as ev
    from genad_fast.detectors import resolve_device
    from genad_fast.evaluation.suites import suite_detectors

    if args.from_runs is not None:
        return _eval_from_runs(args)
    suite = _eval_suite(args) if args.suite is not None else None
    if args.tasks is not None and suite is None:
        raise CLIError("--tasks picks tasks of a --suite; without one, name the data sets with --datasets")
    if args.detectors is not None:
        detectors = split_list(args.detectors, "detectors")
    else:
        detectors = suite_detectors() if suite is not None else list(ev.DEFAULT_DETECTORS)
    datasets = split_list(args.datasets or "synthetic,kdd135,digits", "datasets") if suite is None else []
    extra = _eval_params(args.param or [])
    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from exc
    _eval_specs(detectors, extra, args.device)
    if args.contamination is not None and not 0.0 < args.contamination <= 0.5:
        raise CLIError(f"--contamination must be in (0, 0.5], got {args.contamination}")
    tasks = _eval_tasks(args, datasets) if suite is None else _suite_tasks(suite, args.tasks)
    check_output_dir(args.out, "--out")
    if args.report is not None:
        check_output_path(args.report, "--report")
    if args.quick and args.no_quick:
        raise CLIError("--quick and --no-quick contradict each other")
    quick = (args.quick or (suite is not None and suite.quick)) and not args.no_quick
    n_seeds = args.seeds if args.seeds is not None else suite.seeds if suite is not None else 3
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    machine = ev.machine_info(args.device)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    config = dict(detectors=detectors, datasets=datasets or [t.name for t in tasks], seeds=seeds, quick=quick,
                  device=args.device, contamination=args.contamination, params=extra,
                  suite=suite.name if suite is not None else None,
                  suite_description=suite.description if suite is not None else None)
    os.makedirs(args.out, exist_ok=True)
    runs_path = os.path.join(args.out, RUNS_FILE)
    with open(runs_path, "w") as fh:  # every record as it is made: --from-runs reports on a run cut short
        fh.write(json.dumps(dict(header=dict(machine=machine, config=config)), default=str) + "\n")

    def append(rec: dict) -> None:
        with open(runs_path, "a") as fh:
            fh.write(json.dumps({k: v for k, v in rec.items() if k != "plotted"}, default=str) + "\n")

    records = ev.run_evaluation(detectors, tasks, seeds, quick=quick, device=args.device,
                                contamination=args.contamination, detector_params=extra,
                                plot_dir=None if args.no_plots else os.path.join(args.out, "plots"), log=log,
                                vus_window=suite.vus_window if suite is not None else "labels",
                                seed_major=suite is not None, on_record=append)
    rows = ev.summarize(records)
    paths = ev.write_reports(args.out, records, rows, machine, config)
    if args.report is not None:
        _write_benchmark(args.report, rows, machine, config)
    print(ev.markdown_table(rows))
    for line in ev.goal_check(rows):
        print(line)
    print(f"\nwrote {paths['md']}, {paths['csv']}, {paths['json']}"
          + ("" if args.no_plots else f" and plots in {os.path.join(args.out, 'plots')}"))
    return 0
