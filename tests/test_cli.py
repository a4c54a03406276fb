"""The genad-fast command line, end to end on CSV/Parquet files, with the test detector registered in-process."""
from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import genad_fast
from genad_fast import cli
from genad_fast.datasets import make_series, make_tabular
from genad_fast.detectors import get_detector


@pytest.fixture
def series_files(tmp_path):
    train, test, labels = make_series(T=1200, C=3, period=32, anomaly_types=("point",), seed=0)
    cols = ["a", "b", "c"]
    tr = pd.DataFrame(train, columns=cols)
    tr.insert(0, "t", np.arange(len(tr)))
    te = pd.DataFrame(test, columns=cols)
    te.insert(0, "t", np.arange(len(tr), len(tr) + len(te)))
    te["note"] = "x"  # a non-numeric extra column the model never saw
    tr.to_csv(tmp_path / "train.csv", index=False)
    te.to_csv(tmp_path / "test.csv", index=False)
    return tmp_path, te, labels


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("genad-fast: error: ")
    return err[0]


def test_fit_and_score_a_series_end_to_end(registered_gauss, series_files, capsys):
    d, te, labels = series_files
    rc = cli.main(["fit", "--detector", "toy-gauss", "--input", str(d / "train.csv"), "--window", "16",
                   "--time-column", "t", "--param", "per_timestamp=true", "--contamination", "0.01",
                   "--out", str(d / "model.pt"), "--quiet"])
    assert rc == 0
    assert "fitted toy-gauss on 600 rows x 3 columns (window=16, stride=1)" in capsys.readouterr().out
    det = genad_fast.load(d / "model.pt")
    assert det.window == 16 and det.per_timestamp is True and list(det.feature_names_in_) == ["a", "b", "c"]

    rc = cli.main(["score", "--model", str(d / "model.pt"), "--input", str(d / "test.csv"), "--time-column", "t",
                   "--out", str(d / "scores.csv"), "--plot", str(d / "scores.png"), "--quiet"])
    assert rc == 0
    out = pd.read_csv(d / "scores.csv")
    assert list(out.columns) == ["t", "score", "is_anomaly"] and len(out) == len(te)
    assert np.array_equal(out["t"], te["t"])
    want = det.decision_function(te[["a", "b", "c"]])
    np.testing.assert_allclose(out["score"], want, rtol=1e-12)
    assert np.array_equal(out["is_anomaly"], (want > det.threshold_).astype(int))
    # the spikes score higher than the rest
    assert roc_auc_score(labels, out["score"]) > 0.9
    assert (d / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"-> {d / 'scores.csv'}, plot -> {d / 'scores.png'}" in capsys.readouterr().out


def test_tabular_parquet_round_trip(registered_gauss, tmp_path, capsys):
    train, test, labels = make_tabular(n_train=300, n_test=200, n_features=4, seed=0)
    pd.DataFrame(train, columns=list("wxyz")).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame(test, columns=list("wxyz")).to_parquet(tmp_path / "test.parquet")
    assert cli.main(["fit", "--detector", "toy-gauss", "--input", str(tmp_path / "train.parquet"),
                     "--columns", "w,x,y,z", "--param", "seed=3", "--out", str(tmp_path / "m.pt"), "--quiet"]) == 0
    assert cli.main(["score", "--model", str(tmp_path / "m.pt"), "--input", str(tmp_path / "test.parquet"),
                     "--out", str(tmp_path / "s.parquet"), "--plot", str(tmp_path / "s.png")]) == 0
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert list(out.columns) == ["score", "is_anomaly"] and len(out) == 200
    det = genad_fast.load(tmp_path / "m.pt")
    assert det.seed == 3 and not det.is_series
    np.testing.assert_allclose(out["score"], det.decision_function(pd.DataFrame(test, columns=list("wxyz"))))
    assert roc_auc_score(labels, out["score"]) > 0.7


@pytest.mark.parametrize("argv, match", [
    (["fit", "--detector", "toy-gauss", "--input", "{d}/nope.csv", "--out", "{d}/m.pt"],
     "input file '.*nope.csv' does not exist"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.csv", "--columns", "a,zz", "--out", "{d}/m.pt"],
     r"column 'zz' not in .*train.csv \(columns: t, a, b, c\)"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.csv", "--time-column", "when", "--out", "{d}/m.pt"],
     "time column 'when' is not in"),
    (["fit", "--detector", "nope", "--input", "{d}/train.csv", "--out", "{d}/m.pt"],
     "unknown detector 'nope'; registered detectors: .*toy-gauss"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.csv", "--param", "depth=3", "--out", "{d}/m.pt"],
     "unknown parameter 'depth' for detector 'toy-gauss' \\(parameters: .*window"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.csv", "--param", "seed", "--out", "{d}/m.pt"],
     "--param 'seed': expected key=value"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.csv", "--param", "contamination=0.9",
      "--out", "{d}/m.pt"], r"contamination must be a number in \(0, 0.5\]"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.csv", "--window", "8", "--param", "window=8",
      "--out", "{d}/m.pt"], "given both as --window and --param"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/test.csv", "--time-column", "t", "--out", "{d}/m.pt"],
     "non-numeric column 'note'"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/train.xlsx", "--out", "{d}/m.pt"],
     "unknown file type '.xlsx'"),
    (["fit", "--detector", "toy-gauss", "--input", "{d}/bad.csv", "--out", "{d}/m.pt"],
     "cannot read .*bad.csv"),
    (["score", "--model", "{d}/missing.pt", "--input", "{d}/test.csv", "--out", "{d}/s.csv"],
     "model file '.*missing.pt' does not exist"),
    (["score", "--model", "{d}/train.csv", "--input", "{d}/test.csv", "--out", "{d}/s.csv"],
     "truncated, corrupt or not a model file"),
])
def test_errors_are_one_line_and_exit_1(registered_gauss, series_files, capsys, argv, match):
    d, _, _ = series_files
    (d / "bad.csv").write_bytes(b'a,b\n1,"2\n')  # an unterminated quote
    rc = cli.main([a.format(d=d) for a in argv] + ["--quiet"] * (argv[0] == "fit"))
    assert rc == 1
    assert re.search(match, _error_line(capsys))


