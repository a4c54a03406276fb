"""The evaluation's score plot: the series, the score, the labelled anomalies shaded and the threshold drawn."""
from __future__ import annotations

import numpy as np

from genad_fast._extras import install_hint
from genad_fast.plotting import MAX_CHANNELS, _runs


def plot_eval_scores(path: str, data: np.ndarray, scores: np.ndarray, threshold: float, labels: np.ndarray, *,
                     title: str | None = None) -> None:
    """Write a two-panel PNG: ``data`` ``[N, C]`` (first 8 channels) on top, ``scores`` ``[N]`` below, labelled
    anomalies (``labels`` 1) shaded in both, the threshold as a dashed line, points above it marked."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"plots need matplotlib: {install_hint('plot')}") from exc

    data = np.asarray(data, dtype=np.float64)
    data = data[:, None] if data.ndim == 1 else data
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if not (data.shape[0] == scores.shape[0] == labels.shape[0]):
        raise ValueError(f"data ({data.shape[0]}), scores ({scores.shape[0]}) and labels ({labels.shape[0]}) "
                         "must have the same length")
    n = scores.shape[0]
    x = np.arange(n)
    fig = Figure(figsize=(12, 6), constrained_layout=True)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    shown = min(data.shape[1], MAX_CHANNELS)
    for c in range(shown):
        top.plot(x, data[:, c], lw=0.7, label=f"channel {c}")
    top.set_ylabel("value" + (f" (first {shown} of {data.shape[1]} channels)" if shown < data.shape[1] else ""))
    bottom.plot(x, scores, lw=0.7, color="black", label="score")
    bottom.axhline(threshold, color="tab:red", ls="--", lw=1.0, label=f"threshold {threshold:.4g}")
    flagged = scores > threshold
    bottom.scatter(x[flagged], scores[flagged], s=6, color="tab:red", zorder=3, label=f"above ({int(flagged.sum())})")
    for i, (a, b) in enumerate(_runs(labels)):
        for ax in (top, bottom):
            ax.axvspan(a - 0.5, b - 0.5, color="tab:orange", alpha=0.3, lw=0,
                       label="labelled anomaly" if i == 0 and ax is bottom else None)
    bottom.set_ylabel("anomaly score")
    bottom.set_xlabel("test timestamp")
    bottom.legend(loc="upper right", fontsize="small")
    if shown <= 8:
        top.legend(loc="upper right", fontsize="small", ncol=min(shown, 4))
    if title:
        top.set_title(title)
    fig.savefig(path, dpi=100)
