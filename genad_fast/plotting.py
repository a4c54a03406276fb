"""Score plots: the data, the anomaly score, the threshold and the flagged points, written to a PNG.

Uses matplotlib's object API with the Agg canvas, so it never touches pyplot's global backend.
"""
from __future__ import annotations

import numpy as np

from genad_fast._extras import install_hint

MAX_CHANNELS = 8  # more lines than this make the top panel unreadable


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index runs where ``mask`` is True."""
    m = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[0::2], edges[1::2]))


def plot_scores(path: str, data: np.ndarray, scores: np.ndarray, threshold: float, *,
                time: np.ndarray | None = None, columns: list[str] | None = None,
                labels: np.ndarray | None = None, title: str | None = None) -> None:
    """Write a two-panel PNG: ``data`` ``[N, C]`` on top (at most 8 channels), ``scores`` ``[N]`` below.

    Timestamps with ``score > threshold`` are shaded in both panels and marked on the score;
    ``labels`` (known anomalies, optional) are drawn as a strip under the score panel.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"plots need matplotlib: {install_hint('plot')}") from exc

    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    scores = np.asarray(scores, dtype=np.float64)
    if data.shape[0] != scores.shape[0]:
        raise ValueError(f"data has {data.shape[0]} rows but scores has {scores.shape[0]}")
    n = scores.shape[0]
    x = np.arange(n) if time is None else np.asarray(time)
    flagged = scores > threshold

    fig = Figure(figsize=(12, 6), constrained_layout=True)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    shown = min(data.shape[1], MAX_CHANNELS)
    for c in range(shown):
        name = columns[c] if columns is not None else f"channel {c}"
        top.plot(x, data[:, c], lw=0.8, label=name)
    extra = f" (first {shown} of {data.shape[1]} channels)" if shown < data.shape[1] else ""
    top.set_ylabel("value" + extra)
    if shown <= 10:
        top.legend(loc="upper right", fontsize="small", ncol=min(shown, 4))
    bottom.plot(x, scores, lw=0.8, color="black", label="score")
    bottom.axhline(threshold, color="tab:red", ls="--", lw=1.0, label=f"threshold {threshold:.4g}")
    bottom.scatter(x[flagged], scores[flagged], s=8, color="tab:red", zorder=3,
                   label=f"flagged ({int(flagged.sum())})")
    for a, b in _runs(flagged):
        for ax in (top, bottom):
            ax.axvspan(x[a], x[min(b, n - 1)], color="tab:red", alpha=0.15, lw=0)
    if labels is not None:
        labels = np.asarray(labels).astype(bool)
        for a, b in _runs(labels):
            bottom.axvspan(x[a], x[min(b, n - 1)], ymin=0.0, ymax=0.04, color="tab:blue", lw=0)
    bottom.set_ylabel("anomaly score")
    bottom.set_xlabel("time" if time is not None else "row")
    bottom.legend(loc="upper right", fontsize="small")
    if title:
        top.set_title(title)
    fig.savefig(path, dpi=110)
