"""``genad-fast stream``: score CSV lines as they arrive with a saved series model; print scores as they are due.

    genad-fast stream --model model.pt [--input FILE|-] [--follow] [--idle-timeout SEC] [--delay D]
                      [--threshold dspot] [--columns a,b] [--time-column t]

Reads CSV lines from standard input (``--input -``, the default) or a file; ``--follow`` keeps reading a file as
it grows (``tail -f``) until ``--idle-timeout`` seconds pass with no new line, or SIGINT/SIGTERM. Every read
that brings complete lines is one :meth:`~genad_fast.streaming.StreamScorer.update`; the timestamps it makes due
are written to standard output at once (flushed per chunk) as ``index,score,alarm`` lines (``index,time,score,
alarm`` with ``--time-column``), after a header line. At the end of the input the stream is flushed (the last
timestamps, see docs/streaming.md) and a summary goes to standard error.

The first line is a header when any of its fields is not a number: columns are then chosen by name
(``--columns``, else the model's own column names, else all but ``--time-column``); without a header every
field is a channel, in the model's order.
"""
from __future__ import annotations

import argparse
import math
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from genad_fast._cli.checks import CLIError, int_at_least, split_list

__all__ = ["add_stream_parser", "cmd_stream", "read_lines"]

_READ = 1 << 16


_delay_arg = int_at_least(0)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_stream_parser(sub, common: argparse.ArgumentParser) -> None:
    """The ``stream`` command's options, on the program's subparsers ``sub``."""
    from genad_fast.series import REDUCTIONS

    p = sub.add_parser("stream", parents=[common], help="score CSV lines as they arrive (stdin or a growing file) "
                                                        "and print index,score,alarm as they are due")
    p.add_argument("--model", required=True, help="series model file written by `fit` (window set)")
    p.add_argument("--input", default="-", help="CSV to read: - for standard input (default) or a file")
    p.add_argument("--follow", action="store_true", help="keep reading the --input file as it grows (tail -f)")
    p.add_argument("--idle-timeout", type=_seconds_arg,
                   help="--follow: end the stream after this many seconds without a new line (default: never; "
                        "SIGINT/SIGTERM end it too)")
    p.add_argument("--delay", type=_delay_arg, default=0,
                   help="timestamps of look-ahead, 0 .. window-1 (default 0: a timestamp is due with the window "
                        "ending at it; window-1: the batch reduction)")
    p.add_argument("--stride", type=int, help="step between window starts (default: the model's)")
    p.add_argument("--reduce", choices=REDUCTIONS, help="how a timestamp's windows combine (default: the model's)")
    p.add_argument("--threshold", help="alarm threshold: the model's (default), a number, or a rule calibrated on "
                                       "the training scores: spot, dspot (adapting), contamination, pot")
    p.add_argument("--exact", action="store_true",
                   help="score each update's windows padded as the batch call pads them: the same bits as the "
                        "model's causal scores (default: unpadded, the lowest latency, equal to float rounding)")
    p.add_argument("--columns", help="comma-separated data columns of a header line (default: the model's)")
    p.add_argument("--time-column", help="column of a header line holding time stamps, copied to the output")
    p.add_argument("--device", help="where to score: cpu (default), cuda or auto")
    p.set_defaults(func=cmd_stream)


# ---------------------------------------------------------------------------------------------- reading lines
def read_lines(fd: int, follow: bool = False, idle_timeout: float | None = None, poll: float = 0.05,
               stop: Callable[[], bool] = lambda: False) -> Iterator[list[str]]:
    """The complete lines of ``fd`` as they become readable, in batches (one batch per read that ends a line).
    Ends at end of input; with ``follow`` it waits for more (polling every ``poll`` seconds) until
    ``idle_timeout`` seconds pass without a new line or ``stop()`` is true. A last line without a newline
    counts at the end."""
    rest, idle_since = b"", time.monotonic()
    while not stop():
        ready, _, _ = select.select([fd], [], [], poll)
        data = os.read(fd, _READ) if ready else b""
        if data:
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            if lines:
                idle_since = time.monotonic()
                yield [ln.decode("utf-8", "replace") for ln in lines]
            continue
        if ready and not follow:  # readable and empty: the end
            break
        if not follow:
            continue
        if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
            break
        time.sleep(poll)  # a regular file at its end is always "readable": wait for it to grow
    if rest.strip():
        yield [rest.decode("utf-8", "replace")]


