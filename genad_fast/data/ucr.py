"""The UCR time-series anomaly archive (Wu & Keogh 2021; the KDD Cup 2021 "KDD-TSAD" collection of 250 series).

Each archive series has one anomaly, a normal training prefix and a test remainder. ``aeon`` 1.x ships exactly
one of them offline, series 135 (``InternalBleeding16``, a patient's heart rate; aeon's
``load_kdd_tsad_135``); the other 249 need a download, which this module does not do. Users who have the
archive's files can read them with :func:`load_ucr_anomaly`.
"""
from __future__ import annotations

import os
import re

import numpy as np

from genad_fast._extras import install_hint
from genad_fast.data.containers import ANOMALY_KINDS, Anomaly, SeriesData

__all__ = ["load_kdd_tsad_135", "load_ucr_anomaly", "parse_ucr_name", "series_from_labels"]

DATA_EXTRA = install_hint("data")
_UCR_NAME = re.compile(r"^(\d+)_UCR_Anomaly_(.+)_(\d+)_(\d+)_(\d+)$")


def _require_aeon(what: str):
    try:
        import aeon.datasets as aeon_datasets
    except ImportError as exc:
        raise ImportError(f"{what} reads the series shipped with aeon, which is not installed "
                          f"({exc}); install it with: {DATA_EXTRA}") from exc
    return aeon_datasets


def _events(labels: np.ndarray) -> tuple[Anomaly, ...]:
    m = np.concatenate([[0], labels.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(m))
    return tuple(Anomaly("labelled", int(a), int(b), (), "labelled in the data set", "unknown")
                 for a, b in zip(edges[0::2], edges[1::2]))


def series_from_labels(train: np.ndarray, test: np.ndarray, labels: np.ndarray, params: dict,
                       dtype: type = np.float32) -> SeriesData:
    """A :class:`SeriesData` for a real series: ``kinds`` are ``ANOMALY_KINDS["labelled"]`` where labelled."""
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    train = train[:, None] if train.ndim == 1 else train
    test = test[:, None] if test.ndim == 1 else test
    labels = np.asarray(labels)
    if labels.shape != (test.shape[0],):
        raise ValueError(f"labels have shape {labels.shape}, expected ({test.shape[0]},)")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    labels = labels.astype(np.int8)
    kinds = labels * np.int8(ANOMALY_KINDS["labelled"])
    return SeriesData(train.astype(dtype), test.astype(dtype), labels, kinds, _events(labels), params)


def load_kdd_tsad_135(dtype: type = np.float32) -> SeriesData:
    """UCR anomaly archive series 135 (``135_UCR_Anomaly_InternalBleeding16_1200_4187_4199``), as aeon ships it.

    Univariate, 7501 timestamps: ``train`` is the archive's normal prefix (1200 timestamps, ``[1200, 1]``),
    ``test`` the remaining 6301 (``[6301, 1]``) with the one labelled anomaly (12 timestamps, 4187..4198 of
    the whole series, i.e. 2987..2998 of ``test``; ``params["test_offset"]`` = 1200). Read offline from
    aeon's bundled files (``aeon.datasets.load_kdd_tsad_135``); needs the ``data`` extra (aeon).
    Note: with a single anomaly per series, the archive's own score is whether the top-scored location
    hits it; AUROC/VUS on one series are high-variance.
    """
    aeon_datasets = _require_aeon("load_kdd_tsad_135")
    X_train, y_train = aeon_datasets.load_kdd_tsad_135(split="train")
    X_full, y_full = aeon_datasets.load_kdd_tsad_135(split="test")
    n = len(X_train)
    if not np.array_equal(np.asarray(X_full[:n]), np.asarray(X_train)) or np.asarray(y_train).any():
        raise ValueError("aeon's KDD-TSAD 135 files are not the expected layout (the full series in TEST, "
                         "its clean training prefix in TRAIN)")
    params = dict(name="kdd135", source="aeon.datasets.load_kdd_tsad_135",
                  series="135_UCR_Anomaly_InternalBleeding16", test_offset=n)
    return series_from_labels(X_train, X_full[n:], y_full[n:], params, dtype)


def parse_ucr_name(path: str) -> dict:
    """``{"id", "name", "train_end", "begin", "end"}`` from an archive file name ``NNN_UCR_Anomaly_<name>_<train
    end>_<begin>_<end>.txt``; the anomaly is timestamps ``begin .. end - 1`` (0-based), as aeon's TimeEval copy of
    series 135 labels it."""
    stem = os.path.basename(path)
    stem = stem[:-4] if stem.lower().endswith(".txt") else stem
    m = _UCR_NAME.match(stem)
    if m is None:
        raise ValueError(f"{path!r} is not a UCR anomaly archive file name "
                         "(NNN_UCR_Anomaly_<name>_<train end>_<begin>_<end>.txt)")
    num, name, train_end, begin, end = m.groups()
    train_end, begin, end = int(train_end), int(begin), int(end)
    if not 0 < train_end <= begin < end:
        raise ValueError(f"{path!r}: expected 0 < train end ({train_end}) <= begin ({begin}) < end ({end})")
    return dict(id=int(num), name=name, train_end=train_end, begin=begin, end=end)


def load_ucr_anomaly(path: str, dtype: type = np.float32) -> SeriesData:
    """One UCR anomaly archive file (values separated by whitespace or newlines): train = the first
    ``train_end`` values, test = the rest, labelled from the file name (:func:`parse_ucr_name`)."""
    meta = parse_ucr_name(path)
    if not os.path.exists(path):
        raise ValueError(f"UCR archive file {path!r} does not exist")
    with open(path) as fh:
        try:
            values = np.array(fh.read().split(), dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"{path!r}: not a whitespace-separated list of numbers ({exc})") from exc
    if not np.isfinite(values).all():
        raise ValueError(f"{path!r} holds NaN or inf values")
    if len(values) < meta["end"]:
        raise ValueError(f"{path!r} has {len(values)} values but its name puts the anomaly at "
                         f"{meta['begin']}..{meta['end'] - 1}")
    n = meta["train_end"]
    labels = np.zeros(len(values) - n, dtype=np.int8)
    labels[meta["begin"] - n:meta["end"] - n] = 1
    params = dict(name=f"ucr{meta['id']:03d}", source=path, series=os.path.basename(path), test_offset=n)
    return series_from_labels(values[:n], values[n:], labels, params, dtype)
