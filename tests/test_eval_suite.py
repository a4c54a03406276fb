"""`genad-fast eval --suite`: the GutenTAG suite, TSB-AD files, TSB-AD's VUS and period, ranks, and the small
suite end to end on two cheap detectors (seconds)."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from tsb_ad_reference import find_length_rank, range_auc_volume_opt

from genad_fast import metrics as M
from genad_fast.cli import main
from genad_fast.evaluation import gutentag_suite as gt
from genad_fast.evaluation.ranking import family_summary, mean_ranks, summary_lines
from genad_fast.evaluation.suites import resolve_suite
from genad_fast.evaluation.tsb_files import load_tsb_file, parse_tsb_name, tsb_paths, tsb_tasks

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- GutenTAG
def test_gutentag_generation_is_deterministic_and_cached(tmp_path):
    cfg = gt.suite_configs(gt.SMALL_LENGTH, ("sine-pattern",))[0]
    a, b, c = gt.generate(cfg, 3), gt.generate(cfg, 3), gt.generate(cfg, 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])  # another seed draws other noise
    train, test, labels = a
    assert train.shape == test.shape == (gt.SMALL_LENGTH, 1) and labels.shape == (gt.SMALL_LENGTH,)
    assert labels.sum() == 180 and set(np.unique(labels)) == {0, 1}  # two events, 60 and 120 points
    first = gt.load(cfg, 3, str(tmp_path / "one"))
    path = gt.cache_path(cfg, 3, str(tmp_path / "one"))
    assert path.endswith(".npz") and gt.SUITE_VERSION in path
    again = gt.load(cfg, 3, str(tmp_path / "one"))  # from the cache file
    other = gt.load(cfg, 3, str(tmp_path / "two"))  # generated afresh elsewhere
    for d in (again, other):
        np.testing.assert_array_equal(d.test, first.test)
        np.testing.assert_array_equal(d.labels, first.labels)
    np.testing.assert_allclose(first.test[:, 0], a[1][:, 0].astype(np.float32))


def test_gutentag_suite_covers_every_oscillation_and_kind():
    from gutenTAG.utils.compatibility import Compatibility

    configs = gt.suite_configs()
    bos, kinds = gt.config_kinds(configs)
    assert (bos, kinds) == gt.installed_kinds()
    assert len(kinds) == 10 and len(bos) == 11
    names = [c["name"] for c in configs]
    assert len(set(names)) == len(names) == 30
    channels = [len(c["base-oscillations"]) for c in configs]
    assert channels.count(1) == 24 and min(channels[24:]) >= 2
    for c in configs:
        assert c["semi-supervised"] and 2000 <= c["length"] <= 5000
        for an in c["anomalies"]:
            bo = c["base-oscillations"][an["channel"]]["kind"]
            assert all(Compatibility.check(k["kind"], bo) for k in an["kinds"]), (c["name"], bo)
    # every kind on at least two series, so one odd generator cannot decide a kind's figure
    per_kind = {k: sum(any(x["kinds"][0]["kind"] == k for x in c["anomalies"]) for c in configs) for k in kinds}
    assert min(per_kind.values()) >= 2, per_kind


def test_gutentag_v1_is_frozen():
    """Changing a configuration of gutentag_v1 changes published figures: bump SUITE_VERSION (and this hash)."""
    blob = json.dumps(gt.suite_configs(), sort_keys=True).encode()
    assert gt.SUITE_VERSION == "gutentag_v1"
    assert hashlib.sha256(blob).hexdigest()[:16] == "15168db2041dcca8"


def test_unknown_gutentag_series_is_an_error():
    with pytest.raises(ValueError, match="unknown gutentag_v1 series"):
        gt.suite_configs(names=("sine-pattern", "nope"))


# ---------------------------------------------------------------------------------------------- TSB-AD files
def test_tsb_name_parsing():
    m = parse_tsb_name("/data/TSB-AD-U/001_NAB_id_1_Facility_tr_1007_1st_2014.csv")
    assert (m.index, m.name, m.id, m.domain, m.train, m.first) == (1, "NAB", 1, "Facility", 1007, 2014)
    m = parse_tsb_name("169_UCR_Anomaly_x_id_3_Medical_tr_500_1st_700.csv")  # a name with underscores
    assert m.name == "UCR_Anomaly_x" and m.id == 3 and m.train == 500
    for bad in ("001_NAB_Facility_tr_1007_1st_2014.csv", "001_NAB_id_1_Facility_tr_1007.csv",
                "001_NAB_id_1_Facility_tr_1007_1st_2014.txt", "NAB_id_1_Facility_tr_1007_1st_2014.csv",
                "001_NAB_id_1_Facility_tr_x_1st_2014.csv"):
        with pytest.raises(ValueError, match="is not a TSB-AD file name: expected <index>_<name>_id_"):
            parse_tsb_name(bad)
    with pytest.raises(ValueError, match="at least one row"):
        parse_tsb_name("001_NAB_id_1_Facility_tr_0_1st_20.csv")


def _tsb_file(directory, name, n=600, channels=2, train=200, events=((400, 420),), seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    data = {f"c{j}": np.sin(2 * np.pi * t / 25 + j) + 0.05 * rng.normal(size=n) for j in range(channels)}
    label = np.zeros(n, dtype=int)
    for a, b in events:
        data["c0"][a:b] += 2.0
        label[a:b] = 1
    path = directory / name
    pd.DataFrame({**data, "Label": label}).to_csv(path, index=False)
    return path


def test_tsb_file_protocol(tmp_path):
    path = _tsb_file(tmp_path, "007_TOY_id_2_Synthetic_tr_200_1st_400.csv")
    d = load_tsb_file(str(path))
    assert d.train.shape == (200, 2) and d.test.shape == (600, 2) and d.labels.shape == (600,)
    np.testing.assert_array_equal(d.train, d.test[:200])  # train = the first rows; the whole series is scored
    assert int(np.flatnonzero(d.labels)[0]) == 400 and d.params["domain"] == "Synthetic"
    df = pd.read_csv(path)
    df.drop(columns="Label").to_csv(tmp_path / "008_TOY_id_1_Synthetic_tr_200_1st_400.csv", index=False)
    with pytest.raises(ValueError, match="no 'Label' column"):
        load_tsb_file(str(tmp_path / "008_TOY_id_1_Synthetic_tr_200_1st_400.csv"))
    df[["Label", "c0", "c1"]].to_csv(tmp_path / "009_TOY_id_1_Synthetic_tr_200_1st_400.csv", index=False)
    with pytest.raises(ValueError, match="'Label' must be the last column"):
        load_tsb_file(str(tmp_path / "009_TOY_id_1_Synthetic_tr_200_1st_400.csv"))
    df.assign(Label=df["Label"] * 2).to_csv(tmp_path / "010_TOY_id_1_Synthetic_tr_200_1st_400.csv", index=False)
    with pytest.raises(ValueError, match="Label must be 0 or 1"):
        load_tsb_file(str(tmp_path / "010_TOY_id_1_Synthetic_tr_200_1st_400.csv"))
    df.to_csv(tmp_path / "011_TOY_id_1_Synthetic_tr_600_1st_400.csv", index=False)
    with pytest.raises(ValueError, match="leaves nothing after the training part"):
        load_tsb_file(str(tmp_path / "011_TOY_id_1_Synthetic_tr_600_1st_400.csv"))


def test_tsb_paths_and_tasks(tmp_path):
    _tsb_file(tmp_path, "002_TOY_id_1_Synthetic_tr_200_1st_400.csv")
    _tsb_file(tmp_path, "001_TOY_id_2_Synthetic_tr_250_1st_400.csv", channels=1)
    tasks = tsb_tasks(str(tmp_path))
    assert [t.name for t in tasks] == ["001_TOY_id_2_Synthetic_tr_250_1st_400", "002_TOY_id_1_Synthetic_tr_200_1st_400"]
    assert tasks[0].load(0).train.shape == (250, 1)
    assert len(tsb_paths(str(tmp_path / "002_*.csv"))) == 1
    (tmp_path / "notes.csv").write_text("a,Label\n1,0\n")
    with pytest.raises(ValueError, match="'notes.csv' is not a TSB-AD file name"):
        tsb_paths(str(tmp_path))
    with pytest.raises(ValueError, match="no files found"):
        tsb_paths(str(tmp_path / "nothing-*.csv"))


# ---------------------------------------------------------------------------------------------- metrics
def _case(rng, n):
    y = np.zeros(n, dtype=int)
    for _ in range(int(rng.integers(1, 4))):
        a = int(rng.integers(0, n - 10))
        y[a:a + int(rng.integers(1, 10))] = 1
    s = rng.normal(size=n) + 1.5 * y * rng.random(n)
    return y, np.round(s, 1) if rng.random() < 0.5 else s  # ties too


@pytest.mark.parametrize("seed", range(5))
def test_vus_matches_tsb_ad_reference(seed):
    """metrics.vus against TSB-AD's RangeAUC_volume_opt as ported (tests/tsb_ad_reference.py): get_metrics'
    buffers 0..slidingWindow (max_buffer, odd and even) and the first release's 0..2 slidingWindow."""
    rng = np.random.default_rng(seed)
    y, s = _case(rng, 300)
    for L in (0, 1, 4, 7):
        roc, pr = range_auc_volume_opt(y, s, L)
        got = M.vus(y, s, max_buffer=L)
        assert got["vus_roc"] == pytest.approx(roc, abs=1e-9) and got["vus_pr"] == pytest.approx(pr, abs=1e-9)
    roc, pr = range_auc_volume_opt(y, s, 2 * 3)
    got = M.vus(y, s, 3)
    assert got["vus_roc"] == pytest.approx(roc, abs=1e-9) and got["vus_pr"] == pytest.approx(pr, abs=1e-9)
    ev = M.evaluate(y, s, max_buffer=5)
    assert ev["vus_pr"] == pytest.approx(range_auc_volume_opt(y, s, 5)[1], abs=1e-9)
    with pytest.raises(ValueError, match="not both"):
        M.vus(y, s, 3, max_buffer=6)
    with pytest.raises(ValueError, match="max_buffer must be an int >= 0"):
        M.vus(y, s, max_buffer=-1)


