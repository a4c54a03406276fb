"""What the commands check before any work: output paths, the plot's dependencies, comma-separated lists.

Errors the user can fix are :class:`CLIError`, printed by ``genad_fast.cli.main`` as one line
(:func:`one_line`) naming the option and value as typed.
"""
from __future__ import annotations

import argparse
import importlib
import os
import tempfile

from genad_fast._extras import install_hint


class CLIError(Exception):
    """An error the user can fix; printed as one line."""


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
                       f"{install_hint('plot')}; or leave out --plot") from None


def split_list(text: str | None, option: str) -> list[str] | None:
    """``--<option> a,b,c`` as ``["a", "b", "c"]`` (blanks dropped); None for an option not given."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CLIError(f"--{option} is empty")
    return items


def one_line(exc: BaseException) -> str:
    """An exception as one line: the message, prefixed by its type unless it is one a user expects."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (CLIError, ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def int_at_least(minimum: int):
    """An argparse ``type``: the option's text as an int >= ``minimum`` (ArgumentTypeError, a usage error,
    otherwise). Not the model-file loader's checks (genad_fast.detectors._model_fields): those check values already
    read from a file and report through the loader's error type."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse
