"""The main job (`genad-fast demo`): what this build is, and what it does on a series with known anomalies.

1. The build and backend facts: genad_fast and torch versions, the CPU kernel variant in use (and those compiled),
   whether the CUDA ops were built, each backend and whether it can run here.
2. A FlowDetector (exact-likelihood normalizing flow over windows; its scoring runs the flow's fused inference plan)
   is fitted on the first part of the clean training series. Its threshold is set on the held-out rest of it, clean
   data the model has not seen, by peaks over threshold (POT: a generalised Pareto tail, Siffer et al., KDD 2017)
   at a false-alarm risk ``q`` per timestamp. Training scores would not do: a model scores its own training data
   lower than new normal data, so their quantile flags many normal test timestamps (the demo prints how many).
3. On the test part: how many timestamps it flags against how many are anomalous, precision, recall, the events
   found, AUROC and AUPRC.
4. The whole scoring pipeline (windows, flow, per-timestamp reduction) timed on the fused backend and on its eager
   twin (the same model on plain PyTorch ops), best of ``--repeats``, with the check that both give the same scores.
   The flow's matrix products are the same on both backends, which bounds its ratio; a KNNDetector on the same
   windows and threshold rule follows, whose scoring is all one fused kernel (``knn_distance``), so its ratio is the
   fused kernel's.
5. Files: the flow's scores as CSV, a plot, the model, a JSON summary (both detectors); their paths are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

# Fused and eager scores agree to float32 rounding (the kernels reassociate sums); beyond this is a bug.
SAME_SCORES_RTOL = 1e-4
SAME_SCORES_ATOL = 1e-4


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genad-fast demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=_positive_int, default=10000,
                   help="timestamps in the generated series, half training, half test (default 10000)")
    p.add_argument("--channels", type=_positive_int, default=8)
    p.add_argument("--window", type=_positive_int, default=16)
    p.add_argument("--epochs", type=_positive_int, default=12, help="most training epochs (early stopping)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="fraction of the training part held out to set the threshold on (default 0.25)")
    p.add_argument("--risk", type=float, default=1e-3,
                   help="POT's false-alarm probability per normal timestamp (default 1e-3)")
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed scoring runs per backend (best counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="genad_demo", help="folder for the scores, plot, model and summary")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (matplotlib not needed then)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def build_facts() -> list[str]:
    """Lines naming the build: versions, CPU kernel variant, CUDA ops, backends."""
    import torch

    import genad_fast

    info = genad_fast.build_info()
    torch_cuda = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    lines = [f"genad_fast {genad_fast.__version__}, torch {torch.__version__} ({torch_cuda}), "
             f"{torch.get_num_threads()} threads"]
    if not info.get("loaded"):
        lines.append(f"compiled extension: NOT LOADED ({info.get('error')}); only the eager backend runs. "
                     f"{info.get('hint', '')}")
    else:
        compiled = ", ".join(info.get("cpu_capabilities", []) or ["?"])
        lines.append(f"CPU kernels: {info.get('cpu_capability')} in use (compiled: {compiled}; "
                     f"ATEN_CPU_CAPABILITY overrides)")
        if "cuda" in info.get("backends", []):
            lines.append(f"CUDA ops: built for {info.get('cuda_archs')} (CUDA {info.get('cuda_version')})")
        else:
            lines.append("CUDA ops: not built (GENAD_CUDA=AUTO compiles them only where a GPU is visible; "
                         "GENAD_CUDA=ON compiles them anyway)")
    lines.append("backends:")
    lines += [f"  {b}" for b in genad_fast.backends()]
    return lines


def _timed_scores(det, data: np.ndarray, backend: str, repeats: int) -> tuple[np.ndarray, float]:
    """Scores of ``data`` on ``backend`` and the best wall time of ``repeats`` runs (after a warm-up run)."""
    det.set_params(backend=backend)
    det.decision_function(data[: det.window * 4])  # first-call set-up: allocations, dispatch, thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        scores = det.decision_function(data)
        best = min(best, time.perf_counter() - start)
    return scores, best


def _fused_vs_eager(det, data: np.ndarray, fused, repeats: int) -> tuple[np.ndarray, dict]:
    """Scores on the fused backend (eager when it cannot run) and the timing/same-scores facts of both."""
    if fused is None or not fused.available:
        scores, eager_s = _timed_scores(det, data, "eager", repeats)
        return scores, {"eager_seconds": eager_s, "fused_seconds": None, "same_scores": True}
    scores, fused_s = _timed_scores(det, data, "cpu", repeats)
    eager_scores, eager_s = _timed_scores(det, data, "eager", repeats)
    if not (np.isfinite(scores).all() and np.isfinite(eager_scores).all()):
        raise RuntimeError("the demo's scores hold NaN or inf: a bug, please report it")
    same = bool(np.allclose(scores, eager_scores, rtol=SAME_SCORES_RTOL, atol=SAME_SCORES_ATOL))
    return scores, {"eager_seconds": eager_s, "fused_seconds": fused_s, "speedup": eager_s / fused_s,
                    "max_abs_diff": float(np.max(np.abs(scores - eager_scores))), "same_scores": same}


def _timing_line(timing: dict, fused) -> str:
    if timing["fused_seconds"] is None:
        return (f"  eager {timing['eager_seconds'] * 1e3:.1f} ms; fused backend not available here: "
                f"{fused.reason if fused is not None else 'unknown'}")
    return (f"  fused (cpu) {timing['fused_seconds'] * 1e3:7.1f} ms   eager twin {timing['eager_seconds'] * 1e3:7.1f} ms"
            f"   speed-up {timing['speedup']:.2f}x   same scores: {'yes' if timing['same_scores'] else 'NO'} "
            f"(max |diff| {timing['max_abs_diff']:.1e})")


def _detection_lines(summary: dict, n: int) -> list[str]:
    return [f"  flagged {summary['flagged']} of {n} test timestamps; {summary['anomalous']} are anomalous "
            f"({summary['flagged'] / max(summary['anomalous'], 1):.2f}x as many flagged as true)",
            f"  precision {summary['precision']:.3f}   recall {summary['recall']:.3f}   F1 {summary['f1']:.3f}   "
            f"events found {summary['events_found']} of {summary['events']}   AUROC {summary['auroc']:.4f}   "
            f"AUPRC {summary['auprc']:.4f}"]


def _memorising_line(knn, holdout: np.ndarray, test_scores: np.ndarray, labels: np.ndarray) -> str:
    """Why kNN's held-out threshold may flag many normal test timestamps: its scores on the normal test timestamps,
    early and late, against the held-out part's (measured here, on this run's data)."""
    normal = test_scores[labels == 0]
    fifth = max(len(normal) // 5, 1)
    held = float(np.median(knn.decision_function(holdout)))
    return (f"  (kNN scores distance to the fitted windows: median {held:.2f} on the held-out part, "
            f"{np.median(normal[:fifth]):.2f} on the first fifth of the normal test timestamps and "
            f"{np.median(normal[-fifth:]):.2f} on the last. Where the test part moves on to stretches no fitted "
            f"window resembles (this generator's three sinusoids have incommensurate periods, so their phases keep "
            f"combining anew), a memorising detector scores normal data as far, and a threshold set on held-out data "
            f"flags it; the flow's density generalises between the fitted windows.)")


def detection_summary(scores: np.ndarray, threshold: float, labels: np.ndarray, anomalies) -> dict:
    """Flagged vs true timestamps, point-wise precision/recall/F1, events with at least one flagged timestamp."""
    from genad_fast.metrics import auprc, auroc

    flagged = scores > threshold
    true = labels.astype(bool)
    hits = int((flagged & true).sum())
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(true.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    found = sum(bool(flagged[a.start:a.stop].any()) for a in anomalies)
    return {"flagged": int(flagged.sum()), "anomalous": int(true.sum()), "true_positives": hits,
            "precision": precision, "recall": recall, "f1": f1, "events": len(anomalies), "events_found": found,
            "auroc": float(auroc(labels, scores)), "auprc": float(auprc(labels, scores))}


def _write_outputs(out: str, data, scores: np.ndarray, threshold: float, det, summary: dict,
                   plot: bool) -> list[tuple[str, str]]:
    os.makedirs(out, exist_ok=True)
    written = []
    path = os.path.join(out, "scores.csv")
    table = np.column_stack([np.arange(len(scores)), scores, scores > threshold, data.labels])
    np.savetxt(path, table, delimiter=",", fmt=["%d", "%.6g", "%d", "%d"], header="t,score,flagged,anomaly",
               comments="")
    written.append(("scores", path))
    if plot:
        from genad_fast.plotting import plot_scores

        path = os.path.join(out, "scores.png")
        plot_scores(path, data.test, scores, threshold, labels=data.labels,
                    title=f"FlowDetector, POT threshold: {summary['flagged']} flagged, "
                          f"{summary['anomalous']} anomalous")
        written.append(("plot", path))
    path = os.path.join(out, "flow.pt")
    det.save(path)
    written.append(("model", path + "  (genad_fast.load(path))"))
    path = os.path.join(out, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    written.append(("summary", path))
    return written


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0.0 < args.holdout < 1.0:
        raise SystemExit(f"genad-fast demo: --holdout must be in (0, 1), got {args.holdout}")
    if not 0.0 < args.risk < 0.02:
        raise SystemExit(f"genad-fast demo: --risk must be in (0, 0.02), got {args.risk}")
    t_start = time.perf_counter()
    import genad_fast
    from genad_fast.data import make_series
    from genad_fast.detectors.flow import FlowDetector
    from genad_fast.detectors.knn import KNNDetector
    from genad_fast.thresholds import POTThreshold

    print("\n".join(build_facts()))
    data = make_series(T=args.length, C=args.channels, seed=args.seed)
    n_fit = int(round(data.train.shape[0] * (1.0 - args.holdout)))
    fit_part, holdout = data.train[:n_fit], data.train[n_fit:]
    print(f"\nseries: {data.train.shape[0]} clean training timestamps ({n_fit} to fit, {holdout.shape[0]} held out "
          f"for the threshold), {data.test.shape[0]} test timestamps x {args.channels} channels; "
          f"{int(data.labels.sum())} anomalous test timestamps in {len(data.anomalies)} events "
          f"({', '.join(sorted({a.kind for a in data.anomalies}))})")

    det = FlowDetector(window=args.window, epochs=args.epochs, seed=args.seed, verbose=not args.quiet,
                       contamination=0.01)
    start = time.perf_counter()
    det.fit(fit_part)
    fit_s = time.perf_counter() - start
    train_quantile = det.threshold_  # the training scores' 99th percentile (contamination=0.01)
    # POT's tail starts at the 98th percentile (the paper's level), lower on a short hold-out so that at least
    # 20 peaks lie above it (a GPD fit on fewer is too loose).
    level = min(0.98, 1.0 - 20.0 / holdout.shape[0])
    if not args.risk < 1.0 - level:
        raise SystemExit(f"genad-fast demo: --risk {args.risk:g} must be below {1.0 - level:.3g}, the share of the "
                         f"held-out scores above POT's initial level")
    det.set_threshold(holdout, method=POTThreshold(q=args.risk, level=level))

    fused = {b.name: b for b in genad_fast.backends()}.get("cpu")
    scores, timing = _fused_vs_eager(det, data.test, fused, args.repeats)
    summary = detection_summary(scores, det.threshold_, data.labels, data.anomalies)
    naive_flagged = int((scores > train_quantile).sum())
    n = data.test.shape[0]

    print(f"\nFlowDetector(window={args.window}): fitted in {fit_s:.1f} s ({len(det.history_.train_loss)} epochs, "
          f"best {det.history_.best_epoch + 1}); threshold {det.threshold_:.3f}: POT (q={args.risk:g}) on the "
          f"scores of the {holdout.shape[0]} held-out clean timestamps")
    print("\n".join(_detection_lines(summary, n)))
    print(f"  (the training scores' 99th percentile, {train_quantile:.3f}, would flag {naive_flagged}: a model "
          f"scores its own training data lower than new data)")
    print(f"  scoring the {n} test timestamps (windows -> flow log-likelihood -> per-timestamp score; the network's "
          f"matrix products are the same on both backends), best of {args.repeats}:")
    print(_timing_line(timing, fused))
    summary.update(timing, fit_seconds=fit_s, threshold=det.threshold_, train_quantile_flagged=naive_flagged,
                   test_timestamps=n)

    # kNN: no network, its scoring is all the fused knn_distance kernel (the eager twin: cdist + topk).
    knn = KNNDetector(window=args.window, verbose=False).fit(fit_part)
    knn.set_threshold(holdout, method=POTThreshold(q=args.risk, level=level))
    knn_scores, knn_timing = _fused_vs_eager(knn, data.test, fused, args.repeats)
    knn_summary = detection_summary(knn_scores, knn.threshold_, data.labels, data.anomalies)
    knn_summary.update(knn_timing, threshold=knn.threshold_)
    summary["knn"] = knn_summary
    print(f"\nKNNDetector(window={args.window}, n_neighbors={knn.n_neighbors}): distance to the k-th nearest of the "
          f"{fit_part.shape[0] - args.window + 1} fitted windows; threshold {knn.threshold_:.3f}, POT as above")
    print("\n".join(_detection_lines(knn_summary, n)))
    print(_memorising_line(knn, holdout, knn_scores, data.labels))
    print(f"  scoring the {n} test timestamps (all of it the fused knn_distance kernel), best of {args.repeats}:")
    print(_timing_line(knn_timing, fused))
    same = timing["same_scores"] and knn_timing["same_scores"]

    out = os.path.abspath(args.out)
    written = _write_outputs(out, data, scores, det.threshold_, det, summary, plot=not args.no_plot)
    print(f"\noutputs in {out}:")
    for what, path in written:
        print(f"  {what:8s}{path}")
    print(f"demo done in {time.perf_counter() - t_start:.0f} s")
    if not same:
        print(f"ERROR: the fused and eager scores differ beyond rtol={SAME_SCORES_RTOL}, atol={SAME_SCORES_ATOL}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