def test_dominant_period_matches_tsb_ad_find_length_rank():
    from genad_fast.periodicity import dominant_period

    rng = np.random.default_rng(0)
    t = np.arange(3000)
    cases = [np.sin(2 * np.pi * t / p) + 0.1 * rng.normal(size=t.size) for p in (17, 50, 128)]
    cases += [rng.normal(size=2000).cumsum(), rng.normal(size=500)]
    cases += [gt.generate(c, 0)[1][:, 0] for c in gt.suite_configs(1500, ("ecg-pattern", "square-mean"))]
    for x in cases:
        assert dominant_period(x) == find_length_rank(x)


# ---------------------------------------------------------------------------------------------- ranks
def _row(task, det, vus=None, auroc=0.5):
    r = dict(dataset=task, detector=det, auroc_mean=auroc, auroc_std=0.0, seeds_ok=1, seeds=1, status="ok")
    if vus is not None:
        r.update(vus_pr_mean=vus, vus_pr_std=0.0)
    return r


def test_mean_rank_on_a_hand_built_table():
    rows = [_row("a", "flow", 0.9, 0.7), _row("a", "pca", 0.5, 0.9), _row("a", "knn", 0.5, 0.8),
            _row("b", "flow", 0.1, 0.6), _row("b", "pca", 0.3, 0.6), _row("b", "knn", 0.2, 0.9),
            _row("t", "flow", None, 0.95), _row("t", "pca", None, 0.9),  # tabular: ranked by AUROC
            _row("g (mean of 2)", "flow", 0.0, 0.0), _row("g (mean of 2)", "pca", 1.0, 1.0)]  # summary: skipped
    primary = mean_ranks(rows)
    # a: flow 1, pca/knn tied 2.5; b: pca 1, knn 2, flow 3; t: flow 1, pca 2
    assert primary == {"flow": pytest.approx((5 / 3, 3)), "pca": pytest.approx(((2.5 + 1 + 2) / 3, 3)),
                       "knn": pytest.approx(((2.5 + 2) / 2, 2))}
    assert list(primary) == ["flow", "pca", "knn"]
    roc = mean_ranks(rows, "auroc")  # b: pca and flow tied at 0.6 -> 2.5 each
    assert roc["flow"] == pytest.approx(((3 + 2.5 + 1) / 3, 3)) and roc["knn"] == pytest.approx((1.5, 2))
    s = family_summary(rows)
    assert s["vus_pr"]["best_generative"] == (0.5, "flow") and s["vus_pr"]["best_classic"] == (0.4, "pca")
    # knn has no result on t: its mean AUROC is over other tasks and does not compete
    assert s["auroc"]["best_classic"] == pytest.approx((0.8, "pca")) and s["auroc"]["partial"] == ["knn"]
    assert s["vus_pr"]["below_pca"] == [] and s["vus_pr"]["partial"] == []
    assert s["wins"] == ["a", "t"] and s["win_rate"] == pytest.approx(2 / 3)
    text = "\n".join(summary_lines(rows))
    assert "best generative flow 0.500 vs best classic pca 0.400: met (difference +0.1000)" in text
    assert "on 2 of 3 tasks (67 %; goal 80 %): **not met**" in text
    assert "not compared (no result on some of these tasks): knn" in text


