"""``genad-fast``: fit a detector on a CSV/Parquet file, score another, inspect the build, run the demo/benchmarks.

    genad-fast fit --detector flow --input train.csv [--window 64] [--columns a,b] [--time-column t]
                   [--param key=value ...] --out model.pt
    genad-fast score --model model.pt --input test.csv --out scores.csv [--plot scores.png]
    genad-fast eval [--detectors flow,pca,...] [--datasets synthetic,kdd135,digits] [--seeds 3] [--quick]
                    [--out DIR]
    genad-fast info
    genad-fast demo [ARGS...]     # genad_fast.demo.main(ARGS)
    genad-fast bench [ARGS...]    # `python -m bench ARGS` in a child process, from the source checkout

Everything a command needs that can be checked without the data (output paths writable, the plot's
dependencies, every detector parameter, eval's detector and data set names) is checked before any data is
read, so a typo never costs a fit. Errors print one line (``genad-fast: error: ...``) naming the option and
value as typed, and exit with status 1 (2 for usage errors); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# The table reader and writer belong to the data package, which the evaluation uses too; the CLI only calls
# down into it (nothing below the CLI imports it: scripts/check_imports.py checks that).
from genad_fast.data.files import READERS, read_table, select_columns, table_kind, write_table  # noqa: F401

PROG = "genad-fast"


class CLIError(Exception):
    """An error the user can fix; printed as one line."""


# ---------------------------------------------------------------------------------------------- files
def check_output_path(path: str, option: str) -> None:
    """Fail now, before any long work, unless ``path`` (given as ``option``) can be written.

    The directory must exist and take a new file (probed by creating and removing one, which also sees
    read-only file systems and, unlike ``os.access``, holds for root), ``path`` must not be a directory, and
    an existing file must be writable. Messages name the path as the user typed it.
    """
    if os.path.isdir(path):
        raise CLIError(f"{option} {path!r} is a directory; give a file name")
    directory = os.path.dirname(path) or "."
    if not os.path.exists(directory):
        raise CLIError(f"{option} {path!r}: directory {directory!r} does not exist")
    _check_creatable_in(directory, path, option)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise CLIError(f"{option} {path!r} exists and is not writable")


def check_output_dir(path: str, option: str) -> None:
    """Like :func:`check_output_path` for a directory that the command creates if needed (``eval --out``)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{option} {path!r} exists and is not a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the nearest existing ancestor is where makedirs starts
        existing = os.path.dirname(existing)
    _check_creatable_in(existing, path, option)


def _check_creatable_in(directory: str, path: str, option: str) -> None:
    """``directory`` is a directory that takes a new file (probed: ``os.access`` says yes to root)."""
    if not os.path.isdir(directory):
        raise CLIError(f"{option} {path!r}: {directory!r} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise CLIError(f"{option} {path!r}: cannot create files in {directory!r}: {exc.strerror or exc}") from None


def check_plot_dependencies() -> None:
    """``--plot`` needs matplotlib's Agg canvas (what genad_fast.plotting imports); fail before the work if absent."""
    try:
        importlib.import_module("matplotlib.backends.backend_agg")
        importlib.import_module("matplotlib.figure")
    except ImportError as exc:
        raise CLIError(f"--plot needs matplotlib, which cannot be imported ({exc}); "
                       f"pip install genad-fast[plot], or leave out --plot") from None


def _split_columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise CLIError("--columns is empty")
    return cols


# ---------------------------------------------------------------------------------------------- params
def parse_value(text: str) -> Any:
    """``--param`` values: Python literals (1, 0.5, None, [1, 2], 'x'), true/false/none, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_param_names(cls: type, keys, detector: str) -> None:
    """Every name in ``keys`` is a constructor parameter of ``cls`` (the detector registered as ``detector``), or
    a renamed one's old spelling (``score``): the constructor still takes it, with a DeprecationWarning."""
    from genad_fast.detectors._renamed import RENAMED_PARAMS

    valid = cls._get_param_names()
    for key in keys:
        if key not in valid and RENAMED_PARAMS.get(key) not in valid:
            raise CLIError(f"unknown parameter {key!r} for detector {detector!r} (parameters: {', '.join(valid)})")


def parse_params(items: list[str], cls: type, detector: str) -> dict[str, Any]:
    """``--param key=value`` items as constructor parameters of ``cls``; unknown or repeated names are errors."""
    params: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"--param {item!r}: expected key=value")
        check_param_names(cls, [key], detector)
        if key in params:
            raise CLIError(f"parameter {key!r} given twice")
        params[key] = parse_value(value)
    return params


# ---------------------------------------------------------------------------------------------- detectors
#: The parameter checks a detector runs at the start of fit, by the hook names the detectors use
#: (BaseDetector has no public "check parameters" entry point): the base's, each class's own, AnoGAN's search.
_PARAM_CHECKS = ("_check_base_params", "_check_params", "_check_search_params")