def test_score_with_a_missing_model_column(registered_gauss, series_files, capsys):
    d, te, _ = series_files
    assert cli.main(["fit", "--detector", "toy-gauss", "--input", str(d / "train.csv"), "--time-column", "t",
                     "--out", str(d / "m.pt"), "--quiet"]) == 0
    te.drop(columns=["b"]).to_csv(d / "less.csv", index=False)
    assert cli.main(["score", "--model", str(d / "m.pt"), "--input", str(d / "less.csv"),
                     "--out", str(d / "s.csv")]) == 1
    assert "column 'b' not in" in _error_line(capsys)


def test_debug_shows_the_traceback(registered_gauss, series_files):
    d, _, _ = series_files
    with pytest.raises(cli.CLIError, match="unknown detector"):
        cli.main(["--debug", "fit", "--detector", "nope", "--input", str(d / "train.csv"), "--out", str(d / "m")])


def test_fit_with_window_auto_resolves_the_period(series_files, capsys):
    """--window auto: the window the Python default resolves (one dominant period of the training series, here
    latent periods 32 x (1, 0.43, 3.1)), kept in the model file; a real detector (kNN), not a toy."""
    d, te, _ = series_files
    rc = cli.main(["fit", "--detector", "knn", "--input", str(d / "train.csv"), "--window", "AUTO", "--time-column",
                   "t", "--out", str(d / "auto.pt"), "--quiet"])
    assert rc == 0
    det = genad_fast.load(d / "auto.pt")
    want = get_detector("knn")(window="auto", verbose=False).fit(pd.read_csv(d / "train.csv")[["a", "b", "c"]])
    assert det.window == "auto" and det.window_ == want.window_ and 8 <= det.window_ < 600
    assert f"(window={det.window_}, stride=1)" in capsys.readouterr().out
    np.testing.assert_allclose(det.decision_function(te[["a", "b", "c"]]), want.decision_function(te[["a", "b", "c"]]),
                               rtol=1e-12)
    assert cli.main(["fit", "--detector", "knn", "--input", "x.csv", "--out", "m.pt", "--window", "automatic"]) == 2
    assert "expected an integer >= 1 or auto, got 'automatic'" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert cli.main(["fit", "--input", "x.csv"]) == 2
    assert "--detector" in capsys.readouterr().err
    assert cli.main(["fit", "--detector", "x", "--input", "x.csv", "--out", "m.pt", "--window", "0"]) == 2
    assert cli.main([]) == 2


def test_version_and_info(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"genad-fast {genad_fast.__version__}"
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"genad_fast {genad_fast.__version__}")
    for needle in ("extension:", "backends:", "  eager   yes", "torch ", "threads: torch intra-op", "detectors: "):
        assert needle in out
    assert "flow" in out.splitlines()[-1]


def test_demo_dispatch(monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("genad_fast.demo")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "genad_fast.demo", fake)
    fake.__spec__ = __import__("importlib").machinery.ModuleSpec("genad_fast.demo", None)
    assert cli.main(["demo", "--fast", "--debug"]) == 0
    assert seen == [["--fast", "--debug"]]
    monkeypatch.delitem(sys.modules, "genad_fast.demo")
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["demo"]) == 1
    assert "the demo is not part of this build" in capsys.readouterr().err


def test_bench_dispatch(monkeypatch, tmp_path, capsys):
    # `genad-fast bench ARGS` runs `python -m bench ARGS` of the checkout in a child process (bench/ is not in
    # the wheel, so the package never imports it): the child's exit status comes back, this process is untouched.
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "__main__.py").write_text("import sys\nsys.exit(40 + len(sys.argv[1:]))\n")
    monkeypatch.setattr(cli, "_source_root", lambda: tmp_path)
    path_before, bench_before = list(sys.path), sys.modules.get("bench")
    assert cli.main(["bench", "--quick", "x"]) == 42
    assert sys.path == path_before and sys.modules.get("bench") is bench_before
    monkeypatch.setattr(cli, "_source_root", lambda: None)
    assert cli.main(["bench"]) == 1
    assert "the benchmarks live in the source checkout" in capsys.readouterr().err


