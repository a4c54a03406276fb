"""Gaussian KDE log-density and k-nearest distances over a reference set: the fused ops against the chunked eager
code a user writes, ``torch.compile`` of its chunk, and scikit-learn.

Data: queries and references ~ N(0, I) in D = 32 dimensions, float32, the bandwidth Scott's rule
h = M^(−1/(D + 4)) (what :class:`genad_fast.detectors.kde.KDEDetector` uses on normalised data), k = 10.

Registered cases (``python -m bench --cases 'kde_logpdf:*,knn_distance:*'``), sizes N x M x D = 5,000 x 50,000 x 32
and 50,000 x 50,000 x 32:

- ``eager``: queries in chunks of 500 (a [500, M] float32 block, 100 MB at M = 50,000):
  ``torch.cdist`` then ``logsumexp(−d²/(2h²))`` (KDE) or ``topk(k, largest=False)`` (kNN);
- ``compile``: the same loop over ``torch.compile`` of the chunk function (the loop itself is Python: compiling
  it whole would unroll 100 chunks);
- ``cpu`` (and ``cuda``, ``triton`` on a GPU): :func:`genad_fast.ops.kde_logpdf` / :func:`~genad_fast.ops.knn_distance`.

``python -m bench.cases.distance`` measures what the harness table cannot hold, once, at N = M = 50,000:
scikit-learn's ``KernelDensity(kernel="gaussian", bandwidth=h).score_samples`` (its default tree, on a subset
of 500 queries, scaled linearly to N: it costs tens of milliseconds per query here) and
``NearestNeighbors().kneighbors`` (all queries; scikit-learn takes brute force for D > 15); the accuracy of
each against float64 ground truth on a subset (at D = 32 scikit-learn's tree sum is itself off the exact
density by up to ~14 nats at the lowest densities, log p ~ −50, with its default rtol = atol = 0, while the
fused op is within 1e-5 of it; at D = 6 tests/test_distance_ops.py holds the two within 1e-4 in float32 and
1e-9 in float64); and the peak memory of the fused and eager calls, each in a fresh process (see
:func:`peak_memory_child`), at three (N, M) pairs, to show the fused ops' O(N + M). It writes
``bench/results/distance.json``. Thread count: whatever torch uses; the JSON says.
"""
from __future__ import annotations

import functools
import math
import os
import time

import torch

from bench.registry import COMPILE, EAGER, FUSED_BACKENDS, Case, Provider, Size, allclose_check, fused_op, register

D, K, CHUNK = 32, 10, 500
SIZES = [Size("N5000-M50000-D32", {"n": 5000, "m": 50000, "d": D}),
         Size("N50000-M50000-D32", {"n": 50000, "m": 50000, "d": D})]
SMOKE = Size("N200-M2000-D32-smoke", {"n": 200, "m": 2000, "d": D})