# ---------------------------------------------------------------------------------------------- the CLI
def test_suite_small_end_to_end(tmp_path, capsys):
    out, report = tmp_path / "res", tmp_path / "benchmark.md"
    code = main(["eval", "--suite", "small", "--detectors", "pca,knn", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(out), "--report", str(report), "--threads", "1", "--quiet", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    blob = json.load(open(out / "results.json"))
    tasks = [t.name for t in resolve_suite("small").tasks]
    assert tasks == ["gt-sine-pattern", "gt-random-walk-mean", "gt-mv-periodic-mixed", "wine"]
    assert blob["config"]["seeds"] == [0] and blob["config"]["quick"] is True
    for task in tasks:
        for det in ("pca", "knn"):
            (run,) = [r for r in blob["runs"] if r["dataset"] == task and r["detector"] == det]
            assert run["status"] == "ok", run
            assert all(math.isfinite(v) for v in run["metrics"].values())
            if task != "wine":  # VUS buffers from the test series' period, as TSB-AD
                assert run["vus_max_buffer"] >= 1 and "vus_pr" in run["metrics"]
    md = report.read_text()
    for task in tasks:
        assert f"| {task} | pca |" in md and f"| {task} | knn |" in md
    assert "## Mean rank per detector" in md and "| pca | classic |" in md
    assert "VUS-PR | PA-F1 (optimistic) |" in md  # PA-F1 only beside VUS-PR
    assert "Machine: " in md and "fused kernels " in md  # the CPU (model, flags, capability) beside the figures
    # the runs file, written record by record, gives the same report without running anything again
    again = tmp_path / "again.md"
    assert main(["eval", "--from-runs", str(out / "runs.jsonl"), "--report", str(again)]) == 0
    assert again.read_text().split("## Best generative")[1] == md.split("## Best generative")[1]
    lines = (out / "runs.jsonl").read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:3]) + "\n")  # a run cut short after two records
    assert main(["eval", "--from-runs", str(tmp_path / "cut.jsonl"), "--report", str(again)]) == 0
    assert "| gt-sine-pattern | knn |" in again.read_text() and "| wine | pca |" not in again.read_text()
    assert main(["eval", "--from-runs", str(out / "runs.jsonl")]) == 1
    assert "--from-runs needs --report" in capsys.readouterr().err


