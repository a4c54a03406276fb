"""The causal reduction: which windows a timestamp's score combines when it must be given without the future.

Windows of ``W`` timestamps start on the grid ``0, S, 2S, ...`` counted from the stream's first timestamp; window
``j`` covers ``[jS, jS + W - 1]`` and *ends* at ``e_j = jS + W - 1``. The batch (centred) reduction of
:func:`genad_fast.series.windows_to_timestamps` combines every window covering ``t``, so ``t`` waits for the
window that starts at ``t``, ``W - 1`` timestamps later. With a ``delay`` ``d`` (``0 <= d <= W - 1``) the
timestamp is due sooner::

    first(t)   = end of the earliest-ending grid window that covers t  (W - 1 for t < W; t + (-(t - W + 1)) mod S after)
    h(t)       = max(t + d, first(t))                                   the horizon: t is due once h(t) has arrived
    score(t)   = reduce{ s_j[t - jS] : window j covers t and e_j <= h(t) }     (reduce = mean, max or min)

``s_j`` is window ``j``'s score (one value, or one per timestamp of the window). For ``S = 1``::

    timestamps       ... t-2  t-1   t   t+1  t+2 ...
    window ending t-1     [=============)                   } d = 0: t takes the one window ending at t
    window ending t          [=============]                }
    window ending t+1           [=============]             } d = 1: and the one ending at t+1
    window ending t+W-1                 [=============]     } d = W-1: every window covering t (batch, centred)

Edges, all following from the rule:

- the first ``W - 1`` timestamps have no window ending at or before them: ``first(t) = W - 1``, so they are due
  with the first window, and combine the windows covering them that end by ``max(t + d, W - 1)`` (at least the
  first window);
- with ``S > 1`` a timestamp between window ends waits for the next window end (``first(t)``), at most
  ``S - 1`` timestamps: its delay is at least that whatever ``d``;
- the end of the stream (``flush``, T timestamps in all): the timestamps still pending (``h(t) >= T``) combine
  the windows that ended, plus, when the grid's last window does not end at ``T - 1`` (``S`` does not divide
  ``T - W``), the end-aligned window ``[T - W, T - 1]``, as the batch reduction does; a stream of fewer than
  ``W`` timestamps has no window and cannot be scored.

``d = W - 1`` is the batch reduction exactly (to the summation order of the mean: see below) whenever ``S``
divides ``T - W`` (always for ``S = 1``); otherwise only the timestamp ``T - W`` differs (it was due before the
end-aligned window existed).

Arithmetic: float64, each timestamp's windows added in window order, one at a time
(``acc = acc + s_j``), so the result does not depend on how the windows arrive: a stream in chunks of any size
and one batch pass over the whole series give the same bits (:class:`PendingScores` is both). ``max`` and
``min`` are exact; the centred batch reduction (:func:`genad_fast.series.windows_to_timestamps`) sums in the
scores' own dtype and another order, so ``d = W - 1`` agrees with it to that rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genad_fast.series import REDUCTIONS

__all__ = ["CausalRule", "PendingScores", "causal_to_timestamps"]

#: Windows up to which :meth:`PendingScores.add` adds window by window (a slice each) instead of vectorised.
_FEW_WINDOWS = 8


@dataclass(frozen=True)
class CausalRule:
    """Window length ``W``, stride ``S`` and ``delay`` (see the module docstring), checked on construction."""

    W: int
    S: int = 1
    delay: int = 0

    def __post_init__(self) -> None:
        for name in ("W", "S", "delay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if self.W < 1 or not 1 <= self.S <= self.W:
            raise ValueError(f"need 1 <= stride <= window, got window={self.W}, stride={self.S}")
        if not 0 <= self.delay <= self.W - 1:
            raise ValueError(f"delay must be in [0, window - 1] = [0, {self.W - 1}], got {self.delay}")

    def first_end(self, t: np.ndarray) -> np.ndarray:
        """End of the earliest-ending grid window covering each ``t`` (int64)."""
        j = np.maximum(0, -(-(t - self.W + 1) // self.S))  # ceil((t - W + 1) / S), at least window 0
        return j * self.S + self.W - 1

    def horizon(self, t: np.ndarray) -> np.ndarray:
        """``h(t)``: the last timestamp whose arrival ``t`` waits for (nondecreasing in ``t``)."""
        return np.maximum(t + self.delay, self.first_end(t))

    def n_grid(self, T: int) -> int:
        """Grid windows that end within ``T`` timestamps."""
        return 0 if T < self.W else (T - self.W) // self.S + 1

    def needs_tail(self, T: int) -> bool:
        """Whether the end-aligned window ``[T - W, T - 1]`` is off the grid (scored at the end of a stream)."""
        return T >= self.W and (T - self.W) % self.S != 0


class PendingScores:
    """The partial reductions of the timestamps not yet due: one float64 accumulator and one count each.

    Timestamps ``start .. start + n - 1`` are pending (``n`` at most ``max(d, S - 1, W - 1) + 1`` in a stream:
    a timestamp is due once its horizon arrived). :meth:`add` takes the scores of the next grid windows,
    :meth:`add_tail` the end-aligned window, :meth:`pop_due` hands out the due timestamps (a prefix).
    """

    def __init__(self, rule: CausalRule, reduce: str) -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        self.rule, self.reduce = rule, reduce
        self._fill = {"mean": 0.0, "max": -np.inf, "min": np.inf}[reduce]
        self.start = 0
        # The pending timestamps' sums and counts are positions lo .. lo + n - 1 of two stores, so that a timestamp
        # arriving or becoming due is a write or an index move, not a new array (a stream does both per timestamp);
        # :meth:`extend` moves them to the front when the end is reached.
        self._acc = np.empty(0, dtype=np.float64)
        self._count = np.empty(0, dtype=np.int64)
        self._lo = 0
        self._n = 0
        # The same reduction of the windows' extreme-value flags (0 or +inf), from the first flagged window on:
        # a timestamp scores +inf where it is +inf (mean, max: a window holds one; min: all of them do), as
        # genad_fast.detectors._extremes.infinite_timestamps decides in batch.
        self.flags: np.ndarray | None = None

    @property
    def acc(self) -> np.ndarray:
        """The pending timestamps' partial reductions (float64 ``[n]``, a view: writes go to the store)."""
        return self._acc[self._lo:self._lo + self._n]

    @property
    def count(self) -> np.ndarray:
        """How many windows each pending timestamp has received (int64 ``[n]``, a view)."""
        return self._count[self._lo:self._lo + self._n]

    @property
    def end(self) -> int:
        """One past the last pending timestamp (the number of timestamps seen)."""
        return self.start + self._n

    def extend(self, n: int) -> None:
        """``n`` more timestamps arrived; they are pending."""
        if self._lo + self._n + n > self._acc.size:
            # 2·max(W, n) positions: the pending ones (at most W in a stream) and a chunk fit without a move
            size = 2 * max(self.rule.W, self._n + n)
            acc, count = np.empty(size), np.empty(size, dtype=np.int64)
            acc[:self._n], count[:self._n] = self.acc, self.count
            self._acc, self._count, self._lo = acc, count, 0
        at = self._lo + self._n
        self._acc[at:at + n] = self._fill
        self._count[at:at + n] = 0
        self._n += n
        if self.flags is not None:
            self.flags = np.concatenate([self.flags, np.full(n, self._fill)])

    def _start_flags(self) -> None:
        """The flag reduction from now on: the windows added so far held no extreme value (flag 0)."""
        self.flags = np.where(self.count > 0, 0.0, self._fill)

    def _combine(self, pos: np.ndarray, values: np.ndarray, flags: np.ndarray | None = None) -> None:
        targets = [(self.acc, values)] if flags is None else [(self.acc, values), (self.flags, flags)]
        for acc, v in targets:
            if self.reduce == "mean":
                acc[pos] = acc[pos] + v
            elif self.reduce == "max":
                acc[pos] = np.maximum(acc[pos], v)
            else:
                acc[pos] = np.minimum(acc[pos], v)
        self.count[pos] += 1

    def add(self, j0: int, values: np.ndarray, holds: np.ndarray | None = None) -> None:
        """Scores of grid windows ``j0 .. j0 + m - 1`` (float64 ``[m]`` or ``[m, W]``; every earlier window was
        added before), into the pending timestamps whose rule takes them; ``holds`` ``[m]``: which windows hold
        an extreme value. Each timestamp receives its windows in window order, one add at a time (pass ``r``
        adds the ``r``-th new window covering it)."""
        W, S = self.rule.W, self.rule.S
        m = values.shape[0]
        if m == 0:
            return
        if self.flags is None and holds is not None and holds.any():
            self._start_flags()
        flag_values = None if self.flags is None else \
            np.where(holds, np.inf, 0.0) if holds is not None else np.zeros(m)
        j1 = j0 + m
        lo, hi = max(self.start, j0 * S), min(self.end, (j1 - 1) * S + W)
        if lo >= hi:
            return
        if flag_values is None and m <= _FEW_WINDOWS:
            self._add_few(j0, values)
            return
        t = np.arange(lo, hi, dtype=np.int64)
        j_lo = np.maximum(j0, -(-(t - W + 1) // S))
        j_hi = np.minimum(np.minimum(j1 - 1, t // S), (self.rule.horizon(t) - W + 1) // S)
        pos = t - self.start
        for r in range(int((j_hi - j_lo).max(initial=-1)) + 1):
            j = j_lo + r
            ok = j <= j_hi
            if not ok.any():
                continue
            jj, tt = j[ok], t[ok]
            v = values[jj - j0] if values.ndim == 1 else values[jj - j0, tt - jj * S]
            self._combine(pos[ok], v, None if flag_values is None else flag_values[jj - j0])

    def _add_few(self, j0: int, values: np.ndarray) -> None:
        """:meth:`add` of a few windows (a stream's update), without extreme flags: window ``j`` goes to the
        timestamps ``[max(jS, t_min(j)), jS + W)`` that are pending, one slice each, windows in order (so each
        timestamp receives the same adds, in the same order, as in the vectorised pass). ``t_min(j)`` is the
        first timestamp whose horizon reaches ``e_j``: ``h`` is nondecreasing, and ``h(t) >= e_j`` holds from
        ``t = e_j - d`` (the delay) or from ``t = (j - 1)S + W`` (``t`` no longer covered by window ``j - 1``:
        window ``j`` is its first), whichever comes first; every ``t`` for window 0."""
        W, S, d = self.rule.W, self.rule.S, self.rule.delay
        start, end = self.start, self.end
        acc_all, count_all = self.acc, self.count
        per_timestamp = values.ndim == 2
        for k in range(values.shape[0]):
            j = j0 + k
            a = j * S
            t_min = 0 if j == 0 else min((j - 1) * S + W, a + W - 1 - d)
            lo, hi = max(a, t_min, start), min(a + W, end)
            if lo >= hi:
                continue
            v = values[k, lo - a:hi - a] if per_timestamp else values[k]
            acc = acc_all[lo - start:hi - start]
            if self.reduce == "mean":
                np.add(acc, v, out=acc)
            elif self.reduce == "max":
                np.maximum(acc, v, out=acc)
            else:
                np.minimum(acc, v, out=acc)
            count_all[lo - start:hi - start] += 1

    def n_due(self, arrived: int) -> int:
        """How many pending timestamps are due once ``arrived`` timestamps have arrived: ``t`` is due when
        ``h(t) <= arrived - 1``, i.e. ``t <= arrived - 1 - d`` and ``first(t) <= arrived - 1``; the latter holds up
        to the end ``e_J`` of the last grid window that ended (every ``t <= e_J`` is covered by a window ending
        by ``e_J``). ``h`` is nondecreasing, so the due timestamps are a prefix."""
        n_ended = self.rule.n_grid(arrived)
        if n_ended == 0:
            return 0
        last = min(arrived - 1 - self.rule.delay, (n_ended - 1) * self.rule.S + self.rule.W - 1)
        return int(min(max(0, last + 1 - self.start), self.acc.size))

    def add_tail(self, values: np.ndarray, holds: bool = False) -> None:
        """The end-aligned window ``[end - W, end - 1]`` (score ``[]``/``[1]`` or ``[W]``; ``holds``: it holds an
        extreme value), into every pending timestamp (at the end of a stream all of them lie in it)."""
        W = self.rule.W
        pos = np.arange(self.acc.size)
        t = pos + self.start
        if t.size and t[0] < self.end - W:
            raise RuntimeError("a pending timestamp lies before the end-aligned window")  # the rule forbids it
        if holds and self.flags is None:
            self._start_flags()
        v = np.broadcast_to(values.reshape(-1), (W,)) if values.size == 1 else values.reshape(W)
        flag = None if self.flags is None else np.full(pos.size, np.inf if holds else 0.0)
        self._combine(pos, v[t - (self.end - W)], flag)

    def pop_due(self, arrived: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hand out (index, score) of the pending timestamps due once ``arrived`` timestamps have arrived (all of
        them with None: the end of the stream), and forget them."""
        n = self.acc.size if arrived is None else self.n_due(arrived)
        t = np.arange(self.start, self.start + n, dtype=np.int64)
        if n == 0:
            return t, self.acc[:0].copy()
        count = self.count[:n]
        if (count == 0).any():  # every due timestamp has its first covering window: a bug if not
            raise RuntimeError(f"timestamp {int(t[np.argmax(count == 0)])} is due but no window reached it")
        scores = self.acc[:n] / count if self.reduce == "mean" else self.acc[:n].copy()
        if self.flags is not None:
            scores[np.isposinf(self.flags[:n])] = np.inf
            self.flags = self.flags[n:].copy()
        self._lo += n
        self._n -= n
        self.start += n
        if self._acc.size > 4 * self.rule.W and self._n <= self.rule.W:  # after a long chunk: back to 2·W
            acc, count = np.empty(2 * self.rule.W), np.empty(2 * self.rule.W, dtype=np.int64)
            acc[:self._n], count[:self._n] = self.acc, self.count
            self._acc, self._count, self._lo = acc, count, 0
        return t[:n], scores


def causal_to_timestamps(scores: np.ndarray, T: int, W: int, S: int = 1, delay: int = 0,
                         reduce: str = "mean", holds: np.ndarray | None = None) -> np.ndarray:
    """Window scores of a whole series back to one per timestamp with the causal rule (module docstring):
    float64 ``[T]``. ``scores``: ``[n]`` or ``[n, W]`` in the order of :func:`genad_fast.series.window_starts`
    (the grid windows, then the end-aligned one if off the grid); ``holds`` ``[n]``: the windows holding an
    extreme value (+inf where the reduction of these flags is +inf). Equal, bit for bit, to a stream that
    receives the series in chunks of any sizes and is flushed at the end."""
    rule = CausalRule(int(W), int(S), int(delay))
    if T < W:
        raise ValueError(f"a series of {T} timestamps is shorter than window={W}")
    values = np.asarray(scores, dtype=np.float64)
    n_grid, tail = rule.n_grid(T), rule.needs_tail(T)
    if values.ndim not in (1, 2) or values.shape[0] != n_grid + tail or (values.ndim == 2 and values.shape[1] != W):
        raise ValueError(f"scores must be [{n_grid + tail}] or [{n_grid + tail}, {W}] for T={T}, window={W}, "
                         f"stride={S}; got {values.shape}")
    pending = PendingScores(rule, reduce)
    pending.extend(T)
    holds = np.zeros(values.shape[0], dtype=bool) if holds is None else np.asarray(holds, dtype=bool)
    pending.add(0, values[:n_grid], holds[:n_grid])
    _, head = pending.pop_due(T)  # what a stream hands out as the series arrives
    if tail:
        pending.add_tail(values[n_grid], bool(holds[n_grid]))
    _, rest = pending.pop_due(None)  # and at flush
    return np.concatenate([head, rest])