class _Rows:
    """CSV lines to float rows ``[n, C]`` (and time stamps), the columns chosen at the first line."""

    def __init__(self, det, columns: list[str] | None, time_column: str | None) -> None:
        self.det, self.columns, self.time_column = det, columns, time_column
        self.take: list[int] | None = None   # field indices of the channels
        self.time_at: int | None = None
        self.line_no = 0

    def _header(self, fields: list[str]) -> None:
        names = [f.strip() for f in fields]
        wanted = self.columns
        if wanted is None and getattr(self.det, "feature_names_in_", None) is not None:
            wanted = list(self.det.feature_names_in_)
        if self.time_column is not None:
            if self.time_column not in names:
                raise CLIError(f"--time-column {self.time_column!r} is not in the header ({', '.join(names)})")
            self.time_at = names.index(self.time_column)
        if wanted is None:
            wanted = [n for n in names if n != self.time_column]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise CLIError(f"the header ({', '.join(names)}) has no column {', '.join(map(repr, missing))}")
        self.take = [names.index(c) for c in wanted]

    def parse(self, lines: list[str]) -> tuple[np.ndarray, list[str] | None]:
        rows, stamps = [], []
        for line in lines:
            self.line_no += 1
            if not line.strip():
                continue
            fields = line.rstrip("\r").split(",")
            if self.take is None:
                try:
                    [float(f) for f in fields]
                except ValueError:
                    self._header(fields)
                    continue
                if self.columns is not None or self.time_column is not None:
                    raise CLIError("--columns and --time-column name columns of a header line; the input has none")
                self.take = list(range(len(fields)))
            try:
                rows.append([float(fields[i]) for i in self.take])
            except (ValueError, IndexError):
                raise CLIError(f"input line {self.line_no}: expected {len(self.take)} numbers in columns "
                               f"{self.take}, got {line.strip()!r}") from None
            if self.time_at is not None:
                stamps.append(fields[self.time_at].strip())
        values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.take or ()))
        return values, (stamps if self.time_at is not None else None)


# ---------------------------------------------------------------------------------------------- the command
def _threshold(text: str | None):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip().lower()


def _write(out, stamps: list[str] | None, t0: int) -> int:
    lines = []
    for i, s, a in zip(out.index.tolist(), out.scores.tolist(), out.alarms.tolist()):
        when = f",{stamps[i - t0]}" if stamps is not None else ""
        lines.append(f"{i}{when},{s!r},{int(a)}\n")
    sys.stdout.write("".join(lines))
    sys.stdout.flush()
    return int(out.alarms.sum())


def cmd_stream(args: argparse.Namespace) -> int:
    from genad_fast.detectors import load

    if args.follow and args.input == "-":
        raise CLIError("--follow reads a growing file: give --input FILE")
    if args.idle_timeout is not None and not args.follow:
        raise CLIError("--idle-timeout goes with --follow")
    try:
        det = load(args.model, map_location=args.device or "cpu")
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if not det.is_series:
        raise CLIError(f"--model {args.model!r} is a tabular model (window=None); stream needs a series model")
    det.verbose = False
    try:
        s = det.stream(delay=args.delay, reduce=args.reduce, stride=args.stride, threshold=_threshold(args.threshold),
                       exact=args.exact)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    rows = _Rows(det, split_list(args.columns, "columns"), args.time_column)
    if args.input == "-":
        fd, handle = sys.stdin.fileno(), None
    else:
        try:
            handle = open(args.input, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CLIError(f"--input {args.input!r}: {exc.strerror or exc}") from None
        fd = handle.fileno()
    stop = {"now": False}

    def _end(signum, frame):  # end the stream between updates (then flush), never in the middle of one
        stop["now"] = True

    handlers = {sig: signal.signal(sig, _end) for sig in (signal.SIGINT, signal.SIGTERM)} if args.follow else {}
    timed = args.time_column is not None
    print(f"index{',' + args.time_column if timed else ''},score,alarm", flush=True)
    alarms, stamps, t0 = 0, [], 0   # the time stamps of the timestamps t0, t0 + 1, ... not yet written
    try:
        for lines in read_lines(fd, follow=args.follow, idle_timeout=args.idle_timeout, stop=lambda: stop["now"]):
            values, new_stamps = rows.parse(lines)
            if not values.shape[0]:
                continue
            stamps += new_stamps or []
            out = s.update(values)
            alarms += _write(out, stamps if timed else None, t0)
            if out.index.size:
                drop = int(out.index[-1]) + 1 - t0
                stamps, t0 = stamps[drop:], t0 + drop
    except KeyboardInterrupt:
        pass  # Ctrl-C on standard input ends the stream: what is pending is still scored below
    finally:
        if handle is not None:
            handle.close()
        for sig, old in handlers.items():
            signal.signal(sig, old)
    if s.n_seen < det._window:
        raise CLIError(f"the input ended after {s.n_seen} timestamps, fewer than the model's window={det._window}")
    out = s.flush()
    alarms += _write(out, stamps if timed else None, t0)
    print(f"streamed {s.n_seen} timestamps: {alarms} alarms (threshold now {s.threshold_:.6g})", file=sys.stderr)
    return 0
