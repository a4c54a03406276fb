"""Running the evaluation: every (data set, detector, seed) fitted, timed, scored, timed and measured.

:func:`run_evaluation` returns one record per run (``status`` "ok", "failed", "unavailable" or "n/a", with the
reason); the metrics are :func:`genad_fast.metrics.evaluate`'s at the detector's own ``threshold_``. Series get
a window from the detector's default or from :func:`estimate_period` (the dominant period of the
autocorrelation, as TSB-AD picks window lengths); tabular tasks drop the metrics that assume time order.

VUS buffers (``vus_window``): "labels" (default) averages over buffers 0..2 x the median anomaly length
(:func:`genad_fast.metrics.default_sliding_window`); "period" is TSB-AD's ``get_metrics``: buffers 0..L with
L = :func:`genad_fast.periodicity.dominant_period` of the first channel of the scored series (TSB-AD's
``find_length_rank(data[:, 0], rank=1)``), the same L for every detector of a (task, seed).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from genad_fast.evaluation.tasks import QUICK_PARAMS, DetectorSpec, Task, resolve_detector

SERIES_METRICS = ("vus_roc", "vus_pr", "f1_pa_best", "range_precision", "range_recall", "range_f1")


def estimate_period(x: np.ndarray, max_lag: int = 500, fallback: int = 64) -> int:
    """Dominant period of a series ``[T, C]``: the lag >= 4 of the highest local maximum of the channel-mean
    autocorrelation (lags up to ``min(max_lag, T // 3)``), as TSB-AD picks window lengths; ``fallback``
    when no local maximum reaches 0.1 (no clear periodicity)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    T = x.shape[0]
    L = min(max_lag, T // 3)
    if L < 6:
        return fallback
    z = x - x.mean(0)
    sd = z.std(0)
    z = z[:, sd > 0] / sd[sd > 0]
    if z.shape[1] == 0:
        return fallback
    n = 1 << int(np.ceil(np.log2(2 * T)))
    f = np.fft.rfft(z, n=n, axis=0)
    acf = np.fft.irfft(f * np.conj(f), n=n, axis=0)[: L + 1].mean(1)
    acf = acf / acf[0]
    peaks = [k for k in range(4, L) if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1] and acf[k] >= 0.1]
    if not peaks:
        return fallback
    return int(max(peaks, key=lambda k: acf[k]))


def _window_for(spec: DetectorSpec, task: Task, train: np.ndarray) -> int | None:
    """Series: the detector's own default window if it has one (diffusion: a training crop length), else
    the estimated period clipped to [8, 256] and to a third of the training part. Tabular: None."""
    if task.kind != "series":
        return None
    default = spec.cls._param_defaults().get("window") if spec.cls is not None else None
    if isinstance(default, str):  # e.g. "auto": the detector picks its window from the data itself
        return default
    if default is not None:
        return int(default)
    return int(np.clip(estimate_period(train), 8, max(8, min(256, train.shape[0] // 3))))


# ---------------------------------------------------------------------------------------------- running
def _quick_members(spec: DetectorSpec, params: dict) -> dict:
    """``--quick`` for a detector made of member detectors (the ensemble): QUICK_PARAMS on each member that has
    them, so its members train as briefly as the same detectors do alone."""
    from genad_fast.detectors import get_detector

    members = params.get("members") or spec.cls._param_defaults().get("members") or ()
    out = {}
    for m in ([members] if isinstance(members, str) else members):
        try:
            names = set(get_detector(m)._get_param_names())
        except ValueError:  # an unknown member: the detector itself says so when built
            continue
        quick = {k: v for k, v in QUICK_PARAMS.items() if k in names}
        if quick:
            out[m] = quick
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or ""
    return f"{type(exc).__name__}: {text}"[:300]


def _run_one(spec: DetectorSpec, task: Task, data, seed: int, *, quick: bool, device: str,
             contamination: float | None, extra: dict, max_buffer: int | None = None) -> dict:
    from genad_fast.metrics import evaluate

    params = dict(spec.params)
    names = set(spec.cls._get_param_names())
    if quick:
        params.update({k: v for k, v in QUICK_PARAMS.items() if k in names and k not in params})
        if "member_params" in names and "member_params" not in params and "member_params" not in extra:
            params["member_params"] = _quick_members(spec, params)
    params.update({k: v for k, v in task.detector_params.items() if k in names})
    window = _window_for(spec, task, data.train)
    if task.kind == "series" and "window" in names:
        params["window"] = window
    params.update(seed=seed, verbose=False, device=device)
    if contamination is not None:
        params["contamination"] = contamination
    params.update(extra)
    record: dict[str, Any] = dict(dataset=task.name, detector=spec.name, seed=seed, kind=task.kind,
                                  n_train=int(data.train.shape[0]), n_test=int(data.test.shape[0]),
                                  n_features=int(data.train.shape[1]), window=params.get("window"),
                                  vus_max_buffer=max_buffer,
                                  params={k: v for k, v in params.items() if k not in ("verbose",)})
    if task.kind == "tabular" and spec.cls._param_defaults().get("window") is not None:
        record.update(status="n/a", reason=f"{spec.cls.__name__} models series only (it needs a window); "
                                           "not run on tabular data")
        return record
    if not data.labels.any() or data.labels.all():
        record.update(status="failed", reason="the test labels hold one class only; metrics need both")
        return record
    try:
        det = spec.cls(**params)
        start = time.perf_counter()
        det.fit(data.train)
        record["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        scores = det.decision_function(data.test)
        record["score_s"] = time.perf_counter() - start
        threshold = float(det.threshold_)
        metrics = evaluate(data.labels, scores, threshold=threshold if math.isfinite(threshold) else None,
                           series=task.kind == "series", max_buffer=max_buffer)
    except Exception as exc:  # a detector that fails here is reported, with its reason, not dropped
        record.update(status="failed", reason=_one_line(exc))
        return record
    if task.kind != "series":  # NaN there: order-based metrics mean nothing for rows
        metrics = {k: v for k, v in metrics.items() if k not in SERIES_METRICS}
    record.update(status="ok", threshold=threshold, metrics=metrics,
                  throughput=data.test.shape[0] / record["score_s"] if record["score_s"] > 0 else float("inf"))
    record["_scores"] = np.asarray(scores, dtype=np.float64)  # for plots; not written to JSON
    return record


def run_evaluation(detectors: Sequence[str], tasks: Sequence[Task], seeds: Sequence[int], *, quick: bool = False,
                   device: str = "cpu", contamination: float | None = None,
                   detector_params: dict[str, dict] | None = None, plot_dir: str | None = None,
                   log: Callable[[str], None] | None = print, vus_window: str = "labels",
                   seed_major: bool = False, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every (task, detector, seed); one record each (``status`` "ok", "failed" or "unavailable").

    ``vus_window`` "labels" or "period": the VUS buffers (see the module's docstring). ``seed_major``: every
    task for seed 0, then every task for seed 1, ... (a run stopped early then has whole seeds, not whole
    tasks). ``on_record`` is called with each record as it is made (e.g. to append it to a file).

    ``detector_params`` maps a detector name (as given) to extra constructor parameters. With ``plot_dir``,
    the first successful seed of each series (task, detector) is plotted there.
    """
    if vus_window not in ("labels", "period"):
        raise ValueError(f"vus_window must be 'labels' or 'period', got {vus_window!r}")
    specs = [resolve_detector(d) for d in detectors]
    detector_params = detector_params or {}
    records: list[dict] = []
    for task in tasks:
        if task.reason is not None:
            records.append(dict(dataset=task.name, detector="*", seed=None, kind=task.kind, status="unavailable",
                                reason=task.reason))
            if on_record:
                on_record(records[-1])
            if log:
                log(f"[{task.name}] {task.reason}")
    runnable = [t for t in tasks if t.reason is None]
    pairs = [(t, s) for s in seeds for t in runnable] if seed_major else [(t, s) for t in runnable for s in seeds]
    for task, seed in pairs:
        try:
            data = task.load(seed)
        except Exception as exc:  # a data set that cannot load is a row saying why
            reason = _one_line(exc)
            records.append(dict(dataset=task.name, detector="*", seed=seed, kind=task.kind,
                                status="unavailable", reason=f"unavailable: {reason}"))
            if on_record:
                on_record(records[-1])
            if log:
                log(f"[{task.name}] seed {seed}: {reason}")
            continue
        max_buffer = None
        if vus_window == "period" and task.kind == "series":
            from genad_fast.periodicity import dominant_period

            max_buffer = int(dominant_period(np.asarray(data.test, dtype=np.float64)[:, 0]))
        for spec in specs:
            if spec.cls is None:
                rec = dict(dataset=task.name, detector=spec.name, seed=seed, kind=task.kind,
                           status="unavailable", reason=spec.reason)
            else:
                rec = _run_one(spec, task, data, seed, quick=quick, device=device, contamination=contamination,
                               extra=detector_params.get(spec.name, {}), max_buffer=max_buffer)
            rec["group"] = task.group
            scores = rec.pop("_scores", None)
            if (plot_dir and scores is not None and task.kind == "series" and not any(
                    r.get("plotted") for r in records if r["dataset"] == task.name
                    and r["detector"] == spec.name)):
                rec["plot"] = _plot(plot_dir, task, spec, data, scores, rec)
                rec["plotted"] = True
            records.append(rec)
            if on_record:
                on_record(rec)
            if log:
                if rec["status"] == "ok":
                    m = rec["metrics"]
                    vus = f" VUS-PR {m['vus_pr']:.3f}" if "vus_pr" in m else ""
                    log(f"[{task.name}] {spec.name} seed {seed}: AUROC {m['auroc']:.3f} AUPRC {m['auprc']:.3f}"
                        f"{vus}, fit {rec['fit_s']:.2f} s, score {rec['score_s']:.2f} s")
                else:
                    reason = rec["reason"]
                    prefix = "" if reason.startswith(rec["status"]) else f"{rec['status']}: "
                    log(f"[{task.name}] {spec.name} seed {seed}: {prefix}{reason}")
    return records


def _plot(plot_dir: str, task: Task, spec: DetectorSpec, data, scores: np.ndarray, rec: dict) -> str | None:
    from genad_fast.eval_plot import plot_eval_scores

    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, f"{_safe(task.name)}__{_safe(spec.name)}.png")
    m = rec["metrics"]
    title = (f"{spec.name} on {task.name} (seed {rec['seed']}): AUROC {m['auroc']:.3f}, VUS-PR "
             f"{m.get('vus_pr', float('nan')):.3f}")
    try:
        plot_eval_scores(path, data.test, scores, rec["threshold"], data.labels, title=title)
    except ImportError as exc:  # matplotlib missing: say so in the record, keep the numbers
        rec["plot_error"] = str(exc)
        return None
    return path


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)

