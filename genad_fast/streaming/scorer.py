"""``det.stream()``: score a series as it arrives, with flat memory and the causal reduction.

::

    s = det.stream(delay=0, threshold="dspot")
    for chunk in source:                  # 1..n timestamps each, [n, C] (1-D for one channel)
        out = s.update(chunk)             # the timestamps whose evidence became complete
        for i, score, alarm in zip(out.index, out.scores, out.alarms): ...
    out = s.flush()                       # the end: what is still pending

Each update reads the chunk as ``decision_function`` reads a series (:mod:`genad_fast.streaming.chunks`), scores
the grid windows it completed with the detector's own hooks inside a call held for the stream
(:mod:`~genad_fast.streaming.windows`, :mod:`~genad_fast.streaming.scope`), adds them to the pending timestamps
and hands out those that became due (:mod:`genad_fast.streaming.causal`, which defines the rule), with their
alarms (:mod:`genad_fast.streaming.live`). The scores equal ``det.causal_decision_function(series, delay=...)``
of the whole series to float rounding: by default (``exact=False``, the lowest latency) an update's windows are
scored unpadded (one window's forward at chunk 1, not ``min_score_rows`` copies;
:mod:`~genad_fast.streaming.windows`). ``exact=True`` pads them as the batch call pads a short batch, for the same
bits on the CPU for the detectors whose window scores do not depend on the batch (docs/streaming.md lists the
tolerances of the others).

Memory: the last rows that a window still to come reads (at most W, :class:`~genad_fast.streaming.buffer.WindowBuffer`)
and the partial sums of the pending timestamps (at most W), whatever the stream's length; the chunk being scored;
the plans held for the stream; and, for SPOT/DSPOT, their peaks.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from genad_fast.streaming.buffer import WindowBuffer
from genad_fast.streaming.causal import CausalRule, PendingScores
from genad_fast.streaming.chunks import ChunkReader
from genad_fast.streaming.live import live_threshold
from genad_fast.streaming.scope import HeldScope
from genad_fast.streaming.windows import WindowScorer

__all__ = ["StreamOutput", "StreamScorer", "stream_rule"]


class StreamOutput(NamedTuple):
    """What :meth:`StreamScorer.update` and :meth:`~StreamScorer.flush` return, one entry per timestamp that
    became due, in order: its index in the stream (int64, counted from 0 at the first timestamp), its score
    (float64, higher = more anomalous, +inf where a window held an extreme value), the threshold it met
    (float64) and whether it raised an alarm (bool, ``score > threshold``)."""

    index: np.ndarray
    scores: np.ndarray
    alarms: np.ndarray
    thresholds: np.ndarray


def stream_rule(det: Any, delay: Any, stride: Any) -> CausalRule:
    """The causal rule of a stream of ``det`` (``stride=None``: the detector's own), with checked arguments."""
    W = det._window  # window="auto": the window it resolved to at fit
    S = det.stride if stride is None else stride
    for name, v in (("delay", delay), ("stride", S)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if not 1 <= S <= W:
        raise ValueError(f"stride must be in [1, window={W}], got {S}")
    if not 0 <= delay <= W - 1:
        raise ValueError(f"delay must be in [0, window - 1] = [0, {W - 1}] (window={W}), got {delay}")
    return CausalRule(W, int(S), int(delay))


class StreamScorer:
    """A stateful scorer of one stream (one thread at a time); made by ``det.stream(...)``, see its docstring."""

    def __init__(self, det: Any, *, delay: int = 0, reduce: str | None = None, stride: int | None = None,
                 threshold: Any = None, calibration: Any = None, exact: bool = False) -> None:
        if not isinstance(exact, bool):
            raise TypeError(f"exact must be a bool, got {type(exact).__name__}")
        det._check_fitted()
        det._check_params(scoring=True)
        if not det.is_series:
            raise ValueError(f"{type(det).__name__} was fitted on tabular rows (window=None): a stream needs a series "
                             f"model; score rows as they come with decision_function(rows)")
        self.detector = det
        self.rule = stream_rule(det, delay, stride)
        self.reduce = det.reduce if reduce is None else reduce
        self._pending = PendingScores(self.rule, self.reduce)
        dtype = det._data_dtype()
        self._buffer = WindowBuffer(self.rule, int(det.n_features_in_), dtype, det.device_)
        self._threshold = live_threshold(det, threshold, calibration)
        self._scope = HeldScope(det, dtype)
        self._score = WindowScorer(det, self._scope, exact)
        self._read = ChunkReader(det)
        self._flushed = False

    # ------------------------------------------------------------------ public
    @property
    def n_seen(self) -> int:
        """Timestamps received so far."""
        return self._buffer.end

    @property
    def n_emitted(self) -> int:
        """Timestamps scored and handed out so far."""
        return self._pending.start

    @property
    def threshold_(self) -> float:
        """The threshold the next due timestamp will meet (it moves with SPOT/DSPOT)."""
        return self._threshold.threshold_

    def buffered(self) -> dict[str, int]:
        """What the stream holds: rows of the window buffer and pending timestamps (both at most W)."""
        return {"rows": int(self._buffer.rows.shape[0]), "pending": int(self._pending.acc.size)}

    def update(self, chunk: Any) -> StreamOutput:
        """Take the next timestamps; return every timestamp that became due (possibly none)."""
        self._check_open()
        z, extreme = self._read(chunk)
        j0, windows, holds = self._buffer.push(z, extreme)
        self._pending.extend(z.shape[0])
        if windows.shape[0]:
            self._pending.add(j0, self._score(windows), holds)
        return self._output(*self._pending.pop_due(self._buffer.end))

    def flush(self) -> StreamOutput:
        """End the stream: score the timestamps still pending (and the end-aligned window, if off the grid) and
        return them. The stream takes no more updates."""
        self._check_open()
        T, W = self._buffer.end, self.rule.W
        if T < W:
            raise ValueError(f"the stream ended after {T} timestamps, fewer than window={W}: no window holds them "
                             f"(a series shorter than the window cannot be scored)")
        self._flushed = True
        if self.rule.needs_tail(T):
            window, holds = self._buffer.tail()
            self._pending.add_tail(self._score(window)[0], holds)
        self._scope.values.clear()  # the plans held for the stream (a packed reference set) go now, not at GC
        return self._output(*self._pending.pop_due(None))

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._flushed:
            raise ValueError("this stream was flushed (ended); open a new one with det.stream()")

    def _output(self, index: np.ndarray, scores: np.ndarray) -> StreamOutput:
        self.detector._check_scores(scores)
        thresholds, alarms = self._threshold.run(scores)
        return StreamOutput(index, scores, alarms, thresholds)

    def __repr__(self) -> str:
        r = self.rule
        return (f"StreamScorer({type(self.detector).__name__}, window={r.W}, stride={r.S}, delay={r.delay}, "
                f"reduce={self.reduce!r}, seen={self.n_seen}, emitted={self.n_emitted})")