def check_detector_params(det) -> None:
    """Run every parameter check ``det.fit`` would run before touching data: its own checks, then the device
    and backend (an explicitly named backend or device that cannot run here). Raises what the checks raise."""
    from genad_fast import _backend
    from genad_fast.detectors import resolve_device

    for hook in _PARAM_CHECKS:
        check = getattr(det, hook, None)
        if callable(check):
            check()
    _backend.resolve(det.backend, resolve_device(det.device))


def build_detector(cls: type, params: dict[str, Any], name: str):
    """``cls(**params)`` with its parameters checked now, so a bad ``--param`` fails before the data is read."""
    from genad_fast._backend import BackendUnavailableError

    try:
        det = cls(**params)
        check_detector_params(det)
    except (TypeError, ValueError, BackendUnavailableError) as exc:
        raise CLIError(f"detector {name!r}: {exc}") from exc
    return det


# ---------------------------------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    from genad_fast.detectors import get_detector

    # Everything that can be checked without the data is checked first: a bad option never costs a fit.
    try:
        cls = get_detector(args.detector)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    params = parse_params(args.param or [], cls, args.detector)
    for key in ("window", "stride", "contamination", "threshold", "device", "seed"):
        value = getattr(args, key)
        if value is not None:
            if key in params:
                raise CLIError(f"parameter {key!r} given both as --{key} and --param")
            params[key] = value
    if args.quiet:
        params["verbose"] = False
    det = build_detector(cls, params, args.detector)
    check_output_path(args.out, "--out")

    frame = read_table(args.input)
    data, _ = select_columns(frame, _split_columns(args.columns), args.time_column, args.input)
    det.fit(data)
    try:
        det.save(args.out)
    except OSError as exc:  # the message would name save's temporary file; say which file the user asked for
        raise CLIError(f"cannot write model file {args.out!r}: {exc.strerror or exc}") from exc
    n_flag = int((det.decision_scores_ > det.threshold_).sum())
    mode = f"window={det.window}, stride={det.stride}" if det.is_series else "tabular"
    print(f"fitted {args.detector} on {data.shape[0]} rows x {data.shape[1]} columns ({mode}) on {det.device_}; "
          f"threshold {det.threshold_:.6g} ({n_flag} training points above it) -> {args.out}")
    return 0


def _plot_time_axis(time):
    """Numeric or datetime values for the x-axis, else None (row numbers)."""
    import pandas as pd

    if time is None:
        return None
    if pd.api.types.is_numeric_dtype(time) or pd.api.types.is_datetime64_any_dtype(time):
        return time.to_numpy()
    try:
        return pd.to_datetime(time).to_numpy()
    except (ValueError, TypeError):
        return None


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from genad_fast.detectors import load

    # The outputs are checked before the model is loaded and the data scored: a typo never costs the work,
    # and a plot that cannot be drawn never leaves a scores file behind a failed command.
    table_kind(args.out, "--out")
    check_output_path(args.out, "--out")
    if args.plot:
        if os.path.abspath(args.plot) == os.path.abspath(args.out):
            raise CLIError(f"--plot {args.plot!r} is the same file as --out")
        check_output_path(args.plot, "--plot")
        check_plot_dependencies()
    try:
        det = load(args.model, map_location=args.device or "cpu")
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if args.quiet:
        det.verbose = False
    frame = read_table(args.input)
    columns = _split_columns(args.columns)
    if columns is None and det.feature_names_in_ is not None:
        columns = list(det.feature_names_in_)  # the columns the model was fitted on, by name
    data, time = select_columns(frame, columns, args.time_column, args.input)
    scores = det.decision_function(data)
    flagged = (scores > det.threshold_).astype(np.int64)
    out = pd.DataFrame({"score": scores, "is_anomaly": flagged})
    if time is not None:
        out.insert(0, args.time_column, time.to_numpy())
    write_table(out, args.out)
    if args.plot:
        from genad_fast.plotting import plot_scores

        try:
            plot_scores(args.plot, data.to_numpy(dtype=np.float64), scores, det.threshold_,
                        time=_plot_time_axis(time), columns=[str(c) for c in data.columns],
                        title=f"{type(det).__name__} on {os.path.basename(args.input)}")
        except (OSError, ValueError) as exc:  # checked beforehand, so rare (a full disk): keep the scores, say so
            raise CLIError(f"the scores are complete in {args.out!r}, but --plot {args.plot!r} failed: "
                           f"{_one_line(exc)}") from exc
    print(f"scored {len(scores)} rows: {int(flagged.sum())} above threshold {det.threshold_:.6g} -> {args.out}"
          + (f", plot -> {args.plot}" if args.plot else ""))
    return 0


def _split_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CLIError(f"--{what} is empty")
    return items


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


