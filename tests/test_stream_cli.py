"""``genad-fast stream`` (issue #15, point 4): CSV lines in as they arrive, ``index,score,alarm`` out as they are due.

- standard input fed by a child process bit by bit: the lines of the timestamps that are due appear before the
  input ends (stdout is flushed per chunk), and all of them equal ``causal_decision_function`` of the series;
- ``--follow`` on a file being appended to (tail -f), ended by ``--idle-timeout`` or by SIGTERM (which still
  scores what is pending);
- header lines (columns by name, ``--time-column`` copied out), plain numeric lines, ``--delay``/``--threshold``;
- errors: a tabular model, --follow on standard input, a missing column, a bad line, too short an input.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from genad_fast.cli import main
from genad_fast.thresholds import DSPOTThreshold
from tiny_detectors import make_detector

pytestmark = pytest.mark.usefixtures("one_thread")
W = 16


def series(T: int, seed: int) -> np.ndarray:
    t = np.arange(T)[:, None]
    return np.sin(2 * np.pi * t / 25 + np.arange(3)) + 0.1 * np.random.default_rng(seed).normal(size=(T, 3))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    det = make_detector("knn", "series", window=W, stride=1, device="cpu").fit(
        pd.DataFrame(series(800, 0), columns=["a", "b", "c"]))  # enough training scores for DSPOT's tail
    path = tmp_path_factory.mktemp("stream") / "m.pt"
    det.save(str(path))
    return det, str(path)


def csv_lines(x: np.ndarray, header: bool = True, time_column: bool = False) -> list[str]:
    head = (["t,"] if time_column else [""])[0] + "a,b,c\n"
    rows = [(f"{i}," if time_column else "") + ",".join(repr(float(v)) for v in r) + "\n" for i, r in enumerate(x)]
    return ([head] if header else []) + rows


def parse(out: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    lines = out.strip().splitlines()
    fields = [ln.split(",") for ln in lines[1:]]
    return lines[0], np.array([int(f[0]) for f in fields]), np.array([float(f[-2]) for f in fields]), \
        np.array([int(f[-1]) for f in fields])


def child(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "genad_fast.cli", "stream", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, **kw)


def reader(stream) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump():
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_for_lines(q: queue.Queue, n: int, timeout: float = 120.0) -> list[str]:
    got, end = [], time.monotonic() + timeout
    while len(got) < n:
        line = q.get(timeout=max(0.1, end - time.monotonic()))
        assert line is not None, f"the output ended after {len(got)} of {n} lines"
        got.append(line)
    return got


def test_stdin_lines_come_out_as_they_are_due(model):
    det, path = model
    x = series(60, 1)
    lines = csv_lines(x, time_column=True)
    p = child(["--model", path, "--time-column", "t", "--delay", "2"], stdin=subprocess.PIPE)
    out = reader(p.stdout)
    p.stdin.write("".join(lines[:1 + 30]))  # header + 30 timestamps: timestamps 0..27 are due (delay 2)
    p.stdin.flush()
    first = wait_for_lines(out, 1 + 28)  # before the input ends
    assert first[0].strip() == "index,t,score,alarm"
    assert [int(ln.split(",")[0]) for ln in first[1:]] == list(range(28))
    p.stdin.write("".join(lines[31:]))
    p.stdin.close()
    rest = wait_for_lines(out, 60 - 28)
    assert p.wait(timeout=60) == 0, p.stderr.read()
    head, index, scores, alarms = parse("".join(first + rest))
    np.testing.assert_array_equal(index, np.arange(60))
    np.testing.assert_array_equal(scores, det.causal_decision_function(x, delay=2))
    np.testing.assert_array_equal(alarms, scores > det.threshold_)
    assert [ln.split(",")[1] for ln in (first + rest)[1:]] == [str(i) for i in range(60)]  # the time column
    assert "streamed 60 timestamps" in p.stderr.read()


@pytest.mark.parametrize("end", ["idle-timeout", "sigterm"])
def test_follow_a_growing_file(model, tmp_path, end):
    det, path = model
    x = series(50, 2)
    lines = csv_lines(x)
    data = tmp_path / "live.csv"
    data.write_text("".join(lines[:1 + 20]))
    args = ["--model", path, "--input", str(data), "--follow"]
    args += ["--idle-timeout", "3"] if end == "idle-timeout" else []
    p = child(args)
    out = reader(p.stdout)
    first = wait_for_lines(out, 1 + 20)  # delay 0: every timestamp is due as it arrives
    with open(data, "a") as f:  # the file grows: tail -f
        f.write("".join(lines[21:40]))
    more = wait_for_lines(out, 19)
    with open(data, "a") as f:
        f.write("".join(lines[40:]))
    more += wait_for_lines(out, 11)
    if end == "sigterm":
        p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0, p.stderr.read()
    _, index, scores, _ = parse("".join(first + more))
    np.testing.assert_array_equal(index, np.arange(50))
    np.testing.assert_array_equal(scores, det.causal_decision_function(x))


def test_in_process_file_input_and_options(model, tmp_path, capsys):
    det, path = model
    x = series(45, 3)
    data = tmp_path / "x.csv"
    data.write_text("".join(csv_lines(x, header=False)))  # no header: the fields are the channels, in order
    assert main(["stream", "--model", path, "--input", str(data), "--delay", "15", "--threshold", "dspot"]) == 0
    head, index, scores, alarms = parse(capsys.readouterr().out)
    assert head == "index,score,alarm"
    np.testing.assert_array_equal(scores, det.causal_decision_function(x, delay=15))
    np.testing.assert_array_equal(alarms, DSPOTThreshold().fit(det.decision_scores_).run(scores).alarms)
    # a header in another column order: columns are taken by name (the model's names)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])[["c", "a", "b"]]
    data.write_text(frame.to_csv(index=False))
    assert main(["stream", "--model", path, "--input", str(data), "--threshold", "1.5"]) == 0
    _, _, scores, alarms = parse(capsys.readouterr().out)
    np.testing.assert_allclose(scores, det.causal_decision_function(x), rtol=1e-6)  # CSV text round trip
    np.testing.assert_array_equal(alarms, scores > 1.5)


def test_exact_gives_the_bits_and_the_default_the_rounding(tmp_path, capsys):
    """A network model (an autoencoder: its float32 products round with the batch's rows): --exact streams the bits
    of causal_decision_function, the default (unpadded windows) equals them to float rounding."""
    det = make_detector("autoencoder", "series", window=W, stride=1, device="cpu").fit(series(200, 7))
    path = str(tmp_path / "ae.pt")
    det.save(path)
    x = series(40, 8)
    data = tmp_path / "x.csv"
    data.write_text("".join(csv_lines(x, header=False)))
    want = det.causal_decision_function(x, delay=3)
    out = {}
    for flag in ([], ["--exact"]):
        assert main(["stream", "--model", path, "--input", str(data), "--delay", "3", *flag]) == 0
        _, index, out[bool(flag)], _ = parse(capsys.readouterr().out)
        np.testing.assert_array_equal(index, np.arange(40))
    # repr() of a float64 round-trips exactly through the CSV text
    np.testing.assert_array_equal(out[True], want)
    np.testing.assert_allclose(out[False], want, rtol=1e-5, atol=1e-5)


def test_errors(model, tmp_path, capsys):
    det, path = model
    tab = make_detector("knn", "tabular", device="cpu").fit(np.random.default_rng(0).normal(size=(50, 3)))
    tab_path = str(tmp_path / "tab.pt")
    tab.save(tab_path)
    data = tmp_path / "x.csv"
    data.write_text("".join(csv_lines(series(30, 4))))
    cases = [
        (["--model", tab_path, "--input", str(data)], "tabular model"),
        (["--model", path, "--follow"], "--follow reads a growing file"),
        (["--model", path, "--input", str(data), "--idle-timeout", "2"], "--idle-timeout goes with --follow"),
        (["--model", path, "--input", str(data), "--columns", "a,x"], "has no column 'x'"),
        (["--model", path, "--input", str(data), "--delay", "16"], "delay must be in"),
        (["--model", path, "--input", str(tmp_path / "missing.csv")], "No such file"),
    ]
    for args, message in cases:
        assert main(["stream", *args]) == 1, args
        assert message in capsys.readouterr().err, (args, message)
    data.write_text("a,b,c\n1,2,3\n4,five,6\n")
    assert main(["stream", "--model", path, "--input", str(data)]) == 1
    assert "input line 3: expected 3 numbers" in capsys.readouterr().err
    data.write_text("a,b,c\n1,2,3\n4,5,6\n")
    assert main(["stream", "--model", path, "--input", str(data)]) == 1
    assert "fewer than the model's window=16" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["stream", "--model", "m.pt", "--delay", "-1"], "expected an integer >= 0, got -1"),
    (["stream", "--model", "m.pt", "--delay", "two"], "expected an integer, got 'two'"),
    (["score", "--model", "m.pt", "--input", "x.csv", "--out-dir", "o", "--jobs", "0"],
     "expected an integer >= 1, got 0"),
])
def test_integer_options_are_usage_errors(argv, message, capsys):
    """--delay (>= 0) and --jobs (>= 1) share one argparse type (genad_fast._cli.checks.int_at_least)."""
    assert main(argv) == 2  # argparse's usage-error status
    assert message in capsys.readouterr().err
