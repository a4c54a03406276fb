"""The rows a stream keeps: the last timestamps that a window still to come will read, never the history.

After each push the buffer holds the rows from the start of the next grid window on (at most ``W - 1`` of
them), and with ``S > 1`` the last ``W`` rows (the end-aligned window that ``flush`` may score), with their
extreme-value flags. :meth:`WindowBuffer.push` returns the grid windows that the new rows completed, as views
of the buffer laid out as the batch path's windows are (one contiguous ``[n, C]`` tensor, ``unfold``).
"""
from __future__ import annotations

import numpy as np
import torch

from genad_fast.streaming.causal import CausalRule

__all__ = ["WindowBuffer"]


class WindowBuffer:
    """Rows ``start .. start + len - 1`` of the stream (normalised, the model's dtype) and their extreme flags."""

    def __init__(self, rule: CausalRule, channels: int, dtype: torch.dtype, device: torch.device) -> None:
        self.rule = rule
        self.rows = torch.empty(0, channels, dtype=dtype, device=device)
        self.extreme = np.zeros(0, dtype=bool)
        self.start = 0          # stream index of rows[0]
        self.next_window = 0    # the first grid window not yet complete
        self._any_extreme = False  # whether a row kept is flagged

    @property
    def end(self) -> int:
        """Timestamps received so far."""
        return self.start + self.rows.shape[0]

    def push(self, z: torch.Tensor, extreme: np.ndarray | None) -> tuple[int, torch.Tensor, np.ndarray]:
        """Append rows ``z`` ``[n, C]``; return ``(j0, windows [m, W, C], holds_extreme [m])``: the grid windows
        ``j0 .. j0 + m - 1`` completed by them (``m`` may be 0), as views valid until the next push."""
        W, S = self.rule.W, self.rule.S
        self.rows = torch.cat((self.rows, z)) if self.rows.shape[0] else z.contiguous()
        if extreme is not None or self._any_extreme:
            flags = extreme if extreme is not None else np.zeros(z.shape[0], dtype=bool)
            self.extreme = np.concatenate([self.extreme, flags])
            self._any_extreme = bool(self.extreme.any())
        else:  # nothing flagged in the rows kept: no per-row flags to carry (the common case, and cheaper)
            self.extreme = np.zeros(self.rows.shape[0], dtype=bool)
        j0, j1 = self.next_window, self.rule.n_grid(self.end)
        first = j0 * S - self.start  # row of window j0
        if j1 > j0:
            # sliding_windows' view (unfold, then the window dimension second), without its argument checks
            windows = self.rows[first:first + (j1 - j0 - 1) * S + W].unfold(0, W, S).transpose(1, 2)
            holds = self._holds_extreme(first + np.arange(j1 - j0) * S) if self._any_extreme else \
                np.zeros(j1 - j0, dtype=bool)
        else:
            windows = self.rows.new_empty((0, W, self.rows.shape[1]))
            holds = np.zeros(0, dtype=bool)
        self.next_window = j1
        self._trim()
        return j0, windows, holds

    def tail(self) -> tuple[torch.Tensor, bool]:
        """The end-aligned window ``[end - W, end - 1]`` as ``[1, W, C]``, and whether it holds an extreme value."""
        W = self.rule.W
        first = self.end - W - self.start
        return self.rows[first:].unsqueeze(0), bool(self._holds_extreme(np.array([first]))[0])

    def _holds_extreme(self, firsts: np.ndarray) -> np.ndarray:
        if not self.extreme.any():
            return np.zeros(firsts.size, dtype=bool)
        csum = np.concatenate([[0], np.cumsum(self.extreme)])
        return (csum[firsts + self.rule.W] - csum[firsts]) > 0

    def _trim(self) -> None:
        """Drop the rows no window to come reads: keep from the next grid window's start (and, for ``S > 1``,
        the last ``W`` rows, for the end-aligned window)."""
        W, S = self.rule.W, self.rule.S
        keep = self.next_window * S
        if S > 1:
            keep = min(keep, self.end - W)
        drop = keep - self.start
        if drop > 0:
            rows = self.rows[drop:]
            # a copy when the storage holds more than W rows: a view would keep it alive (the next cat copies the
            # rows anyway, so a view of a storage of at most W rows costs nothing)
            self.rows = rows.clone() if self.rows.shape[0] > W else rows
            self.extreme = self.extreme[drop:].copy()
            self._any_extreme = self._any_extreme and bool(self.extreme.any())
            self.start = keep