def cmd_eval(args: argparse.Namespace) -> int:
    from genad_fast import evaluation as ev
    from genad_fast.detectors import resolve_device

    detectors = _split_list(args.detectors, "detectors")
    datasets = _split_list(args.datasets, "datasets")
    extra = _eval_params(args.param or [])
    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from exc
    _eval_specs(detectors, extra, args.device)
    if args.contamination is not None and not 0.0 < args.contamination <= 0.5:
        raise CLIError(f"--contamination must be in (0, 0.5], got {args.contamination}")
    tasks = _eval_tasks(args, datasets)
    check_output_dir(args.out, "--out")
    seeds = list(range(args.seeds))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    machine = ev.machine_info(args.device)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    records = ev.run_evaluation(detectors, tasks, seeds, quick=args.quick, device=args.device,
                                contamination=args.contamination, detector_params=extra,
                                plot_dir=None if args.no_plots else os.path.join(args.out, "plots"), log=log)
    rows = ev.summarize(records)
    config = dict(detectors=detectors, datasets=datasets, seeds=seeds, quick=args.quick, device=args.device,
                  contamination=args.contamination, params=extra)
    paths = ev.write_reports(args.out, records, rows, machine, config)
    print(ev.markdown_table(rows))
    for line in ev.goal_check(rows):
        print(line)
    print(f"\nwrote {paths['md']}, {paths['csv']}, {paths['json']}"
          + ("" if args.no_plots else f" and plots in {os.path.join(args.out, 'plots')}"))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    import genad_fast
    from genad_fast.detectors import detector_names

    print(f"genad_fast {genad_fast.__version__}  (python {platform.python_version()}, {platform.machine()})")
    info = genad_fast.build_info()
    if info.get("loaded"):
        facts = ", ".join(f"{k}={v}" for k, v in info.items() if k != "loaded")
        print(f"extension: loaded ({facts})")
    else:
        print(f"extension: not loaded ({info.get('error')}); {info.get('hint')}")
    print("backends:")
    for b in genad_fast.backends():
        print(f"  {b}")
    cuda = torch.version.cuda or "none (CPU build)"
    gpu = (f"{torch.cuda.device_count()} visible: {torch.cuda.get_device_name(0)}"
           if torch.cuda.is_available() else "no visible device")
    print(f"torch {torch.__version__}, CUDA {cuda}, GPU: {gpu}")
    spec = importlib.util.find_spec("triton")
    if spec is None:
        print("triton: not installed")
    else:
        try:
            import triton

            print(f"triton {triton.__version__}")
        except Exception as exc:  # a broken install is worth a line, not a crash
            print(f"triton: installed but fails to import ({type(exc).__name__}: {exc})")
    print(f"threads: torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}, "
          f"cpus {os.cpu_count()}")
    print(f"detectors: {', '.join(detector_names()) or 'none'}")
    return 0


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
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


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
    fit.add_argument("--out", required=True, help="model file to write (.pt)")
    fit.add_argument("--window", type=_positive_int, help="series mode: window length (default: tabular rows)")
    fit.add_argument("--stride", type=_positive_int, help="series mode: step between windows (default 1)")
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
    fit.set_defaults(func=cmd_fit)

    score = sub.add_parser("score", parents=[common], help="score data with a saved model")
    score.add_argument("--model", required=True, help="model file written by `fit`")
    score.add_argument("--input", required=True, help="data to score (.csv, .tsv or .parquet)")
    score.add_argument("--out", required=True, help="scores file to write (.csv, .tsv or .parquet): "
                                                     "[time column,] score, is_anomaly")
    score.add_argument("--columns", help="comma-separated data columns (default: the model's columns)")
    score.add_argument("--time-column", help="column holding time stamps, copied to the output")
    score.add_argument("--plot", help="also write a PNG of the data, the score, the threshold and flagged points")
    score.add_argument("--device", help="where to score: cpu (default), cuda or auto")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(func=cmd_score)

    ev = sub.add_parser("eval", parents=[common], help="compare detectors on data sets: every metric as mean ± std "
                                                       "over seeds, timings, Markdown/CSV/JSON tables, plots")
    ev.add_argument("--detectors", default="flow,diffusion,anogan,vae,deepsvdd,ae,pca,kde,knn,iforest,ocsvm,lof",
                    help="comma-separated registry names or aliases (ae, dcae, deepsvdd, deepsvdd-soft)")
    ev.add_argument("--datasets", default="synthetic,kdd135,digits",
                    help="comma-separated: synthetic, kdd135, digits, digits-<0..9>, wdbc, wine, file:<path>")
    ev.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 (default 3)")
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
    ev.add_argument("--threads", type=_positive_int,
                    help="torch intra-op threads (default: torch's); 1 keeps timings sane on a busy machine")
    ev.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    ev.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    ev.set_defaults(func=cmd_eval)

    info = sub.add_parser("info", parents=[common], help="version, build, backends, torch/CUDA/triton, threads")
    info.set_defaults(func=cmd_info)
    sub.add_parser("demo", add_help=False, help="run the demo (arguments go to it; `demo --help`)")
    sub.add_parser("bench", add_help=False, help="run the benchmarks from the source checkout "
                                                 "(arguments go to it; `bench --help`)")
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (CLIError, ValueError, OSError)) else f"{type(exc).__name__}: {text}"


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
        return args.func(args)
    except SystemExit as exc:  # argparse usage errors, --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