def test_suite_tsb_files_end_to_end(tmp_path, capsys):
    _tsb_file(tmp_path, "001_TOY_id_1_Synthetic_tr_200_1st_400.csv")
    code = main(["eval", "--suite", f"tsb:{tmp_path}", "--detectors", "pca", "--out", str(tmp_path / "res"),
                 "--threads", "1", "--quiet", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    (run,) = json.load(open(tmp_path / "res" / "results.json"))["runs"]
    assert run["n_train"] == 200 and run["n_test"] == 600 and run["vus_max_buffer"] == 25
    assert run["metrics"]["auroc"] > 0.9


@pytest.mark.parametrize("argv, message", [
    (["--suite", "nope"], "--suite: unknown suite 'nope'; choose from small, full"),
    (["--suite", "small", "--datasets", "wine"], "--suite and --datasets are exclusive"),
    (["--suite", "tsb:{d}/none-*.csv"], "--suite: tsb:{d}/none-*.csv: no files found"),
    (["--suite", "tsb:"], "the directory or pattern is missing"),
    (["--suite", "small", "--quick", "--no-quick"], "--quick and --no-quick contradict each other"),
    (["--suite", "small", "--tasks", "wine,gt-nope"], "--tasks: gt-nope not in the suite 'small'; its tasks: "
                                                      "gt-sine-pattern, gt-random-walk-mean, gt-mv-periodic-mixed, wine"),
    (["--datasets", "wine", "--tasks", "wine"], "--tasks picks tasks of a --suite"),
], ids=["unknown", "with-datasets", "no-files", "empty-tsb", "quick-no-quick", "unknown-task", "tasks-no-suite"])
def test_suite_errors_before_any_run(tmp_path, capsys, argv, message):
    code = main(["eval", "--detectors", "pca", "--out", str(tmp_path / "res"), "--quiet",
                 *[a.format(d=tmp_path) for a in argv]])
    assert code == 1
    assert message.format(d=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_from_runs_leaves_out_a_seed_that_ran_in_part(tmp_path, capsys):
    from genad_fast import evaluation as ev

    def rec(task, seed, auroc, det="pca"):
        return dict(dataset=task, detector=det, seed=seed, kind="tabular", status="ok", group=None, n_test=10,
                    metrics={"auroc": auroc, "auprc": 0.5}, fit_s=1.0, score_s=0.1, throughput=100.0)

    config = dict(detectors=["pca", "knn"], datasets=["a", "b", "c"], seeds=[0, 1], quick=True, suite="toy",
                  suite_description="toy")
    lines = [dict(header=dict(machine=ev.machine_info(), config=config)),
             rec("a", 0, 0.6), rec("a", 0, 0.5, "knn"), rec("b", 0, 0.7), rec("b", 0, 0.8, "knn"),
             rec("c", 0, 0.9),  # c stopped part-way: pca ran, knn did not
             rec("a", 1, 0.9), rec("a", 1, 0.9, "knn")]  # seed 1 stopped after task a
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(x, default=str) for x in lines) + "\n")
    report = tmp_path / "r.md"
    assert main(["eval", "--from-runs", str(path), "--report", str(report)]) == 0, capsys.readouterr().err
    md = report.read_text()
    assert "CUT SHORT: seeds [0] of [0, 1] reported, seed [1] ran in part and is left out" in md
    assert "| a | pca | — | — | — | 0.600 |" in md  # seed 0's value alone, not the mean with seed 1's 0.9
    assert "left out, stopped part-way: c" in md and "| c | pca |" not in md
    assert "not reached" not in md  # every data set of the run has a record


def test_from_runs_names_the_data_sets_a_cut_run_never_reached(tmp_path, capsys):
    config = _toy_config(["pca"], [0], datasets=["a", "b", "c"])
    path = _runs_file(tmp_path / "runs.jsonl", config, [_tabular_rec("a", 0, 0.6, "pca")])
    report = tmp_path / "r.md"
    assert main(["eval", "--from-runs", path, "--report", str(report)]) == 0, capsys.readouterr().err
    assert "not reached: b, c" in report.read_text()


def test_a_report_of_data_sets_names_them_not_a_suite(tmp_path, capsys):
    """A run of --datasets (no suite): the title and the first line name the data sets, and a cut-short note
    still reaches the report (they read "suite `None`" and "Suite: None" before)."""
    from genad_fast import evaluation as ev

    rec = dict(dataset="wine", detector="pca", seed=0, kind="tabular", status="ok", group=None, n_test=10,
               metrics={"auroc": 0.9, "auprc": 0.5}, fit_s=1.0, score_s=0.1, throughput=100.0)
    config = dict(detectors=["pca"], datasets=["wine", "wdbc"], seeds=[0, 1], quick=False, suite=None,
                  suite_description=None)
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(x, default=str) for x in
                               [dict(header=dict(machine=ev.machine_info(), config=config)), rec]) + "\n")
    report = tmp_path / "r.md"
    assert main(["eval", "--from-runs", str(path), "--report", str(report)]) == 0, capsys.readouterr().err
    md = report.read_text()
    assert md.startswith("# genad-fast benchmark: data sets wine, wdbc\n")
    assert "Data sets: wine, wdbc; CUT SHORT: seeds [0] of [0, 1] reported; not reached: wdbc." in md
    assert "None" not in md.split("## ")[0]


