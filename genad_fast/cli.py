"""``genad-fast``: fit a detector on a CSV/Parquet file, score another, inspect the build, run the demo/benchmarks.

    genad-fast fit --detector flow --input train.csv [--window 64] [--columns a,b] [--time-column t]
                   [--param key=value ...] --out model.pt
    genad-fast score --model model.pt --input test.csv --out scores.csv [--plot scores.png]
    genad-fast score --model model.pt --input 'data/*.csv' --out-dir scores/ [--jobs N] [--engine local|ray|dask]
    genad-fast fit --per-series --detector flow --input data/ --out-dir models/ [--jobs N] [--engine ...]
    genad-fast eval [--detectors flow,pca,...] [--datasets synthetic,kdd135,digits] [--seeds 3] [--quick]
                    [--out DIR]
    genad-fast eval --suite small|full|gutentag|real|tsb:<dir or glob> [--report docs/benchmark.md]
                    [--seeds N] [--first-seed K] [--tasks NAMES]
    genad-fast eval --from-runs A/runs.jsonl [B/runs.jsonl ...] --report docs/benchmark.md
    genad-fast export --model model.pt [--format onnx|torch] --out model.onnx
    genad-fast stream --model model.pt [--input FILE|-] [--follow] [--delay D] [--threshold dspot]
    genad-fast info
    genad-fast demo [ARGS...]     # genad_fast.demo.main(ARGS)
    genad-fast bench [ARGS...]    # `python -m bench ARGS` in a child process, from the source checkout

Everything a command needs that can be checked without the data (output paths writable, the plot's
dependencies, every detector parameter, eval's detector and data set names) is checked before any data is
read, so a typo never costs a fit. Errors print one line (``genad-fast: error: ...``) naming the option and
value as typed, and exit with status 1 (2 for usage errors); ``--debug`` shows the traceback instead.

This module is the program: the argument parser (every option of every command, in one place), ``main`` and
the two commands that hand their arguments on (``demo``, ``bench``). The other commands are in
:mod:`genad_fast._cli`, one module per command group; their public helpers are importable from here too.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# The commands live in genad_fast._cli (one module per command group); their public helpers keep their names here.
from genad_fast._cli.checks import (CLIError, int_at_least, check_output_dir, check_output_path,  # noqa: F401
                                    check_plot_dependencies, one_line)
from genad_fast._cli.evaluate import cmd_eval
from genad_fast._cli.export import add_export_parser
from genad_fast._cli.fit_score import cmd_fit, cmd_score
from genad_fast._cli.info import cmd_info
from genad_fast._cli.stream import add_stream_parser
from genad_fast._cli.params import (build_detector, check_detector_params, check_param_names,  # noqa: F401
                                    parse_params, parse_value)
# The table reader and writer belong to the data package, which the evaluation uses too; the CLI only calls
# down into it (nothing below the CLI imports it: scripts/check_imports.py checks that).
from genad_fast.data.files import READERS, read_table, select_columns, table_kind, write_table  # noqa: F401

PROG = "genad-fast"


# ---------------------------------------------------------------------------------------------- demo, bench
def cmd_demo(argv: list[str]) -> int:
    if importlib.util.find_spec("genad_fast.demo") is None:
        print(f"{PROG}: the demo is not part of this build (genad_fast.demo is missing)", file=sys.stderr)
        return 1
    demo = importlib.import_module("genad_fast.demo")
    return int(demo.main(argv) or 0)


def _source_root() -> Path | None:
    """The source checkout holding ``bench/`` next to the genad_fast package, if any."""
    import genad_fast

    root = Path(genad_fast.__file__).resolve().parent.parent
    return root if (root / "bench" / "__main__.py").is_file() else None


def cmd_bench(argv: list[str]) -> int:
    """``python -m bench ARGV`` from the source checkout, in a child process; its exit status.

    bench/ is a folder of the repository, not part of the package (the wheel does not ship it), so the CLI
    runs it as the program it is rather than importing it: the child finds it through ``PYTHONPATH`` and
    keeps the user's working directory, so relative ``--out`` paths mean what they say.
    """
    root = _source_root()
    if root is None:
        print(f"{PROG}: the benchmarks live in the source checkout (bench/); run `{PROG} bench` or "
              f"`python -m bench` from a clone of the repository", file=sys.stderr)
        return 1
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    # `-m` puts the working directory first on the child's sys.path: a bench/ there would shadow the
    # checkout's. PYTHONSAFEPATH (Python >= 3.11) leaves it out; older Pythons get the shadowing refused.
    env["PYTHONSAFEPATH"] = "1"
    local = Path.cwd() / "bench"
    if sys.version_info < (3, 11) and local.is_dir() and local.resolve() != root / "bench":
        raise CLIError(f"{local} would shadow the benchmarks of {root}; run from another directory")
    return subprocess.call([sys.executable, "-m", "bench", *argv], env=env)


# ---------------------------------------------------------------------------------------------- parser
_positive_int_arg = int_at_least(1)
_nonnegative_int_arg = int_at_least(0)


def _window_arg(text: str) -> int | str:
    """``--window``: a window length (an int >= 1), or ``auto`` (one dominant period of the training series, the
    series detectors' own default in Python; genad_fast.detectors._auto_window)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _positive_int_arg(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or auto, got {text!r}") from None


_window_arg.__name__ = "int >= 1 or auto"


def _threshold_arg(text: str) -> float | str:
    """``--threshold``: a finite score, or a rule name of genad_fast.thresholds (contamination, pot, spot, dspot)."""
    import math

    from genad_fast.thresholds import THRESHOLD_NAMES

    try:
        value = float(text)
    except ValueError:
        name = text.strip().lower()
        if name not in THRESHOLD_NAMES:
            raise argparse.ArgumentTypeError(f"expected a number or one of {', '.join(THRESHOLD_NAMES)}, "
                                             f"got {text!r}") from None
        return name
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value

def _many_options(sub: argparse.ArgumentParser, what: str) -> None:
    """The options of a command over many files (genad_fast._cli.many)."""
    sub.add_argument("--out-dir", help=f"directory for the {what} (one file per input, named after its stem) "
                                       f"and summary.csv; created if needed")
    sub.add_argument("--jobs", type=_positive_int_arg,
                     help="--out-dir: workers (default 1 with --engine local, which then runs in this process; "
                          "the cluster's workers with ray or dask)")
    sub.add_argument("--engine", choices=("local", "ray", "dask"), default="local",
                     help="--out-dir: where the workers run (ray, dask: the ray / dask extras, README)")
    sub.add_argument("--fail-fast", action="store_true", help="--out-dir: stop at the first file that fails")


def _check_modes(args: argparse.Namespace) -> None:
    """One file (--out) or many (--out-dir; fit also --per-series): a usage error (exit 2) for a mix."""
    parser = args.parser
    many = args.out_dir is not None
    if args.command == "fit" and args.per_series != many:
        parser.error("--per-series needs --out-dir" if args.per_series else "--out-dir goes with --per-series")
    if many:
        if args.out is not None:
            parser.error("--out and --out-dir exclude each other: --out writes one file, --out-dir one per input")
        if getattr(args, "plot", None):
            parser.error("--plot draws one file's scores; it does not go with --out-dir")
    else:
        if args.out is None:
            parser.error("the following arguments are required: --out")
        extra = [opt for opt, value in (("--jobs", args.jobs), ("--fail-fast", args.fail_fast),
                                        ("--engine", args.engine != "local")) if value]
        if args.command == "score" and args.out_format != "csv":
            extra.append("--out-format")
        if extra:
            parser.error(f"{', '.join(extra)} go{'es' if len(extra) == 1 else ''} with --out-dir")
    if args.jobs is None and args.engine == "local":
        args.jobs = 1  # in this process; ray and dask: None, the cluster's workers


def build_parser() -> argparse.ArgumentParser:
    from genad_fast._version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = argparse.ArgumentParser(prog=PROG, parents=[common],
                                     description="Anomaly detection with deep generative models.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fit = sub.add_parser("fit", parents=[common], help="fit a detector on normal data and save it")
    fit.add_argument("--detector", required=True, help="registered detector name (see `genad-fast info`)")
    fit.add_argument("--input", required=True, help="training data: .csv, .tsv or .parquet, one row per sample "
                                                     "or timestamp, a header row of column names")
    fit.add_argument("--out", help="model file to write (.pt); required unless --per-series")
    fit.add_argument("--window", type=_window_arg,
                     help="series mode: window length, or auto (one dominant period of the training series); "
                          "default: the detector's (tabular rows for most)")
    fit.add_argument("--stride", type=_positive_int_arg, help="series mode: step between windows (default 1)")
    fit.add_argument("--columns", help="comma-separated data columns (default: all but the time column)")
    fit.add_argument("--time-column", help="column holding time stamps; not used as data")
    fit.add_argument("--contamination", type=float, help="expected anomaly fraction, sets the threshold")
    fit.add_argument("--threshold", type=_threshold_arg,
                     help="threshold rule on the training scores: contamination (default), pot, spot, dspot "
                          "(extreme-value, risk 1e-4), or a fixed score")
    fit.add_argument("--device", help="auto, cpu or cuda")
    fit.add_argument("--seed", type=int, help="random seed")
    fit.add_argument("--param", action="append", metavar="KEY=VALUE", help="detector parameter (repeatable)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")
    fit.add_argument("--per-series", action="store_true",
                     help="a fleet: one model per input file (--input a glob or directory), saved as "
                          "<out-dir>/<stem>.pt, with summary.csv")
    _many_options(fit, "models")
    fit.set_defaults(func=cmd_fit, parser=fit)

    score = sub.add_parser("score", parents=[common], help="score data with a saved model")
    score.add_argument("--model", required=True, help="model file written by `fit`")
    score.add_argument("--input", required=True, help="data to score (.csv, .tsv or .parquet); with --out-dir "
                                                       "a glob pattern ('data/*.csv'), a directory or a file")
    score.add_argument("--out", help="scores file to write (.csv, .tsv or .parquet): "
                                     "[time column,] score, is_anomaly; or --out-dir for many inputs")
    score.add_argument("--columns", help="comma-separated data columns (default: the model's columns)")
    score.add_argument("--time-column", help="column holding time stamps, copied to the output")
    score.add_argument("--plot", help="also write a PNG of the data, the score, the threshold and flagged points")
    score.add_argument("--device", help="where to score: cpu (default), cuda or auto")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    _many_options(score, "scores")
    score.add_argument("--out-format", choices=("csv", "tsv", "parquet"), default="csv",
                       help="--out-dir: the result files' format (default csv)")
    score.set_defaults(func=cmd_score, parser=score)

    ev = sub.add_parser("eval", parents=[common], help="compare detectors on data sets: every metric as mean ± std "
                                                       "over seeds, timings, Markdown/CSV/JSON tables, plots")
    ev.add_argument("--detectors", help="comma-separated registry names or aliases (ae, dcae, deepsvdd, "
                    "deepsvdd-soft); default flow,diffusion,anogan,vae,deepsvdd,ae,pca,kde,knn,iforest,ocsvm,lof "
                    "(--suite: and dte, ensemble where registered)")
    ev.add_argument("--datasets", help="comma-separated: synthetic, kdd135, digits, digits-<0..9>, wdbc, wine, "
                                       "file:<path> (default synthetic,kdd135,digits; not with --suite)")
    ev.add_argument("--suite", help="a benchmark suite instead of --datasets: small (CI), full, gutentag, real, "
                                    "tsb:<dir or glob> (TSB-AD files); docs/benchmark.md")
    ev.add_argument("--tasks", help="--suite: only these of its tasks, comma-separated (a part of a suite run apart; "
                                    "--from-runs reports on the parts together)")
    ev.add_argument("--report", help="also write the suite report (ranks, generative vs classic, tables) here, "
                                     "e.g. docs/benchmark.md")
    ev.add_argument("--cache-dir", help="--suite: where GutenTAG series are generated (default $GENAD_FAST_CACHE "
                                        "or ~/.cache/genad_fast)")
    ev.add_argument("--no-quick", action="store_true", help="--suite: the library's default training even where "
                    "the suite shortens it (full, gutentag, real)")
    ev.add_argument("--from-runs", metavar="OUT/runs.jsonl", nargs="+", help="run nothing: write --report from "
                    "the runs file of an earlier eval (e.g. one cut short), or from several that are parts of one "
                    "suite (detector groups or seeds run apart), merged")
    ev.add_argument("--seeds", type=_positive_int_arg, help="number of seeds N (default 3; --suite: the suite's)")
    ev.add_argument("--first-seed", type=_nonnegative_int_arg, default=0,
                    help="seeds K..K+N-1 instead of 0..N-1 (e.g. --first-seed 1 --seeds 2: the seeds 1 and 2 of "
                         "a suite whose seed 0 ran earlier)")
    ev.add_argument("--out", default="eval_results", help="directory for results.{md,csv,json} and plots/")
    ev.add_argument("--quick", action="store_true",
                    help="short training (epochs=5 and the like) and a smaller synthetic series: a smoke run")
    ev.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ev.add_argument("--contamination", type=float, help="every detector's contamination (sets threshold_)")
    ev.add_argument("--param", action="append", metavar="DETECTOR.KEY=VALUE",
                    help="a detector parameter, e.g. flow.epochs=20 (repeatable)")
    ev.add_argument("--label-column", help="file:<path> data sets: the 0/1 label column")
    ev.add_argument("--train-fraction", type=float, default=0.5,
                    help="file:<path> data sets: leading fraction of rows to train on (default 0.5)")
    ev.add_argument("--file-kind", choices=("series", "tabular"), default="series",
                    help="file:<path> data sets: rows are timestamps (series) or independent rows")
    ev.add_argument("--threads", type=_positive_int_arg,
                    help="torch intra-op threads (default: torch's); 1 keeps timings sane on a busy machine")
    ev.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    ev.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    ev.set_defaults(func=cmd_eval)

    add_export_parser(sub, common)  # genad_fast/_cli/export.py
    add_stream_parser(sub, common)  # genad_fast/_cli/stream.py

    info = sub.add_parser("info", parents=[common], help="version, build, backends, torch/CUDA/triton, threads")
    info.set_defaults(func=cmd_info)
    sub.add_parser("demo", add_help=False, help="run the demo (arguments go to it; `demo --help`)")
    sub.add_parser("bench", add_help=False, help="run the benchmarks from the source checkout "
                                                 "(arguments go to it; `bench --help`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    passthrough = first is not None and argv[first] in ("demo", "bench")
    # demo and bench hand everything after their name to their own parsers (--debug there is theirs).
    debug = "--debug" in (argv[:first] if passthrough else argv)
    try:
        if passthrough:
            if any(a != "--debug" for a in argv[:first]):
                parser.parse_args(argv[:first])  # --help/--version before the command, or a usage error
            rest = argv[first + 1:]
            return cmd_demo(rest) if argv[first] == "demo" else cmd_bench(rest)
        args = parser.parse_args(argv)
        if args.command in ("fit", "score"):
            _check_modes(args)
        return args.func(args)
    except SystemExit as exc:  # argparse usage errors, --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
