"""FlowDetector.decision_function end to end: the fused backend against the same model on the eager
backend and with its log-density under ``torch.compile``.

Sizes (issue 3): tabular 65,536 × 64, and a 100,000 × 25 series scored through windows of 64 at
stride 1 (every window: 100,000 − 63 flows of 1,600 dimensions). The model is the default
FlowDetector architecture, briefly trained on generated data of the same shape (timing does not
depend on how well it is trained). Items: rows (tabular) or timestamps (series).

Providers: ``eager`` runs the modules (``RealNVP.log_prob``, the plain reference); ``compile`` is
``torch.compile`` of that same ``log_prob``; ``cpu`` scores through the detector's fused path,
:class:`genad_fast.nn.flow.plan.FlowInference` (folded ActNorm+LU, precomputed constant
log-determinants, cache-sized row chunks, the fused coupling kernel).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from bench.registry import COMPILE, EAGER, Case, Provider, Size, Unavailable, allclose_check, register
from bench.timing import best_of

SIZES = [Size("tabular-65536x64", {"n": 65536, "d": 64, "window": None}),
         Size("series-100000x25-W64", {"n": 100_000, "d": 25, "window": 64})]
SMOKE = Size("tabular-2048x16-smoke", {"n": 2048, "d": 16, "window": None})


@functools.lru_cache(maxsize=2)
def _fitted(n: int, d: int, window: int | None):
    from genad_fast.detectors.flow import FlowDetector

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    test = (rng.normal(size=(n, d)) @ mixing).astype(np.float32)
    train = test[: 4096 if window is None else 4096 + window]
    det = FlowDetector(window=window, epochs=2, seed=0, verbose=False, val_fraction=0.0).fit(train)
    return det, test


def setup(size: Size, device: torch.device) -> dict:
    if device.type != "cpu":
        raise Unavailable("the detector benchmark runs on the CPU here")
    det, test = _fitted(size["n"], size["d"], size["window"])
    return {"det": det, "data": test}


def _scores_on(backend: str, compiled: bool = False, matmul_dtype: str = "float32"):
    def build(inputs: dict):
        det = inputs["det"]
        model = det.model_
        log_prob = torch.compile(model.log_prob, dynamic=False) if compiled else model.log_prob

        def run():
            det.set_params(backend=backend, matmul_dtype=matmul_dtype)
            model.log_prob = log_prob  # instance attribute shadows the method for this call only
            try:
                return torch.as_tensor(det.decision_function(inputs["data"]))
            finally:
                del model.log_prob
        return run
    return build


PROVIDERS = {
    EAGER: Provider(EAGER, "cpu", _scores_on("eager")),
    COMPILE: Provider(COMPILE, "cpu", _scores_on("eager", compiled=True)),
    "cpu": Provider("cpu", "cpu", _scores_on("cpu")),
}

# Run as ``python -m bench.cases.flow_detector``, this file is imported twice (as a case of bench.cases and as
# __main__): register the cases once.
if __name__ != "__main__":
    register(Case(
        "flow_detector", "decision_function", SIZES, setup, PROVIDERS,
        items=lambda s: s["n"], item_unit="row",
        check=allclose_check(rtol=1e-3, atol=1e-3), smoke=SMOKE,
        description="FlowDetector scores (8 steps, hidden 128): rows, or timestamps through W=64 windows"))

    # matmul_dtype="bfloat16" (bfloat16 products, float32 accumulation; AMX or AVX512-BF16 on the CPU) against
    # the float32 eager detector (the eager modules under bfloat16 autocast: ``python -m bench.cases.flow_detector``).
    register(Case(
        "flow_detector", "decision_function-bf16", SIZES, setup,
        {EAGER: PROVIDERS[EAGER], "cpu": Provider("cpu", "cpu", _scores_on("cpu", matmul_dtype="bfloat16"))},
        items=lambda s: s["n"], item_unit="row",
        check=allclose_check(rtol=1e-2, atol=1e-2), smoke=SMOKE,
        description="the same scores with bfloat16 products, against the float32 eager detector"))


# ---- the figures of issue 3 (python -m bench.cases.flow_detector) ----------------------------------------

def floor_seconds(det, n: int, repeats: int = 3) -> dict:
    """The fused plan's unavoidable work on ``n`` rows, each part alone into preallocated outputs, chunk by
    chunk: every conditioner and mixing product (``addmm``) and the five exact GELUs per step."""
    from genad_fast.nn.flow.plan import FlowInference

    plan = FlowInference(det.model_, torch.float32, backend="cpu")
    rows = min(plan.chunk, n)
    gemms, hidden = [], None
    for head, coup in plan.steps:
        if hasattr(head, "matrix"):
            gemms.append((head.shift, head.matrix))
        net = coup.net
        layers = [net.inp] + [pair for w1, b1, w2, b2 in net.blocks for pair in ((w1, b1), (w2, b2))] + [net.out]
        gemms += [(b, w.T) for w, b in layers]
        hidden = net.inp[0].shape[0]
    # one input and one output buffer per width, reused as the plan reuses its buffers (cache-hot)
    widths = {m2.shape[0] for _, m2 in gemms} | {m2.shape[1] for _, m2 in gemms}
    bufs = {w: torch.randn(rows, w) for w in widths}
    outs = {w: torch.empty(rows, w) for w in widths}
    gemms = [(b, bufs[m2.shape[0]], m2, outs[m2.shape[1]]) for b, m2 in gemms]
    h, g = torch.randn(rows, hidden), torch.empty(rows, hidden)
    n_chunks = -(-n // rows)

    def products():
        for _ in range(n_chunks):
            for b, m1, m2, o in gemms:
                torch.addmm(b, m1, m2, out=o)

    def gelus():
        for _ in range(n_chunks * len(plan.steps) * (1 + 2 * len(plan.steps[0][1].net.blocks))):
            torch._C._nn.gelu(h, out=g)
    flops = 2 * n_chunks * rows * sum(m2.numel() for _, _, m2, _ in gemms)
    return {"gemm": best_of(products, repeats)[0], "gelu": best_of(gelus, repeats)[0], "gemm_gflop": flops / 1e9}


def _profile(det, data, top: int = 8) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    det.decision_function(data)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        det.decision_function(data)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:top]]


def _auroc_bf16() -> dict:
    """AUROC of FlowDetector on a generated series, float32 and bfloat16 products (fused backend)."""
    from sklearn.metrics import roc_auc_score

    from genad_fast.datasets import make_series
    from genad_fast.detectors.flow import FlowDetector

    data = make_series(T=8000, C=8, seed=0)
    det = FlowDetector(window=16, seed=0, verbose=False, backend="cpu").fit(data.train)
    out = {}
    for md in ("float32", "bfloat16"):
        det.set_params(matmul_dtype=md)
        out[md] = roc_auc_score(data.labels, det.decision_function(data.test))
    return out


def main() -> None:
    import os
    import platform

    repeats = 3
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()}")
    for size in SIZES:
        inputs = setup(size, torch.device("cpu"))
        det, data = inputs["det"], inputs["data"]
        times = {}
        for name, backend, md in (("eager float32", "eager", "float32"), ("eager bf16 autocast", "eager", "bfloat16"),
                                  ("fused float32", "cpu", "float32"), ("fused bf16", "cpu", "bfloat16")):
            det.set_params(backend=backend, matmul_dtype=md)
            times[name] = best_of(lambda: det.decision_function(data), repeats)[0]
        base = times["eager float32"]
        print(f"== {size.label}, {det.score_batch_size} rows per call")
        for name, sec in times.items():
            print(f"  {name:22s} {sec * 1e3:9.1f} ms   {base / sec:5.2f}x eager float32")
        if size["window"] is None:
            fl = floor_seconds(det, size["n"], repeats)
            both = fl["gemm"] + fl["gelu"]
            print(f"  floor: products {fl['gemm'] * 1e3:.1f} ms ({fl['gemm_gflop'] / fl['gemm']:.0f} GFLOP/s) + "
                  f"GELUs {fl['gelu'] * 1e3:.1f} ms = {both * 1e3:.1f} ms; fused float32 at "
                  f"{100 * both / times['fused float32']:.0f}% of it, at most {base / both:.2f}x eager")
            det.set_params(backend="cpu", matmul_dtype="float32")
            print("  profile, fused float32: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in _profile(det, data)))
    print("AUROC make_series(T=8000, C=8), W=16:", {k: round(v, 4) for k, v in _auroc_bf16().items()})


if __name__ == "__main__":
    main()
