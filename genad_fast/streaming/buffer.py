"""The rows a stream keeps: the last timestamps that a window still to come will read, never the history.

After each push the buffer holds the rows from the start of the next grid window on (at most ``W - 1`` of
them), and with ``S > 1`` the last ``W`` rows (the end-aligned window that ``flush`` may score), with their
extreme-value flags. :meth:`WindowBuffer.push` returns the grid windows that the new rows completed, as views
of the buffer laid out as the batch path's windows are (one contiguous ``[n, C]`` tensor, ``unfold``).

Storage: one tensor of :data:`CAPACITY_WINDOWS` · W rows (more while a chunk longer than that is pushed, shrunk
back after it), the rows kept at its front after a move; a push of a few rows is one copy into it, not a new
tensor (a stream pushes a row per timestamp). Extreme-value flags exist only while a row kept holds one.
"""
from __future__ import annotations

import numpy as np
import torch

from genad_fast.streaming.causal import CausalRule

__all__ = ["CAPACITY_WINDOWS", "WindowBuffer"]

#: The buffer's rows in windows (2: the W - 1 rows kept and at least W new ones fit without a move).
CAPACITY_WINDOWS = 2


class WindowBuffer:
    """Rows ``start .. start + len - 1`` of the stream (normalised, the model's dtype) and their extreme flags."""

    def __init__(self, rule: CausalRule, channels: int, dtype: torch.dtype, device: torch.device) -> None:
        self.rule = rule
        # contiguous, always (push's windows are a strided view of it)
        self._store = torch.empty(CAPACITY_WINDOWS * rule.W, channels, dtype=dtype, device=device)
        self._lo = 0            # row of the store holding stream index `start`
        self._n = 0             # rows kept
        self._flags: np.ndarray | None = None  # per kept row, only while one of them holds an extreme value
        self.start = 0          # stream index of rows[0]
        self.next_window = 0    # the first grid window not yet complete

    @property
    def rows(self) -> torch.Tensor:
        """The rows kept ``[n, C]`` (a view of the store, valid until the next push)."""
        return self._store[self._lo:self._lo + self._n]

    @property
    def extreme(self) -> np.ndarray:
        """Whether each kept row holds an extreme value ``[n]``."""
        return self._flags if self._flags is not None else np.zeros(self._n, dtype=bool)

    @property
    def end(self) -> int:
        """Timestamps received so far."""
        return self.start + self._n

    def push(self, z: torch.Tensor, extreme: np.ndarray | None) -> tuple[int, torch.Tensor, np.ndarray | None]:
        """Append rows ``z`` ``[n, C]``; return ``(j0, windows [m, W, C], holds_extreme [m] or None when no window
        holds one)``: the grid windows ``j0 .. j0 + m - 1`` completed by them (``m`` may be 0), as views valid
        until the next push."""
        W, S = self.rule.W, self.rule.S
        m = z.shape[0]
        self._make_room(m)
        self._store[self._lo + self._n:self._lo + self._n + m].copy_(z)
        if extreme is not None or self._flags is not None:
            new = extreme if extreme is not None else np.zeros(m, dtype=bool)
            self._flags = np.concatenate([self.extreme, new])
        self._n += m
        j0, j1 = self.next_window, self.rule.n_grid(self.end)
        first = j0 * S - self.start  # row of window j0
        holds = None
        if j1 > j0:
            # sliding_windows' view (unfold, then the window dimension second) as one strided view of the store
            C = self._store.shape[1]
            windows = self._store.as_strided((j1 - j0, W, C), (S * C, C, 1),
                                             self._store.storage_offset() + (self._lo + first) * C)
            if self._flags is not None:
                holds = self._holds_extreme(first + np.arange(j1 - j0) * S)
        else:
            windows = self._store.new_empty((0, W, self._store.shape[1]))
        self.next_window = j1
        self._trim()
        return j0, windows, holds

    def tail(self) -> tuple[torch.Tensor, bool]:
        """The end-aligned window ``[end - W, end - 1]`` as ``[1, W, C]``, and whether it holds an extreme value."""
        W = self.rule.W
        first = self.end - W - self.start
        holds = self._flags is not None and bool(self._holds_extreme(np.array([first]))[0])
        return self.rows[first:].unsqueeze(0), holds

    def _holds_extreme(self, firsts: np.ndarray) -> np.ndarray:
        csum = np.concatenate([[0], np.cumsum(self._flags)])
        return (csum[firsts + self.rule.W] - csum[firsts]) > 0

    def _make_room(self, m: int) -> None:
        """Room for ``m`` more rows after the kept ones: move them to the front of the store, or of a bigger one."""
        if self._lo + self._n + m <= self._store.shape[0]:
            return
        rows = self.rows
        capacity = max(CAPACITY_WINDOWS * self.rule.W, self._n + m)
        if capacity > self._store.shape[0]:
            store = self._store.new_empty((capacity, self._store.shape[1]))
            store[:self._n].copy_(rows)
            self._store = store
        else:
            self._store[:self._n] = rows.clone()  # the ranges may overlap
        self._lo = 0

    def _trim(self) -> None:
        """Drop the rows no window to come reads: keep from the next grid window's start (and, for ``S > 1``,
        the last ``W`` rows, for the end-aligned window); after a chunk that grew the store, shrink it back."""
        W, S = self.rule.W, self.rule.S
        keep = self.next_window * S
        if S > 1:
            keep = min(keep, self.end - W)
        drop = keep - self.start
        if drop > 0:
            self._lo += drop
            self._n -= drop
            self.start = keep
            if self._flags is not None:
                self._flags = self._flags[drop:].copy()
                if not self._flags.any():
                    self._flags = None
        if self._store.shape[0] > CAPACITY_WINDOWS * W and self._n < CAPACITY_WINDOWS * W:
            store = self._store.new_empty((CAPACITY_WINDOWS * W, self._store.shape[1]))
            store[:self._n].copy_(self.rows)
            self._store, self._lo = store, 0
