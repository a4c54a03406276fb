"""Real data loaders: the aeon-shipped UCR series, digits one-class tasks, ODDS-style tabular sets, user files."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from genad_fast.data import (
    load_digits_one_class,
    load_file,
    load_kdd_tsad_135,
    load_table,
    load_ucr_anomaly,
    load_wdbc,
    load_wine,
    parse_ucr_name,
)
from genad_fast.data.tabular import global_contrast_normalize


def test_kdd135_train_test_split_and_label():
    pytest.importorskip("aeon")
    data = load_kdd_tsad_135()
    train, test, labels = data
    assert train.shape == (1200, 1) and test.shape == (6301, 1) and labels.shape == (6301,)
    assert np.flatnonzero(labels).tolist() == list(range(4187 - 1200, 4199 - 1200))
    assert len(data.anomalies) == 1 and data.anomalies[0].start == 2987 and data.params["test_offset"] == 1200
    assert np.isfinite(train).all() and np.isfinite(test).all()


def test_kdd135_without_aeon_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon", None)  # import aeon.datasets -> ImportError
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'aeon.*-e '\.\[data\]'"):
        load_kdd_tsad_135()


def test_ucr_file_reader_matches_aeons_copy(tmp_path):
    aeon_datasets = pytest.importorskip("aeon.datasets")
    X, _ = aeon_datasets.load_kdd_tsad_135(split="test")
    path = tmp_path / "135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt"
    np.savetxt(path, X)
    ours, theirs = load_ucr_anomaly(str(path)), load_kdd_tsad_135()
    assert np.array_equal(ours.labels, theirs.labels)
    assert np.allclose(ours.test, theirs.test) and np.allclose(ours.train, theirs.train)


def test_ucr_name_and_file_errors(tmp_path):
    assert parse_ucr_name("/x/001_UCR_Anomaly_Foo_Bar_35_52_60.txt") == dict(id=1, name="Foo_Bar", train_end=35,
                                                                              begin=52, end=60)
    with pytest.raises(ValueError, match="not a UCR anomaly archive file name"):
        parse_ucr_name("series.txt")
    with pytest.raises(ValueError, match="train end"):
        parse_ucr_name("002_UCR_Anomaly_X_50_40_60.txt")
    short = tmp_path / "003_UCR_Anomaly_X_5_8_12.txt"
    short.write_text(" ".join(["1.0"] * 10))
    with pytest.raises(ValueError, match="has 10 values"):
        load_ucr_anomaly(str(short))
    nan = tmp_path / "004_UCR_Anomaly_X_5_8_12.txt"
    nan.write_text("\n".join(["1.0"] * 12 + ["nan"]))
    with pytest.raises(ValueError, match="NaN or inf"):
        load_ucr_anomaly(str(nan))


@pytest.mark.parametrize("normal_class", [0, 7])
def test_digits_one_class_protocol(normal_class):
    data = load_digits_one_class(normal_class, seed=0)
    X_train, X_test, y_test = data
    assert X_train.shape[1] == X_test.shape[1] == 64
    digit = data.params["digit"]
    assert np.array_equal(y_test, (digit != normal_class).astype(np.int8))
    assert 0.85 < y_test.mean() < 0.95  # stratified: one digit in ten is normal
    assert X_train.min() == 0.0 and X_train.max() == 1.0  # min-max over the normal training images
    # seeded split; another seed, another split; the training images are only the normal class
    again, other = load_digits_one_class(normal_class, seed=0), load_digits_one_class(normal_class, seed=1)
    assert np.array_equal(again.train, X_train) and not np.array_equal(other.test, X_test)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    raw = load_digits_one_class(normal_class, seed=0, preprocess="none")
    rows = {r.tobytes() for r in X[y == normal_class].astype(np.float32)}
    assert all(r.tobytes() in rows for r in raw.train)


def test_global_contrast_normalize():
    x = np.array([[1.0, 3.0, 5.0, 7.0], [2.0, 2.0, 2.0, 2.0]])
    out = global_contrast_normalize(x)
    assert np.allclose(out[0], [-1.5, -0.5, 0.5, 1.5])  # mean 4, mean |x - 4| = 2
    assert np.array_equal(out[1], np.zeros(4))


@pytest.mark.parametrize("loader, n_in, n_feat", [(load_wdbc, 357, 30), (load_wine, 119, 13)])
def test_odds_style_sets(loader, n_in, n_feat):
    uns = loader(seed=0, setting="unsupervised")
    assert uns.train.shape == uns.test.shape == (n_in + 10, n_feat) and uns.labels.sum() == 10
    semi = loader(seed=0)
    assert semi.labels.sum() == 10 and len(semi.train) + (semi.labels == 0).sum() == n_in
    # the training rows are inliers only: none of them equals an outlier row
    outl = {r.tobytes() for r in semi.test[semi.labels == 1]}
    assert not any(r.tobytes() in outl for r in semi.train)
    assert not np.array_equal(loader(seed=1).test, semi.test)
    with pytest.raises(ValueError, match="setting must be one of"):
        loader(setting="supervised")


def test_load_table_and_file(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"t": np.arange(100), "a": rng.normal(size=100), "b": rng.normal(size=100),
                          "y": (np.arange(100) % 17 == 0).astype(int)})
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    X, labels, names = load_table(str(path), label_column="y", time_column="t")
    assert names == ["a", "b"] and X.shape == (100, 2) and np.array_equal(labels, frame["y"].to_numpy())
    series = load_file(str(path), label_column="y", time_column="t", train_fraction=0.6)
    assert series.train.shape == (60, 2) and series.test.shape == (40, 2)
    assert np.array_equal(series.labels, frame["y"].to_numpy()[60:]) and series.params["train_anomalies"] == 4
    tab = load_file(str(path), time_column="t", kind="tabular")
    assert tab.params["labelled"] is False and tab.labels.sum() == 0 and tab.train.shape == (50, 3)
    with pytest.raises(ValueError, match="label column 'z' is not in"):
        load_table(str(path), label_column="z")
    frame.assign(y=frame["y"] * 2).to_csv(path, index=False)
    with pytest.raises(ValueError, match="must hold 0/1, found 2"):
        load_table(str(path), label_column="y")
    frame.assign(a=["x"] * 100).to_csv(path, index=False)
    with pytest.raises(ValueError, match="non-numeric column 'a'"):
        load_table(str(path), label_column="y")
    with pytest.raises(ValueError, match="does not exist"):
        load_table(str(tmp_path / "missing.csv"))
