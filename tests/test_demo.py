"""`genad-fast demo` (genad_fast.demo.main, what scripts/demo.sh runs) at a small size: the facts it prints and
the files it writes.

Stated bounds: the POT threshold set on held-out clean data flags at most 3x as many test timestamps as are
anomalous (and at least one); the fused and eager scores agree; no score or figure is NaN.
"""
import json
import os
import re

import numpy as np
import pytest

import genad_fast
from genad_fast import demo

FLAG_FACTOR = 3.0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = demo.main(["--length", "3000", "--epochs", "2", "--repeats", "1", "--quiet", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_demo_prints_the_build_facts(demo_run):
    rc, text, _ = demo_run
    assert rc == 0, text
    info = genad_fast.build_info()
    import torch

    assert f"torch {torch.__version__}" in text
    assert f"CPU kernels: {info['cpu_capability']} in use" in text
    built = "cuda" in info["backends"]
    assert ("CUDA ops: built for" in text) == built and ("CUDA ops: not built" in text) != built
    for b in genad_fast.backends():
        assert str(b) in text


def test_demo_flags_a_sensible_number_of_timestamps(demo_run):
    rc, text, out = demo_run
    found = re.findall(r"flagged (\d+) of (\d+) test timestamps; (\d+) are anomalous", text)
    assert len(found) == 2, text  # FlowDetector, KNNDetector
    for row in found:
        flagged, n, anomalous = map(int, row)
        assert n == 1500 and anomalous > 0
        assert 1 <= flagged <= FLAG_FACTOR * anomalous, text
    flagged, n, anomalous = map(int, found[0])
    assert re.search(r"precision \d\.\d{3}\s+recall \d\.\d{3}", text)
    # kNN's scores of held-out and normal test data, early and late: measured, finite, positive distances
    medians = re.search(r"median (\S+) on the held-out part, (\S+) on the first fifth of the normal test "
                        r"timestamps and (\S+) on the last", text)
    assert medians is not None, text
    assert all(float(v) > 0 for v in medians.groups())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flagged"] == flagged and summary["anomalous"] == anomalous
    # the threshold comes from held-out data: the training-score quantile sits lower, so it flags at least as many
    assert summary["train_quantile_flagged"] >= flagged
    assert "nan" not in text.lower()
    assert all(np.isfinite(v) for v in summary.values() if isinstance(v, float))


def test_demo_shows_the_speedup_with_the_same_scores(demo_run):
    rc, text, _ = demo_run
    if not any(b.name == "cpu" and b.available for b in genad_fast.backends()):
        assert "fused backend not available here" in text
        return
    found = re.findall(r"fused \(cpu\)\s+([\d.]+) ms\s+eager twin\s+([\d.]+) ms\s+speed-up ([\d.]+)x\s+"
                       r"same scores: yes", text)
    assert len(found) == 2, text  # FlowDetector, KNNDetector
    for row in found:
        fused_ms, eager_ms, speedup = map(float, row)
        assert fused_ms > 0 and eager_ms > 0 and speedup == pytest.approx(eager_ms / fused_ms, rel=0.02, abs=0.02)


def test_demo_writes_its_outputs_where_it_says(demo_run):
    _, text, out = demo_run
    assert f"outputs in {out}" in text
    for name in ("scores.csv", "scores.png", "flow.pt", "summary.json"):
        path = os.path.join(out, name)
        assert path in text and os.path.getsize(path) > 0
    table = np.loadtxt(out / "scores.csv", delimiter=",", skiprows=1)
    assert table.shape == (1500, 4) and np.isfinite(table).all()
    det = genad_fast.load(str(out / "flow.pt"), map_location="cpu")
    assert det.threshold_ == pytest.approx(json.loads((out / "summary.json").read_text())["threshold"])


@pytest.mark.parametrize("args, message", [
    (["--holdout", "1.5"], "--holdout must be in (0, 1)"),
    (["--risk", "0.5"], "--risk must be in (0, 0.02)"),
])
def test_demo_rejects_bad_arguments(args, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        demo.main(args)
