"""``genad-fast fit`` (fit a detector on a table, save the model file) and ``score`` (load it, score a table).

With ``--per-series`` / ``--out-dir`` they go over many files instead: :mod:`genad_fast._cli.many`."""
from __future__ import annotations

import argparse
import os

from genad_fast._cli.checks import CLIError, check_output_path, check_plot_dependencies, one_line, split_list
from genad_fast._cli.params import build_detector, parse_params
from genad_fast.data.files import read_table, select_columns, table_kind, write_table


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
    if getattr(args, "per_series", False):  # one detector per input file (genad_fast._cli.many)
        from genad_fast._cli.many import cmd_fit_many

        return cmd_fit_many(args, params)
    check_output_path(args.out, "--out")

    frame = read_table(args.input)
    data, _ = select_columns(frame, split_list(args.columns, "columns"), args.time_column, args.input)
    det.fit(data)
    try:
        det.save(args.out)
    except OSError as exc:  # the message would name save's temporary file; say which file the user asked for
        raise CLIError(f"cannot write model file {args.out!r}: {exc.strerror or exc}") from exc
    n_flag = int((det.decision_scores_ > det.threshold_).sum())
    mode = f"window={det._window}, stride={det.stride}" if det.is_series else "tabular"
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

    if getattr(args, "out_dir", None) is not None:  # many files into a directory (genad_fast._cli.many)
        from genad_fast._cli.many import cmd_score_many

        return cmd_score_many(args)
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
    columns = split_list(args.columns, "columns")
    names = getattr(det, "feature_names_in_", None)  # absent unless fitted on named DataFrame columns
    if columns is None and names is not None:
        columns = list(names)  # the columns the model was fitted on, by name
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
                           f"{one_line(exc)}") from exc
    print(f"scored {len(scores)} rows: {int(flagged.sum())} above threshold {det.threshold_:.6g} -> {args.out}"
          + (f", plot -> {args.plot}" if args.plot else ""))
    return 0
