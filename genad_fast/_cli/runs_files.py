"""Reading the runs files of ``genad-fast eval`` (``OUT/runs.jsonl``) and merging several into one.

A runs file is a header line ``{"header": {"machine": ..., "config": ...}}`` and one JSON record per
(task, detector, seed), written as each is made. A suite at the library's default training takes hours, so it
is run in parts: one process per detector group on the cores of one machine, or some seeds in one session and the
rest in another (``--first-seed``). ``--from-runs A B ...`` reports on the parts together. The merge refuses what
would make a table silently wrong: parts of different suites or training profiles, one detector parameter set two
ways, or the same (task, detector, seed) in two parts. The one mix of suites it takes is ``full`` from its parts
(:data:`~genad_fast.evaluation.suites.FULL_PARTS`: ``gutentag`` and ``real``, whose series tasks measure VUS by the
suites' rule), to which runs of the real suite's tables by ``--datasets`` may add (a table has no VUS, so nothing
in its records depends on the suite). Where the parts were made at different commits or on different CPUs, the
report says so.
"""
from __future__ import annotations

import json

from genad_fast._cli.checks import CLIError

__all__ = ["read_runs", "merge_runs"]


def read_runs(path: str) -> tuple[dict, list[dict]]:
    """``(header, records)`` of one runs file; a clear error where it is unreadable or not a runs file."""
    try:
        with open(path) as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as exc:
        raise CLIError(f"--from-runs {path!r}: {exc}") from exc
    if not lines or "header" not in lines[0]:
        raise CLIError(f"--from-runs {path!r}: not a runs file of genad-fast eval (no header line)")
    return lines[0]["header"], lines[1:]


def _union(lists) -> list:
    """The items of several lists, each once, in the order they first appear."""
    out: list = []
    for items in lists:
        out.extend(x for x in items if x not in out)
    return out


def _same(paths: list[str], values: list, what: str, *, unless: str = "") -> None:
    """An error naming every file's value where the values differ (``unless``: the exception, in words)."""
    if any(v != values[0] for v in values[1:]):
        shown = "; ".join(f"{p}: {v!r}" for p, v in zip(paths, values))
        raise CLIError(f"--from-runs: the runs files differ in {what} ({shown}); a report mixes one {what} only"
                       + (f", {unless}" if unless else ""))


def _merged_suite(paths: list[str], configs: list[dict]) -> tuple[str | None, str | None, list[list[str]]]:
    """``(suite, description, datasets of each part)`` of the parts taken together: their one suite, or ``full``
    where they are parts of it (see the module's docstring); anything else is an error."""
    suites = [c.get("suite") for c in configs]
    datasets = [list(c.get("datasets") or ()) for c in configs]
    if all(s == suites[0] for s in suites):
        return suites[0], configs[0].get("suite_description"), datasets
    from genad_fast.evaluation.suites import FULL_PARTS, REAL_TABLES, full_description
    from genad_fast.evaluation.tasks import resolve_datasets

    tables = {t.name for t in resolve_datasets(REAL_TABLES)}  # names only: nothing is loaded
    for i, (suite, names) in enumerate(zip(suites, datasets)):
        if suite in (*FULL_PARTS, "full"):
            continue
        tasks = resolve_datasets(names) if suite is None else []
        if tasks and all(t.kind == "tabular" and t.name in tables for t in tasks):
            datasets[i] = [t.name for t in tasks]  # "digits" as the run named it: its ten tasks, as the suite's
            continue
        _same(paths, suites, "suite",
              unless=f"or the parts of 'full' ({' and '.join(FULL_PARTS)}, with --datasets runs of its tables)")
    parts = ", ".join("--datasets (tables)" if s is None else s for s in _union([suites]))
    return "full", f"{full_description()}; merged from its parts: {parts}", datasets


def _merge_params(paths: list[str], configs: list[dict]) -> dict:
    """Detector parameters of every part; one (detector, key) set to two values is an error."""
    merged: dict = {}
    origin: dict = {}
    for path, config in zip(paths, configs):
        for detector, params in (config.get("params") or {}).items():
            for key, value in params.items():
                if (detector, key) in origin and merged[detector][key] != value:
                    raise CLIError(f"--from-runs: {detector}.{key} is {merged[detector][key]!r} in "
                                   f"{origin[detector, key]} but {value!r} in {path}")
                merged.setdefault(detector, {})[key] = value
                origin[detector, key] = path
    return merged


def _provenance(paths: list[str], headers: list[dict]) -> str | None:
    """A note for the report where the parts come from different commits or CPUs (None where they do not)."""
    machines = [h["machine"] for h in headers]
    keys = ("git", "processor", "cpu_flags", "torch")
    if all(all(m.get(k) == machines[0].get(k) for k in keys) for m in machines[1:]):
        return None
    parts = [f"{p}: {m.get('date_utc')} UTC, git {str(m.get('git'))[:10]}, {m.get('processor')}, torch "
             f"{m.get('torch')}" for p, m in zip(paths, machines)]
    return "merged from runs made on different commits or machines (" + "; ".join(parts) + ")"


def merge_runs(paths: list[str]) -> tuple[dict, dict, list[dict], str | None]:
    """``(machine, config, records, note)`` of one or more runs files taken together.

    One file: its own header and records (``note`` None). Several: the first file's machine with every part's
    command; detectors, data sets and seeds the union of the parts'; the records of all parts. ``note`` names
    the parts' commits and CPUs where they differ.
    """
    loaded = [read_runs(p) for p in paths]
    headers = [h for h, _ in loaded]
    if len(paths) == 1:
        return dict(headers[0]["machine"]), dict(headers[0]["config"]), loaded[0][1], None
    configs = [h["config"] for h in headers]
    suite, description, datasets = _merged_suite(paths, configs)
    _same(paths, [c.get("quick") for c in configs], "training profile (quick)")
    _same(paths, [c.get("device") for c in configs], "device")
    _same(paths, [c.get("contamination") for c in configs], "contamination")
    params = _merge_params(paths, configs)
    seen: dict = {}
    records: list[dict] = []
    for path, (_, recs) in zip(paths, loaded):
        for r in recs:
            key = (r.get("dataset"), r.get("detector"), r.get("seed"))
            if key in seen:
                raise CLIError(f"--from-runs: {key[0]} / {key[1]} / seed {key[2]} is in both {seen[key]} and "
                               f"{path}; keep it in one file")
            seen[key] = path
            records.append(r)
    config = dict(configs[0], suite=suite, suite_description=description,
                  detectors=_union(c["detectors"] for c in configs), datasets=_union(datasets),
                  seeds=sorted(set(_union(c["seeds"] for c in configs))), params=params)
    machine = dict(headers[0]["machine"],
                   command=" ; ".join(h["machine"]["command"] for h in headers)
                   + f"  ({len(paths)} runs, merged with --from-runs)")
    return machine, config, records, _provenance(paths, headers)
