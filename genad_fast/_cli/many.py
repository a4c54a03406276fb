"""``genad-fast score --out-dir`` (one model, many files) and ``genad-fast fit --per-series`` (one model per file).

Both take ``--input`` as a glob pattern, a directory (its .csv/.tsv/.parquet files) or one file, run on
:mod:`genad_fast.distributed` (``--engine local|ray|dask``, ``--jobs N`` workers), show a progress bar over the
files, and write one result per input named after its stem plus ``summary.csv`` into the output directory. A file
that fails (unreadable, wrong columns, NaN) is reported by name with its error while the others go on; the exit
status is 1 if any failed (``--fail-fast``: stop at the first).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from genad_fast._cli.checks import CLIError, check_output_dir, split_list

SUMMARY = "summary.csv"


def _inputs(pattern: str) -> list[str]:
    from genad_fast.distributed import expand_paths

    try:
        paths, skipped = expand_paths(pattern)
    except ValueError as exc:
        raise CLIError(f"--input {exc}") from exc
    if skipped:
        print(f"note: skipping {len(skipped)} file(s) of other types in {pattern!r} "
              f"(e.g. {os.path.basename(skipped[0])})", file=sys.stderr)
    return paths


def _check_out_dir(out_dir: str, paths: list[str], ext: str) -> None:
    """The output directory takes files, no result would overwrite an input or the summary."""
    from genad_fast.distributed.collection import output_name

    check_output_dir(out_dir, "--out-dir")
    for path in paths:
        name = output_name(path, ext)
        if name == SUMMARY:
            raise CLIError(f"--input {path!r} would write its result to {SUMMARY}, which holds the summary; "
                           f"rename the file or choose another --out-format")
        if os.path.abspath(os.path.join(out_dir, name)) == os.path.abspath(path):
            raise CLIError(f"--out-dir {out_dir!r}: the result of {path!r} would overwrite it; choose another "
                           f"directory")


def _report(summary, out_dir: str, verb: str) -> int:
    """Print the summary table, write summary.csv, name every failed file on stderr; the exit status."""
    import pandas as pd

    # The inputs are a list of paths: "file" holds them ("id" is their position).
    table = summary.drop(columns=["id"]) if "file" in summary.columns else summary.rename(columns={"id": "file"})
    table["output"] = table["output"].fillna("") if "output" in table.columns else None
    table.to_csv(os.path.join(out_dir, SUMMARY), index=False)
    failed = table[table["status"] != "ok"]
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(table.drop(columns=["error"] if failed.empty else []).to_string(index=False))
    ok = len(table) - len(failed)
    print(f"{verb} {ok} of {len(table)} file(s) -> {out_dir} (summary: {os.path.join(out_dir, SUMMARY)})")
    for _, row in failed.iterrows():
        print(f"genad-fast: error: {row['file']}: {row['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def _engine_kwargs(args: argparse.Namespace) -> dict:
    return dict(engine=args.engine, workers=args.jobs, fail_fast=args.fail_fast, verbose=not args.quiet)


def _run(job, **kwargs):
    """A job of genad_fast.distributed with its errors as CLIError (one line) and without its Python warning
    about failed series (the command reports them itself)."""
    from genad_fast.distributed import SeriesFailedError, SeriesFailedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesFailedWarning)
        try:
            return job(**kwargs)
        except SeriesFailedError as exc:
            raise CLIError(f"{exc.file or exc.series_id}: {exc.error} (--fail-fast)") from exc
        except ImportError as exc:
            raise CLIError(str(exc).split(" (")[0]) from exc


def cmd_score_many(args: argparse.Namespace) -> int:
    """``score --out-dir DIR``: every input file scored with one model into ``DIR/<stem><ext>``."""
    from genad_fast.data.files import table_kind
    from genad_fast.detectors import ModelFileError
    from genad_fast.distributed import score_many

    ext = "." + args.out_format
    table_kind("x" + ext, "--out-format")
    if args.device not in (None, "cpu"):
        raise CLIError(f"--device {args.device!r} with --out-dir: the workers score on the CPU")
    paths = _inputs(args.input)
    _check_out_dir(args.out_dir, paths, ext)
    try:
        result = _run(score_many, model=args.model, series=paths, columns=split_list(args.columns, "columns"),
                      time_column=args.time_column, out_dir=args.out_dir, out_format=ext, return_scores=False,
                      **_engine_kwargs(args))
    except (OSError, ModelFileError) as exc:
        raise CLIError(str(exc)) from exc
    return _report(result.summary, args.out_dir, "scored")


def cmd_fit_many(args: argparse.Namespace, params: dict) -> int:
    """``fit --per-series --out-dir DIR``: one detector per input file, saved as ``DIR/<stem>.pt``."""
    from genad_fast.distributed import fit_fleet

    paths = _inputs(args.input)
    _check_out_dir(args.out_dir, paths, ".pt")
    result = _run(fit_fleet, detector=args.detector, series=paths, params=params,
                  columns=split_list(args.columns, "columns"), time_column=args.time_column, out_dir=args.out_dir,
                  return_models=False, **_engine_kwargs(args))
    return _report(result.summary, args.out_dir, f"fitted {args.detector} on")
