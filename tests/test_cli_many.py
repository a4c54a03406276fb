"""``genad-fast score --out-dir`` and ``genad-fast fit --per-series`` over many files: one result per input, the
summary, a failed file named while the others go on, the exit status, and the option rules. The single-file
commands are tests/test_cli.py's. Jobs run in this process (``--jobs 1``, the default) except where the pool
itself is the point; the engines are tested in tests/test_distributed.py.
"""
from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

import genad_fast
from genad_fast import cli
from genad_fast.detectors.knn import KNNDetector

pytestmark = pytest.mark.usefixtures("one_thread")
COLS = ["a", "b", "c"]


@pytest.fixture
def folder(tmp_path):
    """data/: four CSV series of different lengths, one Parquet, one unreadable CSV, a README; a model file."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    frames = {}
    for i, n in enumerate((150, 220, 90, 310, 130)):
        frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=COLS)
        frame.insert(0, "t", np.arange(n))
        name = f"unit-{i}.parquet" if i == 4 else f"unit-{i}.csv"
        frame.to_parquet(data / name) if i == 4 else frame.to_csv(data / name, index=False)
        frames[name] = pd.read_parquet(data / name) if i == 4 else pd.read_csv(data / name)
    (data / "broken.csv").write_text("t,a,b,c\n0,1,2\n1,2,3,4,5,6\n")
    (data / "README.txt").write_text("not data\n")
    model = KNNDetector(window=8, n_neighbors=3, verbose=False).fit(frames["unit-0.csv"][COLS])
    model.save(tmp_path / "model.pt")
    return tmp_path, frames


def test_score_a_directory_with_an_unreadable_file(folder, capsys):
    d, frames = folder
    rc = cli.main(["score", "--model", str(d / "model.pt"), "--input", str(d / "data"), "--time-column", "t",
                   "--out-dir", str(d / "scores")])
    captured = capsys.readouterr()
    assert rc == 1  # one file failed
    assert f"genad-fast: error: {d / 'data' / 'broken.csv'}: TableError: cannot read" in captured.err
    assert "skipping 1 file(s) of other types" in captured.err and "README.txt" in captured.err
    assert "file/s" in captured.err or "file]" in captured.err  # the progress bar counts files
    assert "scored 5 of 6 file(s)" in captured.out and "broken.csv" in captured.out  # the table, printed
    det = genad_fast.load(d / "model.pt")
    for name, frame in frames.items():
        out = pd.read_csv(d / "scores" / (name.rsplit(".", 1)[0] + ".csv"), float_precision="round_trip")
        want = det.decision_function(frame[COLS])
        assert list(out.columns) == ["t", "score", "is_anomaly"]
        assert np.array_equal(out["t"], frame["t"]) and np.array_equal(out["score"].to_numpy(), want)
        assert np.array_equal(out["is_anomaly"].to_numpy(), (want > det.threshold_).astype(np.int64))
    summary = pd.read_csv(d / "scores" / "summary.csv", keep_default_na=False)
    assert list(summary.columns) == ["file", "n_timestamps", "n_flagged", "seconds", "status", "error", "output"]
    assert summary["file"].tolist() == sorted(str(d / "data" / n) for n in [*frames, "broken.csv"])
    row = summary.set_index("file").loc[str(d / "data" / "broken.csv")]
    assert row["status"] == "failed" and "Expected 4 fields" in row["error"] and row["output"] == ""
    assert not (d / "scores" / "broken.csv").exists()


def test_score_a_glob_in_two_processes_into_parquet(folder, capsys):
    d, frames = folder
    rc = cli.main(["score", "--model", str(d / "model.pt"), "--input", str(d / "data" / "unit-*.csv"),
                   "--out-dir", str(d / "scores"), "--out-format", "parquet", "--jobs", "2", "--quiet",
                   "--time-column", "t"])
    assert rc == 0, capsys.readouterr().err
    det = genad_fast.load(d / "model.pt")
    for i in range(4):
        out = pd.read_parquet(d / "scores" / f"unit-{i}.parquet")
        assert np.array_equal(out["score"].to_numpy(), det.decision_function(frames[f"unit-{i}.csv"][COLS]))
    assert "scored 4 of 4 file(s)" in capsys.readouterr().out


def test_fit_per_series_is_fitting_each_file_alone(folder, capsys):
    d, frames = folder
    rc = cli.main(["fit", "--per-series", "--detector", "knn", "--input", str(d / "data" / "unit-*"),
                   "--window", "8", "--param", "n_neighbors=2", "--time-column", "t", "--out-dir", str(d / "models"),
                   "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "fitted knn on 5 of 5 file(s)" in capsys.readouterr().out
    for name, frame in frames.items():
        model = genad_fast.load(d / "models" / (name.rsplit(".", 1)[0] + ".pt"))
        alone = KNNDetector(window=8, n_neighbors=2, verbose=False).fit(frame[COLS])
        assert np.array_equal(model.decision_scores_, alone.decision_scores_)
        assert model.threshold_ == alone.threshold_ and list(model.feature_names_in_) == COLS
    summary = pd.read_csv(d / "models" / "summary.csv")
    assert summary["status"].tolist() == ["ok"] * 5
    assert summary["n_timestamps"].tolist() == [len(f) for f in frames.values()]


def test_fail_fast_stops_at_the_failed_file(folder, capsys):
    d, _ = folder
    rc = cli.main(["score", "--model", str(d / "model.pt"), "--input", str(d / "data" / "*.csv"),
                   "--out-dir", str(d / "scores"), "--fail-fast", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith(f"genad-fast: error: {d / 'data' / 'broken.csv'}: TableError")
    assert err[-1].endswith("(--fail-fast)")


@pytest.mark.parametrize("argv, message", [
    (["score", "--model", "m.pt", "--input", "x", "--out", "s.csv", "--out-dir", "o"], "exclude each other"),
    (["score", "--model", "m.pt", "--input", "x", "--out-dir", "o", "--plot", "p.png"], "does not go with"),
    (["score", "--model", "m.pt", "--input", "x", "--out", "s.csv", "--jobs", "2"], "--jobs goes with --out-dir"),
    (["score", "--model", "m.pt", "--input", "x", "--out", "s.csv", "--engine", "ray", "--fail-fast"],
     "--fail-fast, --engine go with --out-dir"),
    (["score", "--model", "m.pt", "--input", "x"], "the following arguments are required: --out"),
    (["fit", "--detector", "knn", "--input", "x", "--per-series"], "--per-series needs --out-dir"),
    (["fit", "--detector", "knn", "--input", "x", "--out-dir", "o"], "--out-dir goes with --per-series"),
    (["fit", "--detector", "knn", "--input", "x"], "the following arguments are required: --out"),
    (["score", "--model", "m.pt", "--input", "x", "--out-dir", "o", "--engine", "spark"], "invalid choice"),
])
def test_option_rules_are_usage_errors(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--input", "{d}/data", "--out-dir", "{d}/data"], "would overwrite it"),
    (["--input", "{d}/nothing/*.csv", "--out-dir", "{d}/o"], "--input '{d}/nothing/*.csv' matches no files"),
    (["--input", "{d}/data", "--out-dir", "{d}/data/unit-0.csv"], "exists and is not a directory"),
    (["--input", "{d}/data", "--out-dir", "{d}/o", "--device", "cuda"], "the workers score on the CPU"),
])
def test_errors_before_any_work_are_one_line(folder, capsys, extra, message):
    d, _ = folder
    argv = ["score", "--model", str(d / "model.pt"), *[a.format(d=d) for a in extra], "--quiet"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genad-fast: error: ") and message.format(d=d) in err[-1]
    assert not (d / "o").exists()


def test_a_missing_engine_names_its_extra(folder, capsys, monkeypatch):
    from genad_fast.distributed import engines

    real = importlib.import_module
    monkeypatch.setattr(engines.importlib, "import_module",
                        lambda name, *a, **k: (_ for _ in ()).throw(ModuleNotFoundError(name)) if name == "ray"
                        else real(name, *a, **k))
    d, _ = folder
    rc = cli.main(["score", "--model", str(d / "model.pt"), "--input", str(d / "data" / "unit-0.csv"),
                   "--out-dir", str(d / "o"), "--engine", "ray", "--quiet"])
    assert rc == 1
    assert capsys.readouterr().err.strip() == \
        "genad-fast: error: engine='ray' needs Ray: pip install 'ray>=2.9'; or, from a clone of genad_fast: " \
        "pip install --no-build-isolation -e '.[ray]'"
