"""The runner: ``python -m bench [options]`` (or ``genad-fast bench``), see :func:`main`."""
from __future__ import annotations

import argparse
import fnmatch
import gc
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from bench import registry
from bench.bandwidth import CopyBandwidth, copy_bandwidth
from bench.compare import compare
from bench.machine import REPO_ROOT, CpuMeter, git_info, load_average, machine_info, now_utc, versions
from bench.registry import Case, Provider, Size, Unavailable
from bench.report import (ERROR, MISMATCH, OK, UNAVAILABLE, Result, add_speedups, format_table,
                          plot_speedups, read_csv, write_csv, write_json)
from bench.timing import TimingConfig, first_call, measure

DEFAULT_OUT = REPO_ROOT / "bench" / "results"
FULL = TimingConfig(budget_s=1.0, min_repeats=5, max_repeats=1000, warmup=2, warmup_s=0.1)
OTHERS_LIMIT = 0.10   # share of the cpus used by other processes above which a row is flagged as disturbed
QUICK = TimingConfig(budget_s=0.05, min_repeats=3, max_repeats=50, warmup=1, warmup_s=0.0)


def _backend_unavailable_error() -> tuple[type[BaseException], ...]:
    try:
        from genad_fast import BackendUnavailableError
    except Exception:
        return ()
    return (BackendUnavailableError,)


def cuda_unavailable_reason(provider: str) -> str:
    """Why a GPU provider cannot run on this machine, in the words of genad_fast.backends()."""
    why = "no CUDA device is visible (torch.cuda.is_available() is False)"
    try:
        import genad_fast

        for info in genad_fast.backends():
            if info.name == provider and not info.available:
                return f"{why}; genad_fast: {info.reason}"
    except Exception:
        pass
    return why


def _log(msg: str) -> None:
    print(msg, flush=True)


class Runner:
    def __init__(self, cfg: TimingConfig, devices: list[str], providers: list[str] | None,
                 copy_bytes: int | None, log=_log):
        self.cfg = cfg
        self.devices = devices
        self.providers = providers
        self.copy_bytes = copy_bytes
        self.log = log
        self.bandwidth: dict[str, CopyBandwidth] = {}
        self.rows: list[Result] = []
        self.unavailable_errors = (Unavailable,) + _backend_unavailable_error()

    def want(self, provider: str) -> bool:
        return self.providers is None or any(fnmatch.fnmatchcase(provider, p) for p in self.providers)

    def measure_bandwidth(self, device: str) -> None:
        bw = copy_bandwidth(torch.device(device), self.copy_bytes)
        self.bandwidth[device] = bw
        self.log(f"copy bandwidth {device}: {bw.gb_per_s:.1f} GB/s "
                 f"(dst.copy_(src), {bw.buffer_bytes >> 20} MiB each, {bw.median_ms:.2f} ms)")

    def plan(self, case: Case, device: str) -> list[Provider]:
        return [p for name, p in sorted(case.providers.items(),
                                        key=lambda kv: registry.PROVIDER_ORDER.index(kv[0]))
                if self.want(name) and p.device in ("any", device)]

    def run_case(self, case: Case, sizes: list[Size]) -> None:
        for size in sizes:
            for device in self.devices:
                providers = self.plan(case, device)
                if not providers:
                    continue
                self.log(f"== {case.key} {size.label} on {device}")
                try:
                    inputs = case.setup(size, torch.device(device))
                except self.unavailable_errors as exc:
                    for p in providers:
                        self._add(case, size, device, p.name, UNAVAILABLE, note=str(exc))
                    continue
                except Exception as exc:
                    for p in providers:
                        self._add(case, size, device, p.name, ERROR, note=f"setup failed: {_err(exc)}")
                    continue
                ref = None
                for p in providers:
                    out = self.run_provider(case, size, device, p, inputs, ref)
                    if p.name == case.reference:
                        ref = out
                del inputs, ref
                gc.collect()
            self._report_cuda_unavailable(case, size)

    def _report_cuda_unavailable(self, case: Case, size: Size) -> None:
        """GPU providers on a run without a CUDA device: one row each saying why."""
        if "cuda" in self.devices:
            return
        for name, p in case.providers.items():
            if p.device == "cuda" and self.want(name):
                reason = (cuda_unavailable_reason(name) if not torch.cuda.is_available()
                          else "device cuda not selected (--devices)")
                self._add(case, size, "cuda", name, UNAVAILABLE, note=reason)

    def run_provider(self, case: Case, size: Size, device: str, p: Provider,
                     inputs: dict[str, Any], ref: Any) -> Any:
        dev = torch.device(device)
        try:
            call = p.build(inputs)
            out, first_s = first_call(call, dev)
        except self.unavailable_errors as exc:
            self._add(case, size, device, p.name, UNAVAILABLE, note=str(exc))
            return None
        except Exception as exc:
            self._add(case, size, device, p.name, ERROR, note=_err(exc))
            return None
        status, note = OK, ""
        if case.check is not None and (ref is not None or p.name == case.reference):
            # the reference is checked against itself: that runs the checks that need no reference (moments)
            problem = case.check(out if p.name == case.reference else ref, out)
            if problem:
                status, note = MISMATCH, problem
        elif case.check is not None:
            note = f"output not checked: the {case.reference} provider gave no reference"
        kept = out if p.name == case.reference else None
        del out
        meter = CpuMeter()
        try:
            stats = measure(call, self.cfg, dev)
        except Exception as exc:
            self._add(case, size, device, p.name, ERROR, note=f"failed while timing: {_err(exc)}")
            return kept
        row = Result(case.name, case.mode, size.label, device, p.name, status,
                     median_ms=stats.median_ms, p20_ms=stats.p20_ms, p80_ms=stats.p80_ms,
                     repeats=stats.repeats, first_call_s=first_s,
                     compile_s=first_s if p.name == registry.COMPILE else None,
                     others_cpu=meter.others_share(), note=note)
        seconds = stats.median_ms * 1e-3
        row.throughput = case.items(size) / seconds
        row.throughput_unit = f"{case.item_unit}/s"
        if case.bytes_moved is not None:
            row.gb_per_s = case.bytes_moved(size) / seconds / 1e9
            bw = self.bandwidth.get(device)
            row.bw_fraction = row.gb_per_s / bw.gb_per_s if bw else None
        self._append(row)
        return kept

    def _add(self, case: Case, size: Size, device: str, provider: str, status: str, note: str) -> None:
        self._append(Result(case.name, case.mode, size.label, device, provider, status, note=note))

    def _append(self, row: Result) -> None:
        self.rows.append(row)
        if row.median_ms is not None:
            extra = f" (compile {row.compile_s:.1f} s)" if row.compile_s is not None else ""
            msg = (f"{row.median_ms:9.4f} ms  [p20 {row.p20_ms:.4g}, p80 {row.p80_ms:.4g}, "
                   f"n={row.repeats}]{extra}")
            if row.status != OK:
                msg += f"  {row.status.upper()}: {row.note}"
        else:
            msg = f"{row.status}: {row.note}"
        self.log(f"   {row.device}/{row.provider:8s} {msg}")


