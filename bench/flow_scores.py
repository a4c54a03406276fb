"""FlowDetector's anomaly scores side by side on a case where raw likelihood fails (issue #17 point 3).

    .venv/bin/python -m bench.flow_scores [--seeds 3] [--epochs 12] [--compressors]

The case (:func:`simple_anomalies`): a 3-channel series of noisy sines (amplitudes 1, 0.8, 1.2, noise 0.3);
the test series holds three segments of 150 timestamps that are *simpler* than normal data — constant at the
training mean, smoothed (a 5-point moving average of the normal signal: the noise shrinks) and scaled down
(0.3 x) — the inputs a flow's raw NLL finds *more* likely than normal windows (Kirichenko et al., NeurIPS
2020). One flow is fitted per seed (with ``anomaly_score="likelihood_ratio"``, so that its background is fitted
too) and scored with every ``anomaly_score`` (``set_params``); AUROC and VUS-PR per anomaly kind (that kind's
timestamps against the normal ones). ``--compressors`` also scores the input-complexity correction with
each compressor of :func:`genad_fast.detectors._flow_scores.compressed_bits`, with its cost per window.
Prints a markdown table (docs/flow_scores.md holds one, with the machine).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

KINDS = {1: "constant", 2: "smoothed", 3: "scaled 0.3x"}
SCORES = ("nll", "typicality", "likelihood_ratio", "complexity")
#: The flow of the case: small, so that a test fits it in seconds.
FLOW = dict(window=16, n_steps=4, hidden=32, n_blocks=1, verbose=False)


def _sines(T: int, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    t = np.arange(T)[:, None]
    return np.array([1.0, 0.8, 1.2]) * np.sin(2 * np.pi * t / 25.0 + np.array([0.0, 1.0, 2.0])) \
        + noise * rng.standard_normal((T, 3))


def simple_anomalies(seed: int = 0, T_train: int = 2000, T_test: int = 3000,
                     seg: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, test, kinds): ``kinds[t]`` is 0 for a normal timestamp, else the :data:`KINDS` key."""
    rng = np.random.default_rng(seed)
    train, test = _sines(T_train, rng), _sines(T_test, rng)
    kinds = np.zeros(T_test, dtype=np.int64)
    for kind, start in zip(KINDS, (600, 1400, 2200)):
        end = start + seg
        if kind == 1:
            test[start:end] = train.mean(0)
        elif kind == 2:
            padded = test[start - 2:end + 2].copy()
            test[start:end] = np.stack([np.convolve(padded[:, c], np.ones(5) / 5, mode="valid")
                                        for c in range(3)], axis=1)
        else:
            test[start:end] *= 0.3
        kinds[start:end] = kind
    return train, test, kinds


def per_kind(kinds: np.ndarray, scores: np.ndarray, metric) -> dict[str, float]:
    """``metric(labels, scores)`` of each kind's timestamps against the normal ones."""
    out = {}
    for kind, name in KINDS.items():
        keep = (kinds == 0) | (kinds == kind)
        out[name] = float(metric((kinds[keep] == kind).astype(np.int64), scores[keep]))
    return out


def main(argv: list[str] | None = None) -> None:
    from genad_fast.detectors import _flow_scores
    from genad_fast.detectors.flow import FlowDetector
    from genad_fast.metrics import auroc, vus_pr

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--compressors", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: dict[str, list] = {}
    for seed in range(args.seeds):
        train, test, kinds = simple_anomalies(seed)
        det = FlowDetector(**FLOW, epochs=args.epochs, seed=seed, anomaly_score="likelihood_ratio").fit(train)
        for score in SCORES:
            det.set_params(anomaly_score=score)
            s = det.decision_function(test)
            rows.setdefault(score, []).append((per_kind(kinds, s, auroc), per_kind(kinds, s, vus_pr)))
        if args.compressors:
            z = torch.as_tensor(det._apply_normalizer(torch.as_tensor(test, dtype=torch.float32)))
            windows = z.unfold(0, det.window, 1).transpose(1, 2).contiguous()
            qbits = float(_flow_scores.quantization_bits(det.quant_lo_, det.quant_hi_))
            D = windows[0].numel()
            for comp in ("rice", "zlib", "lzma", "bz2"):
                t0 = time.perf_counter()
                bits = _flow_scores.compressed_bits(windows, det.quant_lo_, det.quant_hi_, comp)
                cost = (time.perf_counter() - t0) / windows.shape[0] * 1e6
                # window scores -> timestamps as the detector does ("min" over the covering windows)
                nll_w = torch.as_tensor(_window_nll(det, windows))
                sw = nll_w.double() / np.log(2) + qbits - bits / D
                s = torch.full((test.shape[0],), float("inf"), dtype=torch.float64)
                for i in range(det.window):
                    s[i:i + sw.shape[0]] = torch.minimum(s[i:i + sw.shape[0]], sw)
                rows.setdefault(f"complexity[{comp}]", []).append(
                    (per_kind(kinds, s.numpy(), auroc), per_kind(kinds, s.numpy(), vus_pr), cost))
    _print(rows)


def _window_nll(det, windows: torch.Tensor) -> torch.Tensor:
    """The flow's NLL (nats/dim) of normalised windows, through the detector's scoring path."""
    det.set_params(anomaly_score="nll")
    with torch.inference_mode(), det._call_scope("score"), det._score_context(windows.dtype):
        return torch.cat([det._score_model(windows[i:i + 4096]) for i in range(0, windows.shape[0], 4096)])


def _print(rows: dict[str, list]) -> None:
    names = list(KINDS.values())
    print("| score | " + " | ".join(f"AUROC {n}" for n in names) + " | " + " | ".join(f"VUS-PR {n}" for n in names)
          + " | cost µs/window |")
    print("|---" * (2 + 2 * len(names)) + "|")
    for score, runs in rows.items():
        cells = []
        for m in (0, 1):
            for n in names:
                v = np.array([r[m][n] for r in runs])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        cost = f"{np.mean([r[2] for r in runs]):.1f}" if len(runs[0]) > 2 else ""
        print(f"| {score} | " + " | ".join(cells) + f" | {cost} |")


if __name__ == "__main__":
    main()
