"""genad_fast.distributed: many series scored with one model, and fleets of per-series models, on this machine's
processes, a local Ray and a local Dask cluster: the same numbers as the in-process path, bit for bit.

The Ray (``ray.init(num_cpus=2)``) and Dask (``LocalCluster``, 2 worker processes of one thread) clusters are
module-scoped, started once and shut down after; the detectors are small (seconds to fit). The engine-free parts
(the collection, chunking, the per-task function, errors) are in tests/test_distributed_parts.py.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from genad_fast.detectors.flow import FlowDetector
from genad_fast.detectors.knn import KNNDetector
from genad_fast.distributed import (SeriesFailedError, SeriesFailedWarning, fit_fleet, score_many)

C = 3
LENGTHS = (120, 257, 64, 190, 333, 80)


def _series(seed: int, lengths=LENGTHS) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(C, C)) / np.sqrt(C)
    return [(rng.normal(size=(n, C)) @ mix).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module")
def data():
    train = np.concatenate(_series(0, (400,)))
    return train, _series(1)


@pytest.fixture(scope="module")
def models(data):
    """A flow (a network detector) and kNN (a classic one), fitted in this process."""
    train, _ = data
    flow = FlowDetector(window=8, n_steps=2, hidden=16, epochs=2, seed=0, verbose=False).fit(train)
    knn = KNNDetector(window=8, n_neighbors=3, seed=0, verbose=False).fit(train)
    return {"flow": flow, "knn": knn}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray extra (ray) is not installed")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="the dask extra (dask[distributed]) is "
                                                            "not installed")
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _check_scores(result, det, series) -> None:
    want = [det.decision_function(s) for s in series]
    assert len(result.scores) == len(want)
    for got, ref in zip(result.scores, want):
        assert got.dtype == np.float64 and np.array_equal(got, ref)  # bit for bit
    summary = result.summary
    assert list(summary["status"]) == ["ok"] * len(series)
    assert list(summary["n_timestamps"]) == [len(s) for s in series]
    assert list(summary["n_flagged"]) == [int((w > det.threshold_).sum()) for w in want]
    # The model went to each worker once: every worker process that ran a task loaded it exactly once.
    assert result.info["model_loads"] and set(result.info["model_loads"].values()) == {1}
    # Each worker's time by phase: its tasks add up to the job's; a worker process (not the in-process route)
    # keeps the memory its calls free (Dask's nanny environment would otherwise page-fault every large tensor).
    phases = result.info["worker_phases"]
    assert set(phases) == set(result.info["model_loads"])
    assert sum(p["tasks"] for p in phases.values()) == result.info["tasks"]
    assert all(p["init_cpu"] > 0 and p["tasks_cpu"] > 0 for p in phases.values())
    in_process = result.info["engine"] == "local" and result.info["workers"] == 1
    assert {p["kept_freed_memory"] for p in phases.values()} == {not in_process}


def _check_fleet(result, series, params) -> None:
    probe = _series(7, (90,))[0]
    for got, s in zip(result.models, series):
        alone = KNNDetector(**params).fit(s) if "n_neighbors" in params else FlowDetector(**params).fit(s)
        assert type(got) is type(alone)
        assert np.array_equal(got.decision_scores_, alone.decision_scores_)
        assert got.threshold_ == alone.threshold_
        assert np.array_equal(got.decision_function(probe), alone.decision_function(probe))
    assert list(result.summary["n_timestamps"]) == [len(s) for s in series]


FLOW_FLEET = dict(window=8, n_steps=2, hidden=8, epochs=1, seed=3, verbose=False)


# ---------------------------------------------------------------------------------------------- local
def test_local_processes_score_bit_for_bit(models, data):
    _, series = data
    result = score_many(models["flow"], series, engine="local", workers=2, chunk_size=2, verbose=False)
    _check_scores(result, models["flow"], series)
    assert result.info["workers"] == 2 and result.info["tasks"] == 3
    assert result.info["threads"] == 1  # 2 cores shared by 2 workers


def test_local_in_process_restores_the_callers_threads(models, data):
    import torch

    _, series = data
    before = torch.get_num_threads()
    result = score_many(models["knn"], series, workers=1, threads=1, chunk_size=4, verbose=False)
    _check_scores(result, models["knn"], series)
    assert torch.get_num_threads() == before


def test_local_fleet_equals_fitting_each_series_alone(data):
    _, series = data
    params = dict(window=8, n_neighbors=3, seed=0, verbose=False)
    result = fit_fleet("knn", {f"s{i}": s for i, s in enumerate(series)}, params=params, workers=2,
                       verbose=False)
    assert list(result.models) == [f"s{i}" for i in range(len(series))]
    _check_fleet(type(result)(list(result.models.values()), result.summary, result.info), series, params)


# ---------------------------------------------------------------------------------------------- ray
@pytest.mark.parametrize("name", ["flow", "knn"])
def test_ray_scores_bit_for_bit(ray_cluster, models, data, name):
    _, series = data
    result = score_many(models[name], series, engine="ray", workers=2, chunk_size=2, verbose=False)
    _check_scores(result, models[name], series)
    assert result.info["engine"] == "ray" and result.info["start_seconds"] == 0.0  # the running cluster
    assert len(result.info["model_loads"]) == 2  # two actors, each with its own copy


def test_ray_refuses_more_workers_than_the_cluster_holds(ray_cluster, models, data):
    """Ray would wait forever for actors it cannot place: an error instead, before any actor starts."""
    with pytest.raises(ValueError, match="workers=3 x threads=1 need 3 CPUs; the Ray cluster has 2"):
        score_many(models["knn"], data[1], engine="ray", workers=3, verbose=False)
    assert ray_cluster.is_initialized()  # the caller's cluster is left running


def test_ray_fleet_and_a_failing_series(ray_cluster, data):
    _, series = data
    params = dict(window=8, n_neighbors=3, seed=0, verbose=False)
    bad = series[2].copy()
    bad[10, 1] = np.nan
    with pytest.warns(SeriesFailedWarning, match="1 of 4 series failed"):
        result = fit_fleet(KNNDetector(**params), [series[0], series[1], bad, series[3]], engine="ray",
                           workers=2, chunk_size=2, verbose=False)
    summary = result.summary
    assert list(summary["status"]) == ["ok", "ok", "failed", "ok"]
    assert "NaN" in summary.loc[2, "error"] and summary.loc[2, "id"] == 2
    assert result.models[2] is None
    keep = [0, 1, 3]
    _check_fleet(type(result)([result.models[i] for i in keep], summary.iloc[keep], result.info),
                 [series[i] for i in keep], params)


# ---------------------------------------------------------------------------------------------- dask
@pytest.mark.parametrize("name", ["flow", "knn"])
def test_dask_scores_bit_for_bit(dask_client, models, data, name):
    _, series = data
    result = score_many(models[name], series, engine="dask", chunk_size=2, verbose=False)
    _check_scores(result, models[name], series)
    assert result.info["engine"] == "dask" and result.info["workers"] == 2
    assert result.info["threads"] == 1  # each worker process: 2 cores / 2 task threads on this host


def test_dask_fleet_of_flows_equals_fitting_each_series_alone(dask_client, data):
    _, series = data
    result = fit_fleet(FlowDetector(**FLOW_FLEET), {f"s{i}": s for i, s in enumerate(series[:4])}, engine="dask",
                       chunk_size=1, verbose=False)
    assert list(result.models) == ["s0", "s1", "s2", "s3"]
    _check_fleet(type(result)(list(result.models.values()), result.summary, result.info), series[:4], FLOW_FLEET)


def test_dask_fleet_and_files_read_by_the_workers(dask_client, data, tmp_path):
    _, series = data
    paths = []
    for i, s in enumerate(series[:3]):
        frame = pd.DataFrame(s, columns=["a", "b", "c"])
        frame.insert(0, "t", np.arange(len(s)))
        path = tmp_path / f"unit-{i}.{'parquet' if i == 1 else 'csv'}"
        frame.to_parquet(path) if i == 1 else frame.to_csv(path, index=False)
        paths.append(str(path))
    params = dict(window=8, n_neighbors=3, seed=0, verbose=False)
    result = fit_fleet("knn", paths, params=params, engine="dask", time_column="t", out_dir=tmp_path / "models",
                       verbose=False)
    assert result.models == [str(tmp_path / "models" / f"unit-{i}.pt") for i in range(3)]
    import genad_fast

    loaded = [genad_fast.load(p) for p in result.models]
    assert [list(m.feature_names_in_) for m in loaded] == [["a", "b", "c"]] * 3
    # the CSV round trip (float32 -> text -> float64 frame) is what the workers fitted on; fit the same alone
    frames = [pd.read_parquet(p) if p.endswith("parquet") else pd.read_csv(p) for p in paths]
    for model, frame in zip(loaded, frames):
        alone = KNNDetector(**params).fit(frame[["a", "b", "c"]])
        assert np.array_equal(model.decision_scores_, alone.decision_scores_)

    scored = score_many(result.models[0], paths, engine="dask", time_column="t", out_dir=tmp_path / "scores",
                        return_scores=False, verbose=False)
    assert scored.scores == [None, None, None]
    for i, frame in enumerate(frames):
        out = pd.read_csv(tmp_path / "scores" / f"unit-{i}.csv", float_precision="round_trip")
        assert list(out.columns) == ["t", "score", "is_anomaly"]
        want = loaded[0].decision_function(frame[["a", "b", "c"]])
        assert np.array_equal(out["t"], frame["t"]) and np.array_equal(out["score"].to_numpy(), want)


def test_dask_refuses_more_workers_than_the_cluster_holds(dask_client, models, data):
    with pytest.raises(ValueError, match="workers=3, but the Dask cluster has 2 workers"):
        score_many(models["knn"], data[1], engine="dask", workers=3, verbose=False)


def test_dask_fail_fast_names_the_series(dask_client, models, data):
    _, series = data
    short = series[0][:5]  # shorter than the window
    with pytest.raises(SeriesFailedError, match=r"series 'pump-2' failed: ValueError: .*fewer than window=8"):
        score_many(models["knn"], {"pump-1": series[0], "pump-2": short, "pump-3": series[1]}, engine="dask",
                   chunk_size=1, fail_fast=True, verbose=False)


def test_dask_failures_collected_with_their_ids(dask_client, models, data, tmp_path):
    _, series = data
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b,c\n1,2\n3,4,5,6,7\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_many(models["knn"], {"x": series[0], "broken": str(broken), "y": series[1]},
                            engine="dask", chunk_size=3, verbose=False)
    assert any(issubclass(w.category, SeriesFailedWarning) for w in caught)
    summary = result.summary.set_index("id")
    assert summary.loc["broken", "status"] == "failed" and "broken.csv" in summary.loc["broken", "error"]
    assert summary.loc["x", "status"] == "ok" and summary.loc["y", "status"] == "ok"
    assert result.scores["broken"] is None
    assert np.array_equal(result.scores["y"], models["knn"].decision_function(series[1]))