def test_quick_reaches_the_members_of_an_ensemble():
    """--quick shortens the training of an ensemble's members as of the same detectors alone."""
    from genad_fast.evaluation.runner import _quick_members
    from genad_fast.evaluation.tasks import QUICK_PARAMS, DetectorSpec

    spec = DetectorSpec("toy-ensemble", "toy-ensemble", {}, None)  # members given: the class is not consulted
    got = _quick_members(spec, {"members": ("flow", "knn", "no-such-member")})
    assert got == {"flow": {"epochs": QUICK_PARAMS["epochs"]}}  # knn has no training length; unknown: skipped


def test_full_suite_holds_every_task_once_spread_over_generators():
    tasks = [t.name for t in resolve_suite("full").tasks]
    assert len(tasks) == len(set(tasks)) == 30 + 3 + 10
    gts = [t for t in tasks if t.startswith("gt-")]
    assert sorted(gts) == sorted(f"gt-{c['name']}" for c in gt.suite_configs())
    # the first eleven GutenTAG tasks are eleven different generators (a run cut short has seen many)
    firsts = {next(bo for bo in sorted(gt.OSCILLATIONS, key=len, reverse=True) if t[3:].startswith(bo))
              if not t.startswith("gt-mv-") else "mv" for t in gts[:11]}
    assert len(firsts) == 11