def _err(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def select_sizes(case: Case, patterns: list[str] | None, quick: bool) -> list[Size]:
    if patterns:
        return [s for s in case.sizes if any(fnmatch.fnmatchcase(s.label, p) for p in patterns)]
    return case.sizes[:1] if quick else list(case.sizes)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time every registered case with eager PyTorch, torch.compile and the fused backends; "
                    "write CSV, JSON and a PNG of the speed-ups.")
    ap.add_argument("--cases", action="append", metavar="PATTERNS",
                    help="comma-separated shell patterns over case names or name:mode (e.g. 'coupling:*,randn')")
    ap.add_argument("--sizes", action="append", metavar="PATTERNS",
                    help="comma-separated patterns over size labels (e.g. '4096x64,2^20')")
    ap.add_argument("--providers", action="append", metavar="NAMES",
                    help="comma-separated providers: eager, compile, cpu, cuda, triton (default: all)")
    ap.add_argument("--devices", default=None,
                    help="comma-separated devices to run on (default: cpu, and cuda when one is visible)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the smallest size of each case (unless --sizes), short timing budget")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per measurement")
    ap.add_argument("--min-repeats", type=int, default=None)
    ap.add_argument("--max-repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before running")
    ap.add_argument("--copy-mib", type=int, default=None,
                    help="MiB of each copy-bandwidth buffer (default: >= 8x the last-level cache, >= 256)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--name", default=None, help="file name stem (default bench_<date>_<revision>)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--compare", type=Path, metavar="OLD.csv",
                    help="flag rows more than --threshold slower than in OLD.csv; exit 1 when any")
    ap.add_argument("--against", type=Path, metavar="NEW.csv",
                    help="with --compare: compare two result files without running anything")
    ap.add_argument("--threshold", type=float, default=0.10, help="regression threshold (default 0.10)")
    ap.add_argument("--list", action="store_true", help="list the registered cases and exit")
    return ap


def _list(cases: Iterable[Case]) -> str:
    lines = []
    for c in cases:
        sizes = ", ".join(s.label for s in c.sizes)
        lines.append(f"{c.key:24s} sizes: {sizes}; providers: {', '.join(c.providers)}"
                     + (f"  -- {c.description}" if c.description else ""))
    return "\n".join(lines)


