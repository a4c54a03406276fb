"""TSB-AD-format files as evaluation tasks (``genad-fast eval --suite tsb:<dir or glob>``).

TSB-AD (Liu & Paparrizos, "The Elephant in the Room: Towards A Reliable Time-Series Anomaly Detection
Benchmark", NeurIPS 2024 Datasets and Benchmarks) names each file
``<index>_<name>_id_<n>_<domain>_tr_<train>_1st_<first>.csv``, e.g. ``001_NAB_id_1_Facility_tr_1007_1st_2014.csv``:
the columns are the channels followed by ``Label`` (0/1), the first ``<train>`` rows are the training part
and ``<first>`` is the first anomalous row. TSB-AD's runner (``benchmark_exp/Run_Detector_U.py``/``_M.py``)
reads a file with ``pandas.read_csv(path).dropna()``, takes every column but the last as data, fits a
semi-supervised detector on ``data[:train]`` and scores the WHOLE series, and computes the metrics on the whole
series with ``slidingWindow = find_length_rank(data[:, 0])``. These tasks do the same (``test`` is the whole
series, ``train`` its first rows), so the figures are comparable with the TSB-AD leaderboards.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re

import numpy as np

#: TSB-AD's file naming; the data set name may itself hold underscores (matched lazily), the domain may not.
_TSB_NAME = re.compile(r"^(?P<index>\d+)_(?P<name>.+?)_id_(?P<id>\d+)_(?P<domain>[^_]+)_tr_(?P<train>\d+)"
                       r"_1st_(?P<first>\d+)\.csv$")
NAMING = "<index>_<name>_id_<n>_<domain>_tr_<train>_1st_<first>.csv"


@dataclasses.dataclass(frozen=True)
class TsbName:
    """The fields of a TSB-AD file name."""

    index: int
    name: str
    id: int
    domain: str
    train: int
    first: int


def parse_tsb_name(path: str) -> TsbName:
    """The fields of a TSB-AD file name (the directory part is ignored); ValueError naming the expected form."""
    base = os.path.basename(path)
    m = _TSB_NAME.match(base)
    if m is None:
        raise ValueError(f"{base!r} is not a TSB-AD file name: expected {NAMING} "
                         "(e.g. 001_NAB_id_1_Facility_tr_1007_1st_2014.csv)")
    g = m.groupdict()
    out = TsbName(int(g["index"]), g["name"], int(g["id"]), g["domain"], int(g["train"]), int(g["first"]))
    if out.train < 1:
        raise ValueError(f"{base!r}: the training part tr_{out.train} must hold at least one row")
    return out


def load_tsb_file(path: str, dtype: type = np.float32):
    """A TSB-AD file as :class:`~genad_fast.data.SeriesData`: ``train`` = the first ``<train>`` rows, ``test`` =
    the whole series (TSB-AD scores it all), ``labels`` = its ``Label`` column. Rows with a missing value are
    dropped first, as TSB-AD's runner does."""
    import pandas as pd

    from genad_fast.data.ucr import series_from_labels

    meta = parse_tsb_name(path)
    df = pd.read_csv(path).dropna()
    if "Label" not in df.columns:
        raise ValueError(f"{path}: no 'Label' column (TSB-AD files hold the channels, then Label); columns: "
                         f"{list(df.columns)[:8]}")
    if df.columns[-1] != "Label":
        raise ValueError(f"{path}: 'Label' must be the last column (TSB-AD takes every other column as data)")
    if df.shape[1] < 2:
        raise ValueError(f"{path}: no data column besides Label")
    try:
        data = df.iloc[:, :-1].to_numpy(np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: a data column is not numeric ({exc})") from exc
    labels = df["Label"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{path}: Label must be 0 or 1, found {sorted(set(np.unique(labels)) - {0, 1})[:5]}")
    if meta.train >= data.shape[0]:
        raise ValueError(f"{path}: tr_{meta.train} leaves nothing after the training part ({data.shape[0]} rows)")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: the data hold inf")
    params = dict(source="TSB-AD file", file=os.path.abspath(path), **dataclasses.asdict(meta),
                  protocol="fit on the first `train` rows, score and measure the whole series (TSB-AD)")
    return series_from_labels(data[: meta.train], data, labels.astype(np.int8), params, dtype=dtype)


def tsb_paths(spec: str) -> list[str]:
    """The files of ``spec``: a directory (its ``*.csv``, sorted) or a glob pattern. Every file must follow
    TSB-AD's naming (ValueError naming the first that does not); none found is a ValueError too."""
    if os.path.isdir(spec):
        paths = sorted(glob.glob(os.path.join(spec, "*.csv")))
    else:
        paths = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
    if not paths:
        raise ValueError(f"tsb:{spec}: no files found (give a directory of TSB-AD .csv files or a glob pattern)")
    for p in paths:
        parse_tsb_name(p)
    return paths


def tsb_tasks(spec: str) -> list:
    """One series task per TSB-AD file of ``spec`` (named after the file, without ``.csv``)."""
    from genad_fast.evaluation.tasks import Task

    return [Task(os.path.basename(p)[:-4], "series", (lambda s, p=p: load_tsb_file(p)), seeded=False,
                 group="tsb") for p in tsb_paths(spec)]