def _runs_file(path, config: dict, records: list, **machine) -> str:
    from genad_fast import evaluation as ev

    header = dict(machine=dict(ev.machine_info(), **machine), config=config)
    path.write_text("\n".join(json.dumps(x, default=str) for x in [dict(header=header), *records]) + "\n")
    return str(path)


def _tabular_rec(task, seed, auroc, det):
    return dict(dataset=task, detector=det, seed=seed, kind="tabular", status="ok", group=None, n_test=10,
                metrics={"auroc": auroc, "auprc": 0.5}, fit_s=1.0, score_s=0.1, throughput=100.0)


def _toy_config(detectors, seeds, **kw):
    return dict(dict(detectors=detectors, datasets=["a", "b"], seeds=seeds, quick=False, suite="toy",
                     suite_description="toy", params={}), **kw)


def test_from_runs_merges_parts_run_apart(tmp_path, capsys):
    """Detector groups run as two processes, and a seed run in a later session: one report over all of them,
    whose command names every part and whose description says the commits differ."""
    group_a = _runs_file(tmp_path / "a.jsonl", _toy_config(["pca"], [0]),
                         [_tabular_rec("a", 0, 0.6, "pca"), _tabular_rec("b", 0, 0.7, "pca")], command="run A")
    group_b = _runs_file(tmp_path / "b.jsonl", _toy_config(["knn"], [0]),
                         [_tabular_rec("a", 0, 0.5, "knn"), _tabular_rec("b", 0, 0.8, "knn")], command="run B")
    later = _runs_file(tmp_path / "c.jsonl", _toy_config(["pca", "knn"], [1]),
                       [_tabular_rec(t, 1, v, d) for t in "ab" for d, v in (("pca", 0.8), ("knn", 0.9))],
                       command="run C", git="0123456789abcdef")
    report = tmp_path / "r.md"
    assert main(["eval", "--from-runs", group_a, group_b, later, "--report", str(report)]) == 0, \
        capsys.readouterr().err
    md = report.read_text()
    assert "run A ; run B ; run C  (3 runs, merged with --from-runs)" in md
    assert "merged from runs made on different commits or machines" in md and "git 0123456789" in md
    assert "| a | pca | — | — | — | 0.700 ± 0.141 |" in md  # seeds 0 (0.6, file a) and 1 (0.8, file c)
    assert "| b | knn | — | — | — | 0.850 ± 0.071 |" in md
    assert "CUT SHORT" not in md


