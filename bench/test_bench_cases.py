"""Every registered case as a pytest-benchmark test, at its smallest size, one test per provider.

    .venv/bin/python -m pytest bench -q --benchmark-disable    # each provider runs and is checked once
    GENAD_BENCH_SMOKE=1 .venv/bin/python -m pytest bench -q --benchmark-disable   # the same at each case's
                                                               # smoke size (a few minutes; CI runs this)
    .venv/bin/python -m pytest bench --benchmark-only          # timings, grouped by case, size and device

Benchmarks, not unit tests: nothing here asserts a time. Each provider's output is checked against
the case's reference provider (eager's, or the loop's for the many-series cases) before it is timed. A provider that cannot run here is skipped with the
reason (``-ra`` prints it). The runner ``python -m bench`` is the tool for real measurements (copy
bandwidth, compile time, CSV/JSON, comparisons); this file puts the same cases under pytest-benchmark.
"""
from __future__ import annotations

import os

import pytest
import torch

from bench import registry
from bench.run import cuda_unavailable_reason

try:
    from genad_fast import BackendUnavailableError
except Exception:  # the harness must collect even when the package does not import
    BackendUnavailableError = registry.Unavailable  # type: ignore[misc, assignment]

#: GENAD_BENCH_SMOKE=1: every case at its smoke size (``Case.smoke``), far below the timed sizes, so that CI checks
#: every provider against its reference in minutes; the timings of such a run mean nothing.
SMOKE = os.environ.get("GENAD_BENCH_SMOKE", "0") not in ("", "0")
CASES = {c.key: c for c in registry.all_cases()}


def _size(case: registry.Case) -> registry.Size:
    return case.smoke_size if SMOKE else case.sizes[0]


PARAMS = [pytest.param(key, name, dev, id=f"{key}-{_size(case).label}-{dev}-{name}")
          for key, case in CASES.items() for name, p in case.providers.items()
          for dev in (("cpu", "cuda") if p.device == "any" else (p.device,))]


@pytest.mark.parametrize(("key", "provider", "dev"), PARAMS)
def test_case(benchmark, key: str, provider: str, dev: str) -> None:
    case = CASES[key]
    size = _size(case)
    p = case.providers[provider]
    device = torch.device(dev)
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{provider}: {cuda_unavailable_reason(provider)}")
    try:
        inputs = case.setup(size, device)
        call = p.build(inputs)
        out = call()                    # also compiles, for the compile provider
    except (registry.Unavailable, BackendUnavailableError) as exc:
        pytest.skip(f"{provider} unavailable: {exc}")
    if case.check is not None:
        ref = out if provider == case.reference else case.providers[case.reference].build(inputs)()
        problem = case.check(ref, out)
        assert problem is None, f"{key} {size.label} {provider}: {problem}"
    del out

    run = call
    if device.type == "cuda":
        def run():                      # the GPU works asynchronously: time until it is done
            call()
            torch.cuda.synchronize(device)
    benchmark.group = f"{key} {size.label} {device.type}"
    benchmark.extra_info.update(case=case.name, mode=case.mode, size=size.label, provider=provider,
                                items=case.items(size),
                                bytes_moved=case.bytes_moved(size) if case.bytes_moved else None)
    benchmark(run)
