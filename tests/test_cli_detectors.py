"""``genad-fast fit`` then ``score`` (then ``--plot``) through the CLI for every registered detector.

The other CLI tests use a toy detector; these run the real ones, with settings small enough that each
fit takes about a second, on series files with a time column and 1, 2 and 5 value columns, in the
detector's default mode (tabular, or its own window) and with ``--window``, from CSV and from Parquet.
What a user gets must agree with the Python API on the same model file and data.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genad_fast
from genad_fast import cli
from genad_fast.datasets import make_series
from genad_fast.detectors import detector_names, get_detector

pytestmark = pytest.mark.usefixtures("one_thread")

#: ``--param`` values that make each detector's fit take about a second on the files below.
SMALL_PARAMS: dict[str, list[str]] = {
    "flow": ["n_steps=2", "hidden=16", "epochs=2"],
    "diffusion": ["n_steps=10", "residual_channels=8", "n_layers=2", "embedding_dim=16", "epochs=2", "n_draws=1",
                  "tile_size=64"],
    "autoencoder": ["hidden=[16]", "epochs=2", "min_steps=0"],
    "vae": ["hidden=[16]", "epochs=2", "min_steps=0", "n_samples=2"],
    "deep_svdd": ["hidden=[16]", "epochs=2", "min_steps=0", "pretrain_epochs=1", "warm_up_epochs=1"],
    "anogan": ["hidden=[16]", "critic_hidden=[16]", "epochs=2", "min_steps=1", "iterations=5"],
    "fanogan": ["hidden=[16]", "critic_hidden=[16]", "encoder_hidden=[16]", "epochs=2", "min_steps=1",
                "encoder_epochs=2"],
    "iforest": ["n_estimators=10"],
    "pca": [], "ocsvm": [], "lof": [], "kde": [], "knn": [],
    "dte": ["hidden=[16]", "epochs=2", "min_steps=0"],
    "ensemble": ["member_params={'flow': {'n_steps': 2, 'hidden': 16, 'n_blocks': 1, 'epochs': 2}, "
                 "'dte': {'hidden': [16], 'epochs': 2, 'min_steps': 0}}"],
}
DETECTORS = detector_names()  # the built-in registry (test-only detectors register inside their tests)
WINDOW = 16
T = 600  # 300 training and 300 test timestamps


def _params(name: str) -> list[str]:
    if name not in SMALL_PARAMS:  # a new detector must say how to fit it small, not run for minutes here
        pytest.fail(f"detector {name!r} is registered but has no entry in SMALL_PARAMS of {__file__}")
    return [a for p in SMALL_PARAMS[name] for a in ("--param", p)]


def _write_files(d: Path, n_columns: int, suffix: str) -> tuple[list[str], pd.DataFrame]:
    """train/test files: a time column ``t`` and ``n_columns`` value columns; returns the names and the test part."""
    data = make_series(T=T, C=n_columns, period=32, anomaly_types=("point",), seed=n_columns)
    columns = [f"x{i}" for i in range(n_columns)]
    frames = []
    for part, start in ((data.train, 0), (data.test, len(data.train))):
        frame = pd.DataFrame(part.astype(np.float64), columns=columns)
        frame.insert(0, "t", np.arange(start, start + len(frame)))
        frames.append(frame)
    for frame, stem in zip(frames, ("train", "test")):
        if suffix == ".parquet":
            frame.to_parquet(d / f"{stem}{suffix}", index=False)
        else:
            frame.to_csv(d / f"{stem}{suffix}", index=False)
    return columns, frames[1]


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _fit_and_score(d: Path, name: str, n_columns: int, window: int | None, suffix: str = ".csv",
                   plot: bool = False) -> None:
    """Run the two commands and check the model file and the scores against the Python API."""
    columns, test = _write_files(d, n_columns, suffix)
    model, scores, png = d / "model.pt", d / f"scores{suffix}", d / "scores.png"
    win = ["--window", str(window), "--stride", "4"] if window is not None else []
    rc = cli.main(["fit", "--detector", name, "--input", str(d / f"train{suffix}"), "--time-column", "t",
                   "--seed", "0", "--out", str(model), "--quiet", *win, *_params(name)])
    assert rc == 0, f"fit exited {rc}"
    det = genad_fast.load(model)
    assert type(det) is get_detector(name)
    assert det.n_features_in_ == n_columns and list(det.feature_names_in_) == columns
    if window is not None:
        assert det.window == window and det.stride == 4

    rc = cli.main(["score", "--model", str(model), "--input", str(d / f"test{suffix}"), "--time-column", "t",
                   "--out", str(scores), "--quiet"] + (["--plot", str(png)] if plot else []))
    assert rc == 0, f"score exited {rc}"
    out = _read(scores)
    assert list(out.columns) == ["t", "score", "is_anomaly"]
    assert np.array_equal(out["t"], test["t"])
    assert np.isfinite(out["score"]).all()
    assert np.ptp(out["score"]) > 0, "every timestamp got the same score"
    want = det.decision_function(test[columns])
    np.testing.assert_allclose(out["score"], want, rtol=1e-9, atol=0)
    assert np.array_equal(out["is_anomaly"], (want > det.threshold_).astype(int))
    if plot:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n_columns", [1, 2, 5])
@pytest.mark.parametrize("name", DETECTORS)
def test_fit_score_with_a_window(tmp_path, capsys, name, n_columns):
    _fit_and_score(tmp_path, name, n_columns, WINDOW, plot=n_columns == 2)
    assert f"fitted {name} on {T // 2} rows x {n_columns} columns (window={WINDOW}, stride=4)" \
        in capsys.readouterr().out


@pytest.mark.parametrize("n_columns", [2, 5])
@pytest.mark.parametrize("name", DETECTORS)
def test_fit_score_in_the_default_mode(tmp_path, name, n_columns):
    """No ``--window``: tabular rows, or the detector's own default window (diffusion); the issue's case."""
    _fit_and_score(tmp_path, name, n_columns, None)


@pytest.mark.parametrize("name", DETECTORS)
def test_fit_score_parquet(tmp_path, name):
    _fit_and_score(tmp_path, name, 2, None, suffix=".parquet")


def test_one_value_column_needs_a_window_for_a_flow(tmp_path, capsys):
    """A flow cannot model one number per row: the CLI says so (and what to do) instead of failing later."""
    _write_files(tmp_path, 1, ".csv")
    rc = cli.main(["fit", "--detector", "flow", "--input", str(tmp_path / "train.csv"), "--time-column", "t",
                   "--out", str(tmp_path / "m.pt"), "--quiet", *_params("flow")])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("genad-fast: error: ") and "use a window" in err
    assert not (tmp_path / "m.pt").exists()


def test_installed_script_fits_and_scores_the_issue_example(tmp_path):
    """The issue's commands, verbatim, through the installed console script: KDE on two value columns."""
    script = Path(sys.executable).parent / "genad-fast"
    assert script.exists(), f"{script} is not installed; pip install --no-build-isolation -e ."
    columns, _ = _write_files(tmp_path, 2, ".csv")
    for argv in (["fit", "--detector", "kde", "--input", "train.csv", "--time-column", "t", "--out", "m.pt"],
                 ["score", "--model", "m.pt", "--input", "train.csv", "--time-column", "t", "--out", "s.csv"]):
        proc = subprocess.run([str(script), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "s.csv")
    assert list(out.columns) == ["t", "score", "is_anomaly"] and len(out) == T // 2
    train = pd.read_csv(tmp_path / "train.csv")
    want = genad_fast.load(tmp_path / "m.pt").decision_function(train[columns])
    np.testing.assert_allclose(out["score"], want, rtol=1e-9, atol=0)