def setup(size: Size, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(size["n"], size["d"], generator=g).to(device)
    r = torch.randn(size["m"], size["d"], generator=g).to(device)
    return {"q": q, "r": r, "h": size["m"] ** (-1.0 / (size["d"] + 4))}


# ---- eager: what one writes in PyTorch ------------------------------------------------------------------

def kde_chunk(q: torch.Tensor, r: torch.Tensor, h: float) -> torch.Tensor:
    log_k = torch.cdist(q, r).square() * (-0.5 / (h * h))
    return torch.logsumexp(log_k, dim=1) - math.log(r.shape[0]) - 0.5 * r.shape[1] * math.log(2 * math.pi * h * h)


def knn_chunk(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.topk(torch.cdist(q, r), K, dim=1, largest=False).values


def kde_eager(q, r, h, chunk_fn=kde_chunk):
    return torch.cat([chunk_fn(q[s:s + CHUNK], r, h) for s in range(0, q.shape[0], CHUNK)])


def knn_eager(q, r, h, chunk_fn=knn_chunk):
    return torch.cat([chunk_fn(q[s:s + CHUNK], r) for s in range(0, q.shape[0], CHUNK)])


def kde_fused(backend: str):
    op = fused_op("kde_logpdf")
    return lambda q, r, h: op(q, r, h, backend=backend)


def knn_fused(backend: str):
    op = fused_op("knn_distance")
    return lambda q, r, h: op(q, r, K, backend=backend)


def _providers(loop, chunk_fn, fused) -> dict[str, Provider]:
    def build_compile(inputs):
        # A fresh dynamo cache per size; every chunk has the same shape (CHUNK divides N), so one graph.
        torch._dynamo.reset()
        return functools.partial(loop, chunk_fn=torch.compile(chunk_fn, dynamic=False), **inputs)

    providers = {EAGER: Provider(EAGER, "any", lambda inputs: functools.partial(loop, **inputs)),
                 COMPILE: Provider(COMPILE, "any", build_compile)}
    for b in FUSED_BACKENDS:
        providers[b] = Provider(b, "cpu" if b == "cpu" else "cuda",
                                functools.partial(lambda b, inputs: functools.partial(fused(b), **inputs), b))
    return providers


# `python -m bench.cases.distance` imports this module twice (as part of bench.cases, then as __main__):
# register the cases once.
if __name__ != "__main__":
    register(Case(
        "kde_logpdf", "forward", SIZES, setup, _providers(kde_eager, kde_chunk, kde_fused),
        items=lambda s: s["n"] * s["m"], item_unit="pair", check=allclose_check(rtol=1e-5, atol=1e-4),
        smoke=SMOKE,
        description="Gaussian KDE log-density of N queries under M references, D = 32, Scott bandwidth, float32"))

    register(Case(
        "knn_distance", "forward", SIZES, setup, _providers(knn_eager, knn_chunk, knn_fused),
        items=lambda s: s["n"] * s["m"], item_unit="pair", check=allclose_check(rtol=1e-5, atol=1e-4),
        smoke=SMOKE, description="distances to the k = 10 nearest of M references for N queries, D = 32, float32"))


# ---- the one-off report -----------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(fn, repeats: int = 1) -> dict:
    """Median seconds of ``repeats`` calls (callers warm up first) and the last output."""
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"seconds": times[len(times) // 2], "all_seconds": times, "out": out}


def peak_memory_child(op: str, provider: str, n: int, m: int) -> None:
    """Prints the peak resident memory of one call above the resident memory before it, in MiB, as JSON.

    Run in a fresh process with ``MALLOC_MMAP_THRESHOLD_=65536``: every allocation of 64 KiB or more is then
    its own mapping, returned to the system when freed, so the peak counts what the call itself allocates
    (not pages a previous call left in the heap). The peak is ``VmHWM``, reset before the call by writing 5
    to ``/proc/self/clear_refs``.
    """
    import json

    from genad_fast import ops

    inputs = setup(Size("x", {"n": n, "m": m, "d": D}), torch.device("cpu"))
    q, r, h = inputs["q"], inputs["r"], inputs["h"]
    if provider == "fused":
        fn = (lambda: ops.kde_logpdf(q, r, h, backend="cpu")) if op == "kde" else \
            (lambda: ops.knn_distance(q, r, K, backend="cpu"))
        warm = (lambda: ops.kde_logpdf(q[:8], r[:100], h, backend="cpu")) if op == "kde" else \
            (lambda: ops.knn_distance(q[:8], r[:100], K, backend="cpu"))
    else:
        fn = (lambda: kde_eager(q, r, h)) if op == "kde" else (lambda: knn_eager(q, r, h))
        warm = (lambda: kde_eager(q[:8], r[:100], h)) if op == "kde" else (lambda: knn_eager(q[:8], r[:100], h))
    warm()  # thread pool, lazy initialisation
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    out = fn()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_mib_above_start": (peak - before) / 1024, "output_mib": out.numel() * 4 / 2**20}))


def _peak_memory(op: str, provider: str, n: int, m: int) -> dict:
    import json
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    code = f"from bench.cases.distance import peak_memory_child; peak_memory_child({op!r}, {provider!r}, {n}, {m})"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    return json.loads(res.stdout.strip().splitlines()[-1])


def report(sklearn_kde_queries: int = 500, accuracy_queries: int = 500, repeats: int = 3) -> dict:
    import numpy as np
    from sklearn.neighbors import KernelDensity, NearestNeighbors

    from genad_fast import ops
    from genad_fast.reference import distance as ref

    size = SIZES[-1]
    inputs = setup(size, torch.device("cpu"))
    q, r, h = inputs["q"], inputs["r"], inputs["h"]
    N, M = q.shape[0], r.shape[0]
    out: dict = {"threads": torch.get_num_threads(), "n": N, "m": M, "d": D, "k": K, "bandwidth": h,
                 "chunk": CHUNK, "load_average_start": list(os.getloadavg())}
    strip = lambda m: {k: v for k, v in m.items() if k != "out"}  # noqa: E731

    # ---- KDE
    ops.kde_logpdf(q[:64], r, h, backend="cpu")
    fused = measure(lambda: ops.kde_logpdf(q, r, h, backend="cpu"), repeats)
    eager = measure(lambda: kde_eager(q, r, h))
    compiled_chunk = torch.compile(kde_chunk, dynamic=False)
    t = time.perf_counter()
    kde_eager(q[:CHUNK], r, h, compiled_chunk)
    compile_s = time.perf_counter() - t
    comp = measure(lambda: kde_eager(q, r, h, compiled_chunk))
    kd = KernelDensity(kernel="gaussian", bandwidth=h).fit(r.double().numpy())
    sub = sklearn_kde_queries
    skl = measure(lambda: kd.score_samples(q[:sub].double().numpy()))
    sk_full = skl["seconds"] * N / sub
    a = accuracy_queries
    truth = ref.kde_logpdf(q[:a].double(), r.double(), h).numpy()
    sk_vals = skl["out"][:a] if sub >= a else kd.score_samples(q[:a].double().numpy())
    fused_vals = fused["out"].double().numpy()
    out["kde"] = {
        "seconds": {"fused_cpu": fused["seconds"], "eager_chunked": eager["seconds"], "compile_chunk": comp["seconds"],
                    "compile_first_chunk_incl_compilation": compile_s,
                    "sklearn_extrapolated": sk_full, "sklearn_subset": skl["seconds"], "sklearn_subset_queries": sub},
        "speedup": {"vs_sklearn": sk_full / fused["seconds"], "vs_eager": eager["seconds"] / fused["seconds"],
                    "vs_compile": comp["seconds"] / fused["seconds"]},
        "max_abs_error_vs_float64_truth": {  # on the first `accuracy_queries` queries
            "fused_cpu": float(np.abs(fused_vals[:a] - truth).max()),
            "eager_chunked": float(np.abs(eager["out"][:a].double().numpy() - truth).max()),
            "sklearn": float(np.abs(sk_vals - truth).max())},
        "max_abs_diff_fused_vs_eager_all": float((fused["out"] - eager["out"]).abs().max()),
        "max_abs_diff_fused_vs_sklearn_subset": float(np.abs(fused_vals[:sub] - skl["out"]).max()),
        "runs": {k: strip(v) for k, v in (("fused_cpu", fused), ("eager", eager), ("compile", comp),
                                          ("sklearn_subset", skl))}}
    del eager, comp

    # ---- kNN
    ops.knn_distance(q[:64], r, K, backend="cpu")
    fused = measure(lambda: ops.knn_distance(q, r, K, backend="cpu"), repeats)
    eager = measure(lambda: knn_eager(q, r, h))
    compiled_chunk = torch.compile(knn_chunk, dynamic=False)
    t = time.perf_counter()
    knn_eager(q[:CHUNK], r, h, compiled_chunk)
    compile_s = time.perf_counter() - t
    comp = measure(lambda: knn_eager(q, r, h, compiled_chunk))
    nn = NearestNeighbors(n_neighbors=K).fit(r.numpy())
    skl = measure(lambda: nn.kneighbors(q.numpy())[0])
    truth = ref.knn_distance(q[:a].double(), r.double(), K).numpy()
    out["knn"] = {
        "sklearn_algorithm": nn._fit_method,
        "seconds": {"fused_cpu": fused["seconds"], "eager_chunked": eager["seconds"], "compile_chunk": comp["seconds"],
                    "compile_first_chunk_incl_compilation": compile_s, "sklearn": skl["seconds"]},
        "speedup": {"vs_sklearn": skl["seconds"] / fused["seconds"], "vs_eager": eager["seconds"] / fused["seconds"],
                    "vs_compile": comp["seconds"] / fused["seconds"]},
        "max_abs_error_vs_float64_truth": {
            "fused_cpu": float(np.abs(fused["out"][:a].double().numpy() - truth).max()),
            "eager_chunked": float(np.abs(eager["out"][:a].double().numpy() - truth).max()),
            "sklearn_float32_input": float(np.abs(skl["out"][:a] - truth).max())},
        "max_abs_diff_fused_vs_sklearn_all": float(np.abs(fused["out"].double().numpy() - skl["out"]).max()),
        "runs": {k: strip(v) for k, v in (("fused_cpu", fused), ("eager", eager), ("compile", comp),
                                          ("sklearn", skl))}}
    del eager, comp

    # ---- peak memory, each call in a fresh process (peak_memory_child): the fused ops' extra memory grows with
    # N + M (outputs, packed references, per-chunk states), the eager chunks' with CHUNK x M.
    scaling = []
    for n, m in ((5000, 50000), (50000, 5000), (50000, 50000)):
        row = {"n": n, "m": m, "packed_refs_mib": m * D * 4 / 2**20, "nxm_float32_mib": n * m * 4 / 2**20}
        for op in ("kde", "knn"):
            res = _peak_memory(op, "fused", n, m)
            row[f"{op}_fused_peak_mib"] = res["peak_mib_above_start"]
            row[f"{op}_output_mib"] = res["output_mib"]
            if n == 5000:  # the eager loop's peak is per chunk: the same for every N
                row[f"{op}_eager_peak_mib"] = _peak_memory(op, "eager", n, m)["peak_mib_above_start"]
        scaling.append(row)
    out["memory"] = scaling
    out["load_average_end"] = list(os.getloadavg())
    return out


def main() -> None:
    import json
    import subprocess
    from pathlib import Path

    from bench.machine import cpu_model

    t0 = time.perf_counter()
    out = report()
    out["machine"] = cpu_model()
    try:
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        pass
    print(f"N = M = {out['n']}, D = {out['d']}, k = {out['k']}, h = {out['bandwidth']:.4f}, threads {out['threads']}, "
          f"load {out['load_average_start']} -> {out['load_average_end']}, {out['machine']}")
    for op in ("kde", "knn"):
        o = out[op]
        print(f"{op}: " + ", ".join(f"{k} {v:.2f} s" for k, v in o["seconds"].items() if isinstance(v, float)))
        print(f"  speedup: " + ", ".join(f"{k} {v:.1f}x" for k, v in o["speedup"].items()))
        print(f"  max |error| vs float64: " + ", ".join(f"{k} {v:.2e}" for k, v in
                                                     o["max_abs_error_vs_float64_truth"].items()))
    for row in out["memory"]:
        eager = ", eager chunks: kde {:.0f} MiB, knn {:.0f} MiB".format(row["kde_eager_peak_mib"],
                                                                        row["knn_eager_peak_mib"]) \
            if "kde_eager_peak_mib" in row else ""
        print(f"peak memory N={row['n']} M={row['m']}: fused kde {row['kde_fused_peak_mib']:.1f} MiB, knn "
              f"{row['knn_fused_peak_mib']:.1f} MiB (outputs {row['kde_output_mib']:.1f} / {row['knn_output_mib']:.1f}"
              f" MiB, packed refs {row['packed_refs_mib']:.1f} MiB, N x M float32 {row['nxm_float32_mib']:.0f} MiB)"
              f"{eager}")
    path = Path(__file__).resolve().parents[1] / "results" / "distance.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
