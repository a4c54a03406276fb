"""Timing: warm-up, then repeated single-call timings until a time budget or a count is reached.

CPU calls are timed with ``time.perf_counter_ns`` around each call. CUDA calls are timed with
CUDA events recorded on the stream around each call; before each one the L2 cache is flushed
by overwriting a buffer bigger than it, as ``triton.testing.do_bench`` does, so a small case
is not timed out of a warm cache that a real pipeline would not leave it.
The garbage collector is off while timing so that its pauses do not land in a sample.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


@dataclass(frozen=True)
class TimingConfig:
    budget_s: float = 1.0        # stop repeating once this much time was spent timing
    min_repeats: int = 5
    max_repeats: int = 1000
    warmup: int = 2              # warm-up calls after the first one (which may compile)
    warmup_s: float = 0.1        # ... and more until this much time is spent warming up


@dataclass(frozen=True)
class Stats:
    median_ms: float
    p20_ms: float
    p80_ms: float
    mean_ms: float
    min_ms: float
    repeats: int


def summarize(samples_ms: list[float] | np.ndarray) -> Stats:
    """Median and the 20th/80th percentiles (linear interpolation) of the samples."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("summarize() needs at least one sample")
    p20, med, p80 = np.percentile(a, [20.0, 50.0, 80.0])
    return Stats(float(med), float(p20), float(p80), float(a.mean()), float(a.min()), int(a.size))


class _GcOff:
    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()

    def __exit__(self, *exc: Any) -> None:
        if self.was_enabled:
            gc.enable()


def time_cpu(call: Callable[[], Any], cfg: TimingConfig,
             clock: Callable[[], int] = time.perf_counter_ns) -> list[float]:
    """Milliseconds per call, one sample per call (the warm-up is done by :func:`warm_up`)."""
    samples: list[float] = []
    spent = 0
    budget_ns = cfg.budget_s * 1e9
    with _GcOff():
        while len(samples) < cfg.max_repeats and (len(samples) < cfg.min_repeats or spent < budget_ns):
            t0 = clock()
            call()
            dt = clock() - t0
            spent += dt
            samples.append(dt / 1e6)
    return samples


_L2_FLUSH_BYTES = 256 << 20


def time_cuda(call: Callable[[], Any], cfg: TimingConfig, device: torch.device) -> list[float]:
    """Milliseconds per call from CUDA events, the L2 cache flushed before each call."""
    flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device=device)
    samples: list[float] = []
    t_start = time.perf_counter()
    with _GcOff():
        while len(samples) < cfg.max_repeats and (
                len(samples) < cfg.min_repeats or time.perf_counter() - t_start < cfg.budget_s):
            events = []
            for _ in range(min(10, cfg.max_repeats - len(samples))):
                flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                call()
                end.record()
                events.append((start, end))
            torch.cuda.synchronize(device)
            samples.extend(s.elapsed_time(e) for s, e in events)
    return samples


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_call(call: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Run the call once (this is where ``torch.compile`` compiles); its output and seconds."""
    sync(device)
    t0 = time.perf_counter()
    out = call()
    sync(device)
    return out, time.perf_counter() - t0


def warm_up(call: Callable[[], Any], cfg: TimingConfig, device: torch.device) -> None:
    t0 = time.perf_counter()
    n = 0
    while n < cfg.warmup or time.perf_counter() - t0 < cfg.warmup_s:
        call()
        n += 1
        if n >= max(cfg.warmup, 1000):
            break
    sync(device)


def measure(call: Callable[[], Any], cfg: TimingConfig, device: torch.device) -> Stats:
    """Warm up, then time; the call must already have run once (see :func:`first_call`)."""
    warm_up(call, cfg, device)
    samples = time_cuda(call, cfg, device) if device.type == "cuda" else time_cpu(call, cfg)
    return summarize(samples)


def best_of(call: Callable[[], Any], repeats: int = 3) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds of ``repeats`` calls after one warm-up call: the figure
    the issue reports print (``python -m bench.cases.<case>``). CPU time is the steadier one on a shared
    machine (it does not count time other processes hold the cores)."""
    call()
    wall = cpu = float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        call()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu
