#!/usr/bin/env python
"""CI check of a suite run (``genad-fast eval --suite small --out OUT --report REPORT``): every detector has a
row for every task in the report, every run succeeded (or is "n/a": a series-only detector on a tabular task)
and every metric is finite. Exits 1 naming each problem.

    python scripts/check_suite_report.py OUT/results.json REPORT.md
"""
from __future__ import annotations

import json
import math
import sys


def problems(results: dict, report: str) -> list[str]:
    out = []
    config = results["config"]
    tasks = list(dict.fromkeys(r["dataset"] for r in results["runs"]))
    unavailable = [r for r in results["runs"] if r["detector"] == "*"]
    out += [f"task {r['dataset']}: {r['reason']}" for r in unavailable]
    for task in tasks:
        for det in config["detectors"]:
            runs = [r for r in results["runs"] if r["dataset"] == task and r["detector"] == det]
            if len(runs) != len(config["seeds"]):
                out.append(f"{task} / {det}: {len(runs)} runs for {len(config['seeds'])} seeds")
            for r in runs:
                if r["status"] == "n/a" and r["kind"] == "tabular":
                    continue
                if r["status"] != "ok":
                    out.append(f"{task} / {det} seed {r['seed']}: {r['status']}: {r.get('reason')}")
                    continue
                bad = {k: v for k, v in r["metrics"].items() if not math.isfinite(v)}
                if bad:
                    out.append(f"{task} / {det} seed {r['seed']}: metrics not finite: {bad}")
            if f"| {task} | {det} |" not in report:
                out.append(f"{task} / {det}: no row in the report")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        results = json.load(fh)
    with open(argv[1]) as fh:
        report = fh.read()
    found = problems(results, report)
    for line in found:
        print(f"check_suite_report: {line}", file=sys.stderr)
    n = len(results["runs"])
    print(f"check_suite_report: {n} runs, {len(results['config']['detectors'])} detectors: "
          f"{'FAILED' if found else 'ok'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
