"""The evaluation harness and `genad-fast eval`, on tiny detectors and data sets (seconds)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from genad_fast import evaluation as ev
from genad_fast.cli import main
from genad_fast.datasets import make_series, make_tabular
from genad_fast.detectors import BaseDetector, register_detector, unregister_detector

pytestmark = pytest.mark.usefixtures("one_thread")


def _series_task(name="tiny-series"):
    return ev.Task(name, "series", lambda s: make_series(T=1200, C=3, period=32, seed=s))


def _tabular_task(name="tiny-tab"):
    return ev.Task(name, "tabular", lambda s: make_tabular(n_train=300, n_test=200, n_features=4, seed=s))


class _Broken(BaseDetector):
    def _fit_model(self, data):
        raise RuntimeError("diverged on purpose")

    def _score_model(self, batch):  # pragma: no cover - never reached
        return batch.sum(1)


@pytest.fixture
def broken():
    register_detector("toy-broken", _Broken)
    yield
    unregister_detector("toy-broken")


def test_resolve_detector_aliases_and_unknown():
    ae = ev.resolve_detector("ae")
    assert ae.registry_name == "autoencoder" and ae.cls.__name__ == "AutoEncoderDetector"
    soft = ev.resolve_detector("deepsvdd-soft")
    assert soft.registry_name == "deep_svdd" and soft.params == {"objective": "soft-boundary"}
    missing = ev.resolve_detector("no-such-detector")
    assert missing.cls is None and missing.reason.startswith("unavailable: unknown detector")


def test_resolve_datasets(monkeypatch):
    tasks = ev.resolve_datasets(["digits", "wine", "bogus"])
    assert [t.name for t in tasks[:10]] == [f"digits-{c}" for c in range(10)]
    assert all(t.kind == "tabular" and t.group == "digits" and t.detector_params == {"normalize": False}
               for t in tasks[:10])
    assert tasks[10].name == "wine" and tasks[11].reason.startswith("unavailable: unknown data set")
    assert ev.resolve_datasets(["digits-4"])[0].group is None
    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    kdd = ev.resolve_datasets(["kdd135"])[0]
    assert kdd.load is None and "pip install 'aeon>=1.0'" in kdd.reason and "-e '.[data]'" in kdd.reason


def test_estimate_period():
    t = np.arange(3000)
    x = np.stack([np.sin(2 * np.pi * t / 50), np.cos(2 * np.pi * t / 50 + 1)], 1)
    x += 0.1 * np.random.default_rng(0).normal(size=x.shape)
    assert abs(ev.estimate_period(x) - 50) <= 1
    assert ev.estimate_period(np.random.default_rng(1).normal(size=(3000, 2)), fallback=77) == 77
    assert ev.estimate_period(np.ones((100, 1)), fallback=9) == 9


def test_run_summarize_and_reports(tmp_path, registered_gauss, broken):
    detectors = ["pca", "iforest", "toy-gauss", "toy-broken", "no-such-detector"]
    tasks = [_series_task(), _tabular_task(), ev.Task("missing", "series", None, reason="unavailable: test")]
    records = ev.run_evaluation(detectors, tasks, [0, 1], plot_dir=str(tmp_path / "plots"), log=None)
    # every (task, detector, seed) is there, plus one row for the unavailable data set
    assert len(records) == 2 * 2 * len(detectors) + 1
    by = {(r["dataset"], r["detector"], r["seed"]): r for r in records}
    ok = by[("tiny-series", "pca", 0)]
    assert ok["status"] == "ok" and ok["window"] >= 8 and ok["fit_s"] >= 0 and ok["throughput"] > 0
    assert {"auroc", "auprc", "vus_roc", "vus_pr", "f1_best", "f1_pa_best", "f1", "range_f1"} <= set(ok["metrics"])
    assert 0.0 <= ok["metrics"]["auroc"] <= 1.0
    tab = by[("tiny-tab", "iforest", 1)]
    assert tab["window"] is None and "vus_pr" not in tab["metrics"] and "f1" in tab["metrics"]
    assert by[("tiny-tab", "toy-broken", 0)]["status"] == "failed"
    assert "diverged on purpose" in by[("tiny-tab", "toy-broken", 0)]["reason"]
    assert by[("tiny-series", "no-such-detector", 1)]["status"] == "unavailable"
    assert by[("missing", "*", None)]["reason"] == "unavailable: test"
    # the synthetic data changes with the seed, so do the scores; the seed reached the detector
    assert ok["params"]["seed"] == 0 and by[("tiny-series", "pca", 1)]["params"]["seed"] == 1

    rows = ev.summarize(records)
    row = next(r for r in rows if r["dataset"] == "tiny-series" and r["detector"] == "toy-gauss")
    vals = [by[("tiny-series", "toy-gauss", s)]["metrics"]["vus_pr"] for s in (0, 1)]
    assert row["vus_pr_mean"] == pytest.approx(np.mean(vals))
    assert row["vus_pr_std"] == pytest.approx(np.std(vals, ddof=1))
    assert row["seeds_ok"] == 2 and row["status"] == "ok"
    failed = next(r for r in rows if r["detector"] == "toy-broken")
    assert failed["status"] == "failed" and "auroc_mean" not in failed
    assert any(r["dataset"] == "missing" and r["status"] == "unavailable" for r in rows)

    plots = [r["plot"] for r in records if r.get("plot")]
    assert len(plots) == 3  # one per series (task, detector) that ran: pca, iforest, toy-gauss
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in plots)

    machine = ev.machine_info()
    paths = ev.write_reports(str(tmp_path), records, rows, machine, dict(seeds=[0, 1], quick=False))
    md = open(paths["md"]).read()
    assert "unavailable: unknown detector 'no-such-detector'" in md and "± " in md and "diverged on purpose" in md
    # the CPU the figures come from: its model name, ISA flags and the fused kernels' capability
    from genad_fast import provenance
    assert f"Machine: {provenance.cpu_model()}" in md and machine["cpu_flags"] == provenance.cpu_flags()
    assert all(f in md for f in machine["cpu_flags"]) and f"fused kernels {machine['cpu_capability']}" in md
    csv = pd.read_csv(paths["csv"])
    assert {"dataset", "detector", "auroc_mean", "auroc_std", "fit_s_mean", "throughput_mean", "status"} <= set(csv)
    blob = json.load(open(paths["json"]))
    assert blob["machine"]["torch"] and len(blob["runs"]) == len(records) and blob["summary"]


def test_group_rows_average_tasks_per_seed():
    recs = []
    for task, base in (("d-0", 0.6), ("d-1", 0.8)):
        for seed, add in ((0, 0.0), (1, 0.1)):
            recs.append(dict(dataset=task, detector="x", seed=seed, status="ok", group="d", kind="tabular",
                             n_test=10, metrics={"auroc": base + add}, fit_s=1.0, score_s=0.5, throughput=20.0))
    rows = ev.summarize(recs)
    group = next(r for r in rows if r["dataset"] == "d (mean of 2)")
    assert group["auroc_mean"] == pytest.approx(0.75) and group["auroc_std"] == pytest.approx(np.std([0.7, 0.8],
                                                                                                       ddof=1))
    assert group["fit_s_mean"] == pytest.approx(2.0)


def test_goal_check_says_where_generative_loses():
    rows = [dict(dataset="a", detector="flow", auroc_mean=0.9, vus_pr_mean=0.3),
            dict(dataset="a", detector="pca", auroc_mean=0.8, vus_pr_mean=0.5)]
    lines = ev.goal_check(rows)
    assert any("auroc" in l and l.endswith("yes") for l in lines)
    assert any("vus_pr" in l and l.endswith("**no**") for l in lines)


def test_cli_eval_end_to_end(tmp_path, capsys, registered_gauss):
    rng = np.random.default_rng(0)
    t = np.arange(800)
    frame = pd.DataFrame({"a": np.sin(2 * np.pi * t / 40) + 0.1 * rng.normal(size=800),
                          "b": np.cos(2 * np.pi * t / 40) + 0.1 * rng.normal(size=800), "y": 0})
    frame.loc[600:610, "a"] += 3.0
    frame.loc[600:610, "y"] = 1
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "res"
    code = main(["eval", "--detectors", "pca,toy-gauss", "--datasets", f"wine,file:{path}", "--seeds", "2",
                 "--threads", "1", "--quick", "--label-column", "y", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| wine | pca |" in captured.out and "| mine.csv | toy-gauss |" in captured.out
    assert (out / "results.md").is_file() and (out / "results.csv").is_file() and (out / "results.json").is_file()
    assert (out / "plots" / "mine.csv__pca.png").is_file()
    blob = json.load(open(out / "results.json"))
    assert blob["machine"]["torch_threads"] == 1
    runs = blob["runs"]
    mine = [r for r in runs if r["dataset"] == "mine.csv" and r["detector"] == "pca"]
    assert len(mine) == 2 and mine[0]["status"] == "ok" and mine[0]["metrics"]["auroc"] > 0.9


def test_cli_eval_bad_arguments(tmp_path, capsys):
    assert main(["eval", "--detectors", "pca", "--param", "pca.bogus=1", "--out", str(tmp_path)]) == 1
    assert "unknown parameter 'bogus' for detector 'pca'" in capsys.readouterr().err
    assert main(["eval", "--detectors", "pca", "--param", "flow.epochs=1", "--out", str(tmp_path)]) == 1
    assert "not in --detectors" in capsys.readouterr().err
    assert main(["eval", "--detectors", "pca", "--param", "epochs", "--out", str(tmp_path)]) == 1
    assert "expected DETECTOR.KEY=VALUE" in capsys.readouterr().err


def test_series_only_detector_is_not_applicable_to_tabular_data():
    records = ev.run_evaluation(["diffusion"], [_tabular_task()], [0], log=None)
    assert records[0]["status"] == "n/a" and "models series only" in records[0]["reason"]
    row = ev.summarize(records)[0]
    assert row["status"] == "n/a" and "auroc_mean" not in row
