"""The benchmark harness (bench/) on a tiny synthetic case: statistics, files, comparison, reporting."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # bench/ is a top-level package of the source tree, not installed
    sys.path.insert(0, str(ROOT))

from bench import registry  # noqa: E402
from bench.compare import compare  # noqa: E402
from bench.registry import Case, Provider, Size, Unavailable  # noqa: E402
from bench.report import FIELDS, Result, add_speedups, read_csv, write_csv  # noqa: E402
from bench.run import main  # noqa: E402
from bench.timing import TimingConfig, summarize, time_cpu  # noqa: E402

CASE = "synthetic_harness"
N = 1000


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def _build(fn):
    return lambda inputs: (lambda: fn(**inputs))


def _unavailable(inputs):
    raise Unavailable("synthetic reason: no such hardware")


def _broken(inputs):
    def call():
        raise RuntimeError("kernel exploded")
    return call


@pytest.fixture
def synthetic():
    """Registers a case whose providers cover every outcome: ok, wrong output, unavailable, error."""
    registry.all_cases()  # import the built-in cases first, so they do not register later
    case = Case(
        CASE, "forward", [Size("1000", {"n": N}), Size("2000", {"n": 2 * N})],
        setup=lambda size, device: {"x": torch.arange(size["n"], dtype=torch.float32, device=device)},
        providers={
            "eager": Provider("eager", "any", _build(_double)),
            "compile": Provider("compile", "cpu", _broken),
            "cpu": Provider("cpu", "cpu", _build(lambda x: x + x)),
            "cuda": Provider("cuda", "cuda", _build(_double)),
            "triton": Provider("triton", "cpu", _unavailable),
        },
        items=lambda s: s["n"], bytes_moved=lambda s: 8.0 * s["n"],
        check=registry.allclose_check(rtol=0, atol=0))
    wrong = Case(
        CASE, "wrong", [Size("1000", {"n": N})],
        setup=lambda size, device: {"x": torch.ones(size["n"], device=device)},
        providers={"eager": Provider("eager", "any", _build(_double)),
                   "cpu": Provider("cpu", "cpu", _build(lambda x: x * 3))},
        items=lambda s: s["n"], check=registry.allclose_check(rtol=1e-6, atol=0))
    registry.register(case)
    registry.register(wrong)
    yield case
    registry.unregister(case.key)
    registry.unregister(wrong.key)


FAST = ["--budget", "0.005", "--min-repeats", "3", "--max-repeats", "20", "--copy-mib", "4"]


def test_summarize_median_and_percentiles():
    s = summarize([10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0])
    # linear interpolation over the sorted samples 1..10: position 0.2*9 = 1.8 -> 2.8, 0.8*9 = 7.2 -> 8.2
    assert s.median_ms == pytest.approx(5.5)
    assert s.p20_ms == pytest.approx(2.8)
    assert s.p80_ms == pytest.approx(8.2)
    assert (s.mean_ms, s.min_ms, s.repeats) == (pytest.approx(5.5), 1.0, 10)
    assert summarize([3.0]).median_ms == 3.0
    with pytest.raises(ValueError):
        summarize([])


def test_time_cpu_budget_and_counts():
    ticks = iter(np.arange(0, 10**12, 10**7, dtype=np.int64))  # each call appears to take 10 ms
    clock = lambda: int(next(ticks))  # noqa: E731
    samples = time_cpu(lambda: None, TimingConfig(budget_s=0.05, min_repeats=2, max_repeats=100), clock)
    assert samples == [10.0] * 5                       # stops once 50 ms were spent
    samples = time_cpu(lambda: None, TimingConfig(budget_s=0.0, min_repeats=4, max_repeats=100), clock)
    assert len(samples) == 4                           # at least min_repeats
    samples = time_cpu(lambda: None, TimingConfig(budget_s=10.0, min_repeats=1, max_repeats=7), clock)
    assert len(samples) == 7                           # at most max_repeats


def test_speedups_come_from_the_same_group():
    rows = [Result("c", "m", "s", "cpu", "eager", "ok", median_ms=4.0),
            Result("c", "m", "s", "cpu", "compile", "ok", median_ms=2.0),
            Result("c", "m", "s", "cpu", "cpu", "ok", median_ms=1.0),
            Result("c", "m", "t", "cpu", "cpu", "ok", median_ms=1.0),     # no eager at size t
            Result("c", "m", "s", "cuda", "cuda", "unavailable", note="why")]
    add_speedups(rows)
    assert (rows[2].speedup_vs_eager, rows[2].speedup_vs_compile) == (4.0, 2.0)
    assert (rows[1].speedup_vs_eager, rows[1].speedup_vs_compile) == (2.0, 1.0)
    assert rows[3].speedup_vs_eager is None and rows[4].speedup_vs_eager is None


def test_run_writes_csv_json_png_and_reports_every_provider(synthetic, tmp_path, capsys):
    code = main(["--cases", f"{CASE}:forward", "--sizes", "1000", "--out", str(tmp_path), "--name", "run"] + FAST)
    out = capsys.readouterr().out
    assert code == 1                                   # the compile provider raised: an error fails the run
    assert "copy bandwidth cpu" in out and "kernel exploded" in out

    rows, meta = read_csv(tmp_path / "run.csv")
    by = {(r.device, r.provider): r for r in rows}
    assert {r.size for r in rows} == {"1000"}         # --sizes filtered out "2000"
    eager, fused = by["cpu", "eager"], by["cpu", "cpu"]
    assert eager.status == fused.status == "ok"
    for r in (eager, fused):
        assert 0 < r.p20_ms <= r.median_ms <= r.p80_ms and r.repeats >= 3
        assert r.throughput == pytest.approx(N / (r.median_ms * 1e-3))
        assert r.throughput_unit == "elem/s"
        assert r.gb_per_s == pytest.approx(8.0 * N / (r.median_ms * 1e-3) / 1e9)
    bw = float(meta["copy_bandwidth.cpu.gb_per_s"])
    assert bw > 0 and fused.bw_fraction == pytest.approx(fused.gb_per_s / bw)
    assert fused.speedup_vs_eager == pytest.approx(eager.median_ms / fused.median_ms)
    assert fused.speedup_vs_compile is None            # compile failed: no baseline
    assert by["cpu", "compile"].status == "error" and "kernel exploded" in by["cpu", "compile"].note
    assert by["cpu", "triton"].status == "unavailable"
    assert by["cpu", "triton"].note == "synthetic reason: no such hardware"
    if not torch.cuda.is_available():
        assert by["cuda", "cuda"].status == "unavailable" and "no CUDA device" in by["cuda", "cuda"].note
    for key in ("date", "git.revision", "machine.cpu_model", "machine.torch_threads", "versions.python",
                "versions.torch", "versions.triton", "versions.genad_fast", "versions.genad_fast_build.loaded"):
        assert key in meta, key

    with open(tmp_path / "run.csv") as f:
        header = next(line for line in f if not line.startswith("#"))
    assert next(csv.reader([header])) == FIELDS
    for name in ("case", "size", "provider", "mode", "median_ms", "p20_ms", "p80_ms", "throughput",
                 "speedup_vs_eager", "speedup_vs_compile", "bw_fraction"):
        assert name in FIELDS

    doc = json.loads((tmp_path / "run.json").read_text())
    assert {"machine", "versions", "git", "date", "copy_bandwidth"} <= doc["meta"].keys()
    assert doc["meta"]["machine"]["torch_threads"] == torch.get_num_threads()
    assert [r["provider"] for r in doc["rows"]] == [r.provider for r in rows]
    assert (tmp_path / "run.png").stat().st_size > 1000


def test_wrong_output_is_flagged(synthetic, tmp_path, capsys):
    code = main(["--cases", f"{CASE}:wrong", "--out", str(tmp_path), "--name", "w", "--no-plot"] + FAST)
    assert code == 1
    rows, _ = read_csv(tmp_path / "w.csv")
    fused = next(r for r in rows if r.provider == "cpu")
    assert fused.status == "mismatch" and "differs from eager" in fused.note
    assert fused.median_ms is not None                 # still timed, but marked


def test_compare_flags_a_regression_and_passes_an_equal_run(tmp_path, capsys):
    old = [Result("c", "forward", "1000", "cpu", p, "ok", median_ms=ms)
           for p, ms in (("eager", 10.0), ("cpu", 1.0))]
    old.append(Result("c", "forward", "1000", "cuda", "cuda", "unavailable", note="no GPU"))
    write_csv(tmp_path / "old.csv", old, {"git": {"revision": "abc"}})

    assert main(["--compare", str(tmp_path / "old.csv"), "--against", str(tmp_path / "old.csv")]) == 0
    assert "0 regressions" in capsys.readouterr().out

    within = [Result(**{**r.__dict__, "median_ms": r.median_ms * 1.05 if r.median_ms else None}) for r in old]
    write_csv(tmp_path / "within.csv", within, {})
    assert main(["--compare", str(tmp_path / "old.csv"), "--against", str(tmp_path / "within.csv")]) == 0

    slower = [Result(**r.__dict__) for r in old]
    slower[1].median_ms = 1.5
    write_csv(tmp_path / "new.csv", slower, {})
    assert main(["--compare", str(tmp_path / "old.csv"), "--against", str(tmp_path / "new.csv")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "c:forward 1000 cpu/cpu" in out and "+50%" in out
    assert "eager" not in out.split("REGRESSION", 1)[1]  # only the slower row is flagged

    result = compare(old, slower, threshold=0.6)
    assert not result.failed                           # 50% slower is within a 60% threshold


def test_compare_reports_a_row_that_stopped_running():
    old = [Result("c", "m", "s", "cpu", "cpu", "ok", median_ms=1.0)]
    new = [Result("c", "m", "s", "cpu", "cpu", "error", note="boom")]
    result = compare(old, new)
    assert result.failed and result.lost == [("c", "m", "s", "cpu", "cpu")]
    assert not compare(old, []).failed                 # a filtered run that did not measure it


def test_filters_and_list(synthetic, capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "coupling:forward" in listed and "randn:forward" in listed and f"{CASE}:forward" in listed
    assert main(["--cases", "no_such_case"]) == 2
    sel = registry.select(registry.all_cases(), [f"{CASE}*"])
    assert {c.key for c in sel} == {f"{CASE}:forward", f"{CASE}:wrong"}
    assert registry.select(registry.all_cases(), ["coupling"]) == [
        c for c in registry.all_cases() if c.name == "coupling"]


def test_setup_that_cannot_run_here_is_reported(tmp_path, capsys):
    def setup(size, device):
        raise Unavailable("needs a dataset that is not here")

    case = registry.register(Case(
        CASE, "nosetup", [Size("1", {"n": 1})], setup,
        {"eager": Provider("eager", "any", _build(_double)), "cpu": Provider("cpu", "cpu", _build(_double))},
        items=lambda s: 1))
    try:
        code = main(["--cases", case.key, "--out", str(tmp_path), "--name", "u", "--no-plot"] + FAST)
    finally:
        registry.unregister(case.key)
    assert code == 0                                   # unavailable is reported, not a failure
    rows, _ = read_csv(tmp_path / "u.csv")
    assert [(r.provider, r.status, r.note) for r in rows] == [
        ("eager", "unavailable", "needs a dataset that is not here"),
        ("cpu", "unavailable", "needs a dataset that is not here")]


def test_cpu_meter_sees_another_process_and_not_its_own_work(monkeypatch):
    import os
    import subprocess

    from bench.machine import CpuMeter

    meter = CpuMeter()
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.time()\nwhile time.time() - t < 0.5: pass"])
    child.wait()
    share = meter.others_share()
    assert share is not None and share >= 0.6 / os.cpu_count()   # one busy cpu for most of the span

    # the arithmetic: (all busy time - own cpu time) / (wall * cpus), own threads excluded
    readings = iter([(0.0, 100.0, 5.0), (2.0, 103.0, 6.5)])     # wall, busy of all cpus, own cpu time
    monkeypatch.setattr(CpuMeter, "_read", staticmethod(lambda: next(readings)))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert CpuMeter().others_share() == pytest.approx((3.0 - 1.5) / (2.0 * 2))


def test_every_case_has_a_smoke_size_no_larger_than_its_timed_sizes():
    """CI runs every provider at its case's smoke size (GENAD_BENCH_SMOKE=1): it must really be small."""
    for case in registry.all_cases():
        size = case.smoke_size
        assert set(size.params) == set(case.sizes[0].params), f"{case.key}: smoke size has other parameters"
        assert case.items(size) <= case.items(case.sizes[0]), f"{case.key}: smoke size {size.label} is larger"
