"""FlowDetector.decision_function end to end: the fused backend against the same model on the eager
backend and with its log-density under ``torch.compile``.

Sizes (issue 3): tabular 65,536 × 64, and a 100,000 × 25 series scored through windows of 64 at
stride 1 (every window: 100,000 − 63 flows of 1,600 dimensions). The model is the default
FlowDetector architecture, briefly trained on generated data of the same shape (timing does not
depend on how well it is trained). Items: rows (tabular) or timestamps (series).

Providers: ``eager`` runs the modules (``RealNVP.log_prob``, the plain reference); ``compile`` is
``torch.compile`` of that same ``log_prob``; ``cpu`` scores through the detector's fused path,
:class:`genad_fast.nn.flow_inference.FlowInference` (folded ActNorm+LU, precomputed constant
log-determinants, cache-sized row chunks, the fused coupling kernel).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from bench.registry import COMPILE, EAGER, Case, Provider, Size, Unavailable, allclose_check, register

SIZES = [Size("tabular-65536x64", {"n": 65536, "d": 64, "window": None}),
         Size("series-100000x25-W64", {"n": 100_000, "d": 25, "window": 64})]


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


def _scores_on(backend: str, compiled: bool = False):
    def build(inputs: dict):
        det = inputs["det"]
        model = det.model_
        log_prob = torch.compile(model.log_prob, dynamic=False) if compiled else model.log_prob

        def run():
            det.set_params(backend=backend)
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

register(Case(
    "flow_detector", "decision_function", SIZES, setup, PROVIDERS,
    items=lambda s: s["n"], item_unit="row",
    check=allclose_check(rtol=1e-3, atol=1e-3),
    description="FlowDetector scores (8 steps, hidden 128): rows, or timestamps through W=64 windows"))
