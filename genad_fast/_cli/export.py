"""``genad-fast export``: a saved model's scorer as an ONNX file or a ``torch.export`` program.

    genad-fast export --model model.pt [--format onnx|torch] --out model.onnx

The file holds the extreme-value guard, the normaliser, the model and the score formula
(:mod:`genad_fast.export`): raw rows (or windows of a series model) in, scores out. The ONNX file runs in
onnxruntime without genad_fast (docs/serve.md).
"""
from __future__ import annotations

import argparse

from genad_fast._cli.checks import CLIError, check_output_path
from genad_fast.export import EXPORT_FORMATS, export_detector

__all__ = ["add_export_parser", "cmd_export"]


def add_export_parser(sub, common: argparse.ArgumentParser) -> None:
    """The ``export`` command's options, on the program's subparsers ``sub``."""
    p = sub.add_parser("export", parents=[common], help="write a saved model's scorer as ONNX (runs in onnxruntime "
                                                        "without genad_fast) or as a torch.export program")
    p.add_argument("--model", required=True, help="model file written by `fit` (or det.save)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                   help="onnx (default; needs the export extra: onnx, onnxscript) or torch (torch.export.save)")
    p.add_argument("--out", required=True, help="file to write (.onnx, or .pt2 for --format torch)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from genad_fast.detectors import load

    check_output_path(args.out, "--out")
    try:
        det = load(args.model, map_location="cpu")
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    try:
        export_detector(det, args.out, format=args.format)
    except (NotImplementedError, ImportError) as exc:  # a detector that cannot export; onnx not installed
        raise CLIError(str(exc)) from exc
    what = f"windows [batch, {det._window}, {det.n_features_in_}]" if det.is_series else \
        f"rows [batch, {det.n_features_in_}]"
    print(f"exported {type(det).__name__} ({what} -> scores; threshold {det.threshold_:.6g}) as {args.format} "
          f"-> {args.out}")
    return 0