@pytest.mark.parametrize("second, message", [
    (dict(quick=True), "the runs files differ in training profile (quick)"),
    (dict(suite="other"), "the runs files differ in suite"),
    (dict(params={"pca": {"n_components": 3}}), "pca.n_components is 2 in"),
    (dict(), "a / pca / seed 0 is in both"),
], ids=["quick", "suite", "param", "duplicate"])
def test_from_runs_refuses_parts_that_do_not_fit_together(tmp_path, capsys, second, message):
    first = _runs_file(tmp_path / "a.jsonl", _toy_config(["pca"], [0], params={"pca": {"n_components": 2}}),
                       [_tabular_rec("a", 0, 0.6, "pca")])
    config = _toy_config(["pca"], [0], params={"pca": {"n_components": 2}})
    config.update(second)
    other = _runs_file(tmp_path / "b.jsonl", config, [_tabular_rec("a", 0, 0.7, "pca")])
    assert main(["eval", "--from-runs", first, other, "--report", str(tmp_path / "r.md")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_from_runs_merges_the_parts_of_full(tmp_path, capsys):
    """The full suite run as its halves (a gutentag series, kdd135 of the real suite) and a --datasets run of its
    tables, each a real evaluation of PCA and kNN: one report of suite `full` whose rows are each part's own, with
    "digits" (as the --datasets run named it) the suite's ten tasks, and no task reported as not reached."""
    def run(out, *what):
        argv = ["eval", *what, "--detectors", "pca,knn", "--seeds", "1", "--no-quick", "--cache-dir",
                str(tmp_path / "cache"), "--out", str(tmp_path / out), "--threads", "1", "--quiet", "--no-plots"]
        assert main(argv) == 0, capsys.readouterr().err
        rows = json.load(open(tmp_path / out / "results.json"))["summary"]
        return str(tmp_path / out / "runs.jsonl"), rows

    parts = [run("g", "--suite", "gutentag", "--tasks", "gt-sine-pattern"),
             run("r", "--suite", "real", "--tasks", "kdd135"),
             run("t", "--datasets", "wine,digits")]
    report = tmp_path / "full.md"
    assert main(["eval", "--from-runs", *(p for p, _ in parts), "--report", str(report)]) == 0, \
        capsys.readouterr().err
    md = report.read_text()
    assert "suite `full`" in md and "merged from its parts: gutentag, real, --datasets (tables)" in md
    assert "not reached" not in md and "CUT SHORT" not in md and "left out" not in md
    for _, rows in parts:
        for row in rows:
            if row["dataset"] in ("gt-sine-pattern", "kdd135", "wine", "digits-3"):
                auroc = row["auroc_mean"]
                assert f"| {row['dataset']} | {row['detector']} |" in md
                assert any(line.startswith(f"| {row['dataset']} | {row['detector']} |") and f"{auroc:.3f}" in line
                           for line in md.splitlines())


@pytest.mark.parametrize("suite, datasets", [
    (None, ["kdd135"]),      # a series run by --datasets measures VUS by another rule than the suites'
    (None, ["synthetic"]),   # not a task of the full suite
    ("small", ["wine"]),     # another suite
], ids=["datasets-series", "datasets-other", "other-suite"])
def test_from_runs_takes_only_the_parts_of_full(tmp_path, capsys, suite, datasets):
    gut = _runs_file(tmp_path / "g.jsonl", _toy_config(["pca"], [0], suite="gutentag", datasets=["gt-a"]),
                     [_tabular_rec("gt-a", 0, 0.6, "pca")])
    other = _runs_file(tmp_path / "o.jsonl", _toy_config(["pca"], [0], suite=suite, datasets=datasets),
                       [_tabular_rec(datasets[0], 0, 0.7, "pca")])
    assert main(["eval", "--from-runs", gut, other, "--report", str(tmp_path / "r.md")]) == 1
    assert "the runs files differ in suite" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_first_seed_runs_the_later_seeds(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["eval", "--datasets", "wine", "--detectors", "pca", "--seeds", "2", "--first-seed", "3",
                 "--out", str(out), "--threads", "1", "--quiet", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    blob = json.load(open(out / "results.json"))
    assert blob["config"]["seeds"] == [3, 4]
    assert sorted(r["seed"] for r in blob["runs"]) == [3, 4]


def test_parts_of_a_real_run_merge_into_its_report(tmp_path, capsys):
    """A run of PCA and kNN over two seeds, and the same work in three parts (a detector alone, the other detector's
    seed 0, its seed 1 through --first-seed): the merged report's tables are the whole run's."""
    def run(out, detectors, *seeds):
        argv = ["eval", "--datasets", "wine", "--detectors", detectors, *seeds, "--out", str(tmp_path / out),
                "--threads", "1", "--quiet", "--no-plots", "--report", str(tmp_path / f"{out}.md")]
        assert main(argv) == 0, capsys.readouterr().err
        return str(tmp_path / out / "runs.jsonl")

    whole = run("whole", "pca,knn", "--seeds", "2")
    parts = [run("a", "pca", "--seeds", "2"), run("b", "knn", "--seeds", "1"),
             run("c", "knn", "--first-seed", "1", "--seeds", "1")]
    merged = tmp_path / "merged.md"
    assert main(["eval", "--from-runs", *parts, "--report", str(merged)]) == 0, capsys.readouterr().err
    assert json.loads(open(whole).readline())["header"]["config"]["seeds"] == [0, 1]
    tables = merged.read_text().split("## Best generative")[1]
    assert "| wine | pca |" in tables and "| wine | knn |" in tables and "2/2" in tables
    # the same rows of the full table, their metrics to the last digit; the fit/score times, seeds and status
    # columns cut off (wall-clock times differ between runs)
    strip = (lambda md: [line.rsplit("|", 5)[0] for line in md.split("## Best generative")[1].splitlines()
                         if line.startswith(("| wine | pca |", "| wine | knn |"))])
    assert len(strip(merged.read_text())) == 2
    assert strip(merged.read_text()) == strip((tmp_path / "whole.md").read_text())


def test_tasks_run_part_of_a_suite_and_the_parts_merge(tmp_path, capsys):
    """--tasks runs only the named tasks of a suite (in the suite's order); two such parts merge into the report
    of the tasks together, and the merged report names no task as not reached."""
    def run(out, tasks):
        argv = ["eval", "--suite", "small", "--tasks", tasks, "--detectors", "pca", "--cache-dir",
                str(tmp_path / "cache"), "--out", str(tmp_path / out), "--threads", "1", "--quiet", "--no-plots"]
        assert main(argv) == 0, capsys.readouterr().err
        return tmp_path / out / "runs.jsonl"

    first, second = run("a", "wine,gt-sine-pattern"), run("b", "gt-random-walk-mean")
    blob = json.load(open(tmp_path / "a" / "results.json"))
    assert blob["config"]["datasets"] == ["gt-sine-pattern", "wine"]
    assert sorted(r["dataset"] for r in blob["runs"]) == ["gt-sine-pattern", "wine"]
    merged = tmp_path / "merged.md"
    assert main(["eval", "--from-runs", str(first), str(second), "--report", str(merged)]) == 0
    md = merged.read_text()
    for task in ("gt-sine-pattern", "gt-random-walk-mean", "wine"):
        assert f"| {task} | pca |" in md
    assert "not reached" not in md and "gt-mv-periodic-mixed" not in md