def _compare_files(old_path: Path, new_rows: list[Result], threshold: float) -> int:
    old_rows, old_meta = read_csv(old_path)
    result = compare(old_rows, new_rows, threshold)
    _log(f"\ncomparison with {old_path} (revision {old_meta.get('git.revision', '?')}):")
    _log(result.report(threshold))
    return 1 if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.against is not None:
        if args.compare is None:
            print("--against needs --compare OLD.csv", file=sys.stderr)
            return 2
        new_rows, _ = read_csv(args.against)
        return _compare_files(args.compare, new_rows, args.threshold)

    cases = registry.all_cases()
    if args.list:
        _log(_list(cases))
        return 0
    case_patterns, size_patterns = _split(args.cases), _split(args.sizes)
    chosen = registry.select(cases, case_patterns)
    plan = [(c, select_sizes(c, size_patterns, args.quick)) for c in chosen]
    plan = [(c, s) for c, s in plan if s]
    if not plan:
        print(f"no case/size matches --cases {case_patterns} --sizes {size_patterns}; registered:\n"
              f"{_list(cases)}", file=sys.stderr)
        return 2

    if args.threads:
        torch.set_num_threads(args.threads)
    base = QUICK if args.quick else FULL
    cfg = TimingConfig(
        budget_s=args.budget if args.budget is not None else base.budget_s,
        min_repeats=args.min_repeats or base.min_repeats,
        max_repeats=args.max_repeats or base.max_repeats,
        warmup=base.warmup, warmup_s=base.warmup_s)
    devices = _split([args.devices]) if args.devices else (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    for d in devices:
        if d not in ("cpu", "cuda"):
            print(f"--devices: unknown device {d!r} (cpu or cuda)", file=sys.stderr)
            return 2
        if d == "cuda" and not torch.cuda.is_available():
            print("--devices cuda: no CUDA device is visible", file=sys.stderr)
            return 2
    copy_bytes = args.copy_mib << 20 if args.copy_mib else (128 << 20 if args.quick else None)

    started = now_utc()
    meta: dict[str, Any] = {"date": started, "git": git_info(), "machine": machine_info(),
                            "versions": versions(),
                            "timing": {"budget_s": cfg.budget_s, "min_repeats": cfg.min_repeats,
                                       "max_repeats": cfg.max_repeats, "quick": args.quick},
                            "command": " ".join(["python -m bench"] + (argv if argv is not None else sys.argv[1:]))}
    m, v = meta["machine"], meta["versions"]
    _log(f"genad_fast bench  {started}  rev {str(meta['git']['revision'])[:12]}"
         f"{' (dirty)' if meta['git']['dirty'] else ''}")
    _log(f"machine: {m['cpu_model']}, {m['cpus_usable']} cpus, torch threads {m['torch_threads']}, "
         f"load average {m['load_avg_1m']}{', ' + m['gpu'] if m['gpu'] else ''}")
    if m["load_avg_1m"] is not None and m["cpus_usable"] and m["load_avg_1m"] > 0.5 * m["cpus_usable"]:
        _log("warning: the machine is busy (load average above half its cpus); timings will be noisy")
    _log(f"versions: python {v['python']}, torch {v['torch']}, triton {v['triton']}, genad_fast {v['genad_fast']}")

    runner = Runner(cfg, devices, _split(args.providers), copy_bytes)
    t0 = time.perf_counter()
    run_meter = CpuMeter()
    for d in devices:
        runner.measure_bandwidth(d)
    for case, sizes in plan:
        runner.run_case(case, sizes)
    add_speedups(runner.rows, {c.name: c.reference for c, _ in plan})
    meta["copy_bandwidth"] = {d: bw.as_dict() for d, bw in runner.bandwidth.items()}
    meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
    meta["load_avg_1m_at_end"] = load_average()
    meta["others_cpu_share"] = run_meter.others_share()

    args.out.mkdir(parents=True, exist_ok=True)
    rev = (meta["git"]["revision"] or "norev")[:8]
    stem = args.name or f"bench_{started.replace(':', '').replace('-', '')[:15]}_{rev}"
    csv_path, json_path, png_path = (args.out / f"{stem}.{ext}" for ext in ("csv", "json", "png"))
    write_csv(csv_path, runner.rows, meta)
    write_json(json_path, runner.rows, meta)
    plotted = False if args.no_plot else plot_speedups(
        png_path, runner.rows, f"genad_fast bench {rev} - {m['cpu_model']}, {m['torch_threads']} threads")

    _log("\n" + format_table(runner.rows))
    bws = ", ".join(f"{d} {bw.gb_per_s:.1f} GB/s" for d, bw in runner.bandwidth.items())
    _log(f"\ncopy bandwidth: {bws}   (bw = bytes moved / median / copy bandwidth)")
    _log(f"wrote {csv_path}\n      {json_path}" + (f"\n      {png_path}" if plotted else ""))

    disturbed = [r for r in runner.rows if r.others_cpu is not None and r.others_cpu > OTHERS_LIMIT]
    if disturbed:
        _log(f"warning: {len(disturbed)} of {len(runner.rows)} rows were timed while other processes used more "
             f"than {100 * OTHERS_LIMIT:.0f}% of the cpus (column 'others'): those timings are inflated; "
             "rerun them on an idle machine")
    code = 0
    bad = [r for r in runner.rows if r.status in (ERROR, MISMATCH)]
    if bad:
        _log(f"\n{len(bad)} rows failed (error or output mismatch); see the status column")
        code = 1
    if args.compare is not None:
        code = max(code, _compare_files(args.compare, runner.rows, args.threshold))
    return code


if __name__ == "__main__":
    sys.exit(main())
