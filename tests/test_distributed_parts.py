"""genad_fast.distributed without a cluster: the collection of series, chunks, the per-task scoring function and
its pandas entry point (Spark's applyInPandas calls it), engine names and missing extras, failures, output names.
Jobs here run in this process (``engine="local", workers=1``); the engines themselves: tests/test_distributed.py.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from genad_fast.detectors import NotFittedError
from genad_fast.detectors.knn import KNNDetector
from genad_fast.distributed import (SeriesFailedError, SeriesFailedWarning, cached_model, fit_fleet, score_chunk,
                                    score_frame, score_many)
from genad_fast.distributed import _worker, engines
from genad_fast.distributed.collection import (chunked, collect, expand_paths, file_name_for_id, output_name)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def knn():
    rng = np.random.default_rng(0)
    return KNNDetector(window=6, n_neighbors=2, seed=0, verbose=False).fit(rng.normal(size=(300, 2)))


@pytest.fixture(scope="module")
def many():
    rng = np.random.default_rng(1)
    return [rng.normal(size=(n, 2)) for n in (40, 75, 12, 51)]


# ---------------------------------------------------------------------------------------------- collection
def test_collect_keeps_the_callers_layout(tmp_path, many):
    items, kind = collect(many)
    assert kind == "list" and [i.id for i in items] == [0, 1, 2, 3] and items[1].source is many[1]
    items, kind = collect({"a": many[0], 7: many[1]})
    assert kind == "dict" and [i.id for i in items] == ["a", 7]
    items, kind = collect(np.zeros((3, 10, 2)))
    assert kind == "list" and len(items) == 3 and items[2].source.shape == (10, 2)
    frame = pd.DataFrame({"unit": ["b", "a", "b", "a", "b"], "x": np.arange(5.0), "y": np.ones(5)})
    items, kind = collect(frame, id_column="unit")
    assert kind == "dict" and [i.id for i in items] == ["b", "a"]  # order of first appearance
    assert list(items[0].source.columns) == ["x", "y"] and list(items[0].source["x"]) == [0.0, 2.0, 4.0]
    for name in ("b.csv", "a.parquet", "notes.txt"):
        (tmp_path / name).write_text("x\n1\n")
    items, kind = collect(str(tmp_path))
    assert kind == "dict" and [i.id for i in items] == [str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")]
    assert all(i.is_file for i in items)
    assert expand_paths(str(tmp_path))[1] == [str(tmp_path / "notes.txt")]
    assert expand_paths(str(tmp_path / "*.txt"))[0] == [str(tmp_path / "notes.txt")]  # a glob takes what it names


@pytest.mark.parametrize("series, kwargs, error, match", [
    ([], {}, ValueError, "empty"),
    (pd.DataFrame({"x": [1.0]}), {}, TypeError, "a DataFrame is one series; give id_column="),
    (pd.DataFrame({"x": [1.0]}), {"id_column": "unit"}, ValueError, "id column 'unit' is not in the frame"),
    (np.zeros((5, 2)), {}, TypeError, "expected a list or dict of series"),
    ([np.zeros((5, 2)), None], {}, TypeError, "series 1 is None"),
    ("/no/such/file.csv", {}, ValueError, "does not exist"),
    ("/no/such/dir/*.csv", {}, ValueError, "matches no files"),
])
def test_collect_refuses_what_is_not_a_collection(series, kwargs, error, match):
    with pytest.raises(error, match=match):
        collect(series, **kwargs)


def test_chunks_and_output_names():
    items, _ = collect([np.zeros((4, 1))] * 10)
    assert [len(c) for c in chunked(items, 2, None)] == [2, 2, 2, 2, 2]  # ~4 tasks per worker
    assert [len(c) for c in chunked(items, 1, 4)] == [4, 4, 2]
    assert output_name("d/unit-3.csv.gz", ".csv") == "unit-3.csv"
    assert output_name("d/unit.v2.parquet", ".parquet") == "unit.v2.parquet"
    assert file_name_for_id(3, ".pt") == "3.pt"
    for bad in ("../x", "a/b", ".hidden", "", 1.5, True):
        with pytest.raises(ValueError, match="cannot name a file"):
            file_name_for_id(bad, ".pt")


# ---------------------------------------------------------------------------------------------- engines
def test_unknown_engine_lists_the_known_ones(knn, many):
    with pytest.raises(ValueError, match="unknown engine 'spark'; known engines: local, ray, dask"):
        score_many(knn, many, engine="spark", verbose=False)


@pytest.mark.parametrize("engine, module, text", [
    ("ray", "ray", "engine='ray' needs Ray: pip install 'ray>=2.9'; or, from a clone of genad_fast: "
                   "pip install --no-build-isolation -e '.[ray]'"),
    ("dask", "distributed", "engine='dask' needs Dask's distributed scheduler: pip install 'dask[distributed]>=2024.1'"
                            "; or, from a clone of genad_fast: pip install --no-build-isolation -e '.[dask]'"),
])
def test_a_missing_extra_names_it(monkeypatch, knn, many, engine, module, text):
    real = importlib.import_module

    def without(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(engines.importlib, "import_module", without)
    with pytest.raises(ImportError) as info:
        score_many(knn, many, engine=engine, verbose=False)
    assert str(info.value).startswith(text)
    with pytest.raises(ImportError, match=re.escape(text)):
        fit_fleet("knn", many, params={"window": 6}, engine=engine, verbose=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 0}, "workers must be None or an integer >= 1, got 0"),
    ({"threads": True}, "threads must be None or an integer >= 1, got True"),
    ({"chunk_size": 2.5}, "chunk_size must be None or an integer >= 1, got 2.5"),
    ({"out_format": ".xlsx"}, "unknown file type '.xlsx'"),
])
def test_bad_counts_and_formats(knn, many, kwargs, match):
    with pytest.raises(ValueError, match=match):
        score_many(knn, many, verbose=False, **kwargs)


def test_the_model_must_be_fitted_or_a_file(tmp_path, many):
    with pytest.raises(NotFittedError):
        score_many(KNNDetector(window=6), many, verbose=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        score_many(tmp_path / "none.pt", many, verbose=False)
    with pytest.raises(TypeError, match="fitted detector or the path of a model file"):
        score_many(42, many, verbose=False)
    with pytest.raises(ValueError, match="n_neighbors"):
        fit_fleet("knn", many, params={"window": 6, "n_neighbors": 0}, verbose=False)  # checked before any fit


# ---------------------------------------------------------------------------------------------- per task
def test_score_chunk_is_the_per_series_loop(knn, many):
    got = score_chunk(knn, many)
    for g, s in zip(got, many):
        assert np.array_equal(g, knn.decision_function(s))
    assert score_chunk(knn, []) == []


def test_score_frame_for_spark(knn, many, tmp_path):
    """A long frame (rows shuffled, as a Spark group may hold them) with an id and a time column."""
    parts = []
    for i, s in enumerate(many[:3]):
        parts.append(pd.DataFrame({"unit": f"u{i}", "t": np.arange(len(s)), "p": s[:, 0], "q": s[:, 1]}))
    frame = pd.concat(parts).sample(frac=1.0, random_state=0)
    out = score_frame(knn, frame, id_column="unit", time_column="t")
    assert list(out.columns) == ["unit", "t", "score", "is_anomaly"]
    for i, s in enumerate(many[:3]):
        rows = out[out["unit"] == f"u{i}"]
        assert np.array_equal(rows["t"], np.arange(len(s)))
        want = knn.decision_function(s)
        assert np.array_equal(rows["score"].to_numpy(), want)
        assert np.array_equal(rows["is_anomaly"].to_numpy(), (want > knn.threshold_).astype(np.int64))
    # one series, no id column; the model from its file, loaded once per process
    path = tmp_path / "knn.pt"
    knn.save(path)
    one = score_frame(path, parts[1].drop(columns=["unit"]), id_column=None, time_column="t")
    assert np.array_equal(one["score"].to_numpy(), knn.decision_function(many[1]))
    assert cached_model(path) is cached_model(path)
    with pytest.raises(ValueError, match="column 'zz' not in the frame"):
        score_frame(knn, frame, id_column="unit", columns=["p", "zz"])


# ---------------------------------------------------------------------------------------------- failures
def test_failures_are_collected_by_id_or_raised_with_fail_fast(knn, many, tmp_path):
    bad = many[1].copy()
    bad[3, 0] = np.inf
    series = {"ok-1": many[0], "bad": bad, "short": many[0][:3], "ok-2": many[3]}
    with pytest.warns(SeriesFailedWarning, match=r"2 of 4 series failed \(the first: 'bad'"):
        result = score_many(knn, series, workers=1, chunk_size=4, verbose=False)
    summary = result.summary.set_index("id")
    assert list(summary["status"]) == ["ok", "failed", "failed", "ok"]
    assert "non-finite" in summary.loc["bad", "error"] and "X contains" in summary.loc["bad", "error"]
    assert "fewer than window=6" in summary.loc["short", "error"]
    assert result.scores["bad"] is None and result.scores["short"] is None
    # the others, scored one by one after the packed call failed, are what the packed call gives
    assert np.array_equal(result.scores["ok-2"], knn.decision_function(many[3]))
    with pytest.raises(SeriesFailedError, match="series 'bad' failed"):
        score_many(knn, series, workers=1, fail_fast=True, verbose=False)


def test_outputs_never_collide_or_overwrite_an_input(knn, many, tmp_path):
    for name in ("a.csv", "a.parquet"):
        pd.DataFrame(many[0], columns=["p", "q"]).to_csv(tmp_path / name, index=False)
    with pytest.raises(ValueError, match="would both write 'a.csv'"):
        score_many(knn, [str(tmp_path / "a.csv"), str(tmp_path / "a.parquet")], out_dir=tmp_path / "o",
                   verbose=False)
    assert not (tmp_path / "o").exists()  # refused before any work
    with pytest.raises(ValueError, match="would overwrite it"):
        score_many(knn, [str(tmp_path / "a.csv")], out_dir=tmp_path, verbose=False)


# ---------------------------------------------------------------------------------------------- worker memory
_FAULTS = """
import resource, sys
import numpy as np
from genad_fast.distributed._worker import keep_freed_memory

def faults():  # minor page faults of 50 rounds of allocating and freeing a 1 MiB block, as a scoring call does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        np.ones(131_072).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
kept = keep_freed_memory()
faults()  # the heap grows once to hold the block
print(first, kept, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tunables")
def test_a_worker_keeps_freed_memory_under_dasks_trim_setting():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns glibc's dynamic mmap threshold
    off: every large block is a fresh mmap, page-faulted in again at each call. keep_freed_memory undoes it."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "OPENBLAS_NUM_THREADS": "1"}
    env.pop(_worker.KEEP_FREED_MEMORY_ENV, None)
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first, kept, after = out.stdout.split()
    assert kept == "True"
    assert int(first) > 50 * 200  # 1 MiB = 256 pages, faulted in again each round
    assert int(after) < 200


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(_worker.KEEP_FREED_MEMORY_ENV, "0")
    assert _worker.keep_freed_memory() is False  # before any mallopt: this process is left as it is
    monkeypatch.setenv(_worker.KEEP_FREED_MEMORY_ENV, "yes")
    with pytest.raises(ValueError, match="GENAD_FAST_KEEP_FREED_MEMORY must be 0 or 1, got 'yes'"):
        _worker.keep_freed_memory()