def test_console_script_error_is_one_line(tmp_path):
    script = Path(sys.executable).parent / "genad-fast"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "genad_fast.cli"]
    proc = subprocess.run(cmd + ["score", "--model", str(tmp_path / "none.pt"), "--input", "x.csv",
                                 "--out", "y.csv"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith(("RuntimeWarning", "  warnings.warn"))]
    assert lines == [f"genad-fast: error: model file '{tmp_path / 'none.pt'}' does not exist"]


# ---------------------------------------------------------------------------------------------- checks first
# Issue #12, point 9: everything a command needs is checked before the work starts, errors name the user's input.
@pytest.fixture
def counted(registered_gauss, monkeypatch):
    """Counts of the toy detector's fit and score hooks: a check that comes first leaves them at zero."""
    calls = {"fit": 0, "score": 0}
    fit, score = registered_gauss._fit_model, registered_gauss._score_model

    def counted_fit(self, data):
        calls["fit"] += 1
        return fit(self, data)

    def counted_score(self, batch):
        calls["score"] += 1
        return score(self, batch)

    monkeypatch.setattr(registered_gauss, "_fit_model", counted_fit)
    monkeypatch.setattr(registered_gauss, "_score_model", counted_score)
    return calls


def _fit_args(d: Path, out: str, *extra: str) -> list[str]:
    return ["fit", "--detector", "toy-gauss", "--input", str(d / "train.csv"), "--time-column", "t",
            "--out", out, "--quiet", *extra]


@pytest.mark.parametrize("out, message", [
    ("{d}/no/such/dir/m.pt", "--out '{d}/no/such/dir/m.pt': directory '{d}/no/such/dir' does not exist"),
    ("{d}/train.csv/m.pt", "--out '{d}/train.csv/m.pt': '{d}/train.csv' is not a directory"),
    ("{d}", "--out '{d}' is a directory; give a file name"),
], ids=["missing-directory", "parent-is-a-file", "is-a-directory"])
def test_fit_checks_out_before_the_fit(series_files, counted, capsys, out, message):
    d, _, _ = series_files
    assert cli.main(_fit_args(d, out.format(d=d))) == 1
    assert _error_line(capsys) == f"genad-fast: error: {message.format(d=d)}"
    assert counted["fit"] == 0  # no fit was run, and lost, for a path that cannot be written


def test_fit_out_error_names_the_path_given_not_a_temporary_file(series_files, registered_gauss, monkeypatch,
                                                                 capsys):
    """The directory disappears during the fit: the save fails, and says which file the user asked for."""
    d, _, _ = series_files
    target = d / "models"
    target.mkdir()
    fit = registered_gauss._fit_model

    def fit_then_remove_the_directory(self, data):
        fit(self, data)
        target.rmdir()

    monkeypatch.setattr(registered_gauss, "_fit_model", fit_then_remove_the_directory)
    assert cli.main(_fit_args(d, str(target / "m.pt"))) == 1
    line = _error_line(capsys)
    assert f"cannot write model file '{target / 'm.pt'}'" in line and ".tmp" not in line, line


@pytest.mark.parametrize("param, match", [
    ("backend=5", r"detector 'toy-gauss': backend must be None or one of .*got 5$"),
    ("backend=fast", "unknown backend backend='fast'"),
    ("reduce=median", "reduce must be one of mean, max, min, got 'median'"),
    ("stride=0", "stride must be"),
    ("threshold=best_f1", "threshold='best_f1' needs labels"),
    ("device=tpu", "device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'tpu'"),
], ids=["backend=5", "backend=fast", "reduce=median", "stride=0", "threshold=best_f1", "device=tpu"])
def test_fit_checks_parameters_before_reading_the_data(registered_gauss, tmp_path, capsys, param, match):
    """The input does not even exist: the parameter error comes first, in words (no AttributeError)."""
    rc = cli.main(["fit", "--detector", "toy-gauss", "--input", str(tmp_path / "big.csv"), "--param", param,
                   "--out", str(tmp_path / "m.pt"), "--quiet"])
    assert rc == 1
    line = _error_line(capsys)
    assert re.search(match, line) and "Error:" not in line, line


@pytest.mark.parametrize("detector, param, match", [
    ("kde", "bandwidth=-1", "bandwidth must be a finite number > 0"),
    ("knn", "n_neighbors=0", "n_neighbors must be an int >= 1"),
    ("flow", "epochs=0", "epochs"),
    ("anogan", "iterations=0", "iterations"),  # AnoGAN's search parameters are checked apart from the GAN's
    ("pca", "score=nope", "score must be"),
], ids=["kde", "knn", "flow", "anogan", "pca"])
def test_fit_runs_each_detectors_own_parameter_checks_first(tmp_path, capsys, detector, param, match):
    rc = cli.main(["fit", "--detector", detector, "--input", str(tmp_path / "big.csv"), "--param", param,
                   "--out", str(tmp_path / "m.pt"), "--quiet"])
    assert rc == 1
    line = _error_line(capsys)
    assert f"detector {detector!r}: " in line and re.search(match, line), line


def test_header_only_csv_says_it_has_no_rows(registered_gauss, tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("t,a,b\n")
    rc = cli.main(["fit", "--detector", "toy-gauss", "--input", str(tmp_path / "empty.csv"), "--time-column", "t",
                   "--out", str(tmp_path / "m.pt"), "--quiet"])
    assert rc == 1
    assert _error_line(capsys).endswith(f"input file '{tmp_path / 'empty.csv'}' has no data rows (columns: t, a, b)")


@pytest.fixture
def fitted(series_files, registered_gauss, capsys):
    d, _, _ = series_files
    assert cli.main(_fit_args(d, str(d / "m.pt"))) == 0
    capsys.readouterr()
    return d


def _score_args(d: Path, out: str, *extra: str) -> list[str]:
    return ["score", "--model", str(d / "m.pt"), "--input", str(d / "test.csv"), "--time-column", "t",
            "--out", out, "--quiet", *extra]


@pytest.mark.parametrize("extra, match", [
    (["--out", "{d}/nodir/s.csv"], "--out '{d}/nodir/s.csv': directory '{d}/nodir' does not exist"),
    (["--out", "{d}/s.xlsx"], "--out '{d}/s.xlsx': unknown file type '.xlsx'"),
    (["--out", "{d}/s.csv", "--plot", "{d}/nodir/s.png"], "--plot '{d}/nodir/s.png': directory '{d}/nodir' does"),
    (["--out", "{d}/s.csv", "--plot", "{d}/s.csv"], "--plot '{d}/s.csv' is the same file as --out"),
], ids=["out-missing-directory", "out-unknown-type", "plot-missing-directory", "plot-is-out"])
def test_score_checks_outputs_before_scoring(fitted, counted, capsys, extra, match):
    d = fitted
    extra = [a.format(d=d) for a in extra]
    assert cli.main(_score_args(d, extra[1], *extra[2:])) == 1
    line = _error_line(capsys)
    assert match.format(d=d) in line, line
    assert counted["score"] == 0 and not (d / "s.csv").exists()


def test_score_without_matplotlib_fails_before_writing_anything(fitted, counted, monkeypatch, capsys):
    """A --plot that cannot be drawn used to leave a complete scores file behind an exit status of 1."""
    d = fitted
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import fails as if not installed
    assert cli.main(_score_args(d, str(d / "s.csv"), "--plot", str(d / "s.png"))) == 1
    assert "--plot needs matplotlib" in _error_line(capsys)
    assert counted["score"] == 0 and not (d / "s.csv").exists() and not (d / "s.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--detectors", "pca,nope", "--datasets", "wine"], "--detectors: unknown detector 'nope'; choose from "),
    (["--detectors", "pca", "--datasets", "wine,nope"], "--datasets: unknown data set 'nope'; choose from synthetic"),
    (["--detectors", "pca", "--datasets", "file:{d}/none.csv"], "--datasets 'file:{d}/none.csv': file '{d}/none.csv' "
                                                                "does not exist"),
    (["--detectors", "pca", "--datasets", "wine", "--param", "pca.score=nope"], "detector 'pca': anomaly_score must be"),
    (["--detectors", "pca", "--datasets", "wine", "--train-fraction", "1.5"],
     "--train-fraction must be in (0, 1), got 1.5"),
    (["--detectors", "pca", "--datasets", "wine", "--device", "tpu"], "--device: device must be"),
    (["--detectors", "pca", "--datasets", "wine", "--out", "{d}/file"],
     "--out '{d}/file' exists and is not a directory"),
    (["--detectors", "pca", "--datasets", "wine", "--label-column", "y"],
     "--label-column 'y' applies to file:<path> data sets, and --datasets has none"),
], ids=["detector", "dataset", "file", "param", "train-fraction", "device", "out", "label-column"])
def test_eval_rejects_bad_arguments_before_any_run(tmp_path, capsys, argv, message):
    """These used to run (or skip, as a report row) and exit 0, or fail only after every run."""
    (tmp_path / "file").write_text("")
    out = ["--out", str(tmp_path / "res")] if "--out" not in argv else []
    rc = cli.main(["eval", "--seeds", "1", "--quick", "--quiet", "--no-plots", *out,
                   *[a.format(d=tmp_path) for a in argv]])
    assert rc == 1
    assert message.format(d=tmp_path) in _error_line(capsys)
    assert not (tmp_path / "res").exists()  # nothing ran, nothing was written
