"""Per-timestamp errors to per-timestamp scores through windows: the reduction of DiffusionDetector's
``score_reduction="window"`` (the same window-to-timestamp rule every window detector uses)."""
from __future__ import annotations

import torch

from genad_fast.series import windows_to_timestamps

__all__ = ["window_mean_scores"]


def window_mean_scores(errors: torch.Tensor, window: int, reduce: str = "mean") -> torch.Tensor:
    """``[T]`` errors to ``[T]`` scores: each window of ``window`` timestamps (stride 1) scores its mean error,

        e_w[j] = 1/W Σ_{s=j}^{j+W-1} e[s],     score[t] = reduce{ e_w[j] : j <= t < j + W },

    and :func:`genad_fast.series.windows_to_timestamps` combines the windows covering each timestamp. The window
    sums come from a float64 prefix sum (exact enough for any length, O(T)); the combination per timestamp is
    that function's sliding reduction, O(T·W). The result has the errors' dtype. ``window`` must be in [1, T]: a
    window longer than the series is the caller's error."""
    if errors.dim() != 1:
        raise ValueError(f"errors must be [T], got shape {tuple(errors.shape)}")
    T = errors.shape[0]
    if not 1 <= window <= T:
        raise ValueError(f"window must be in [1, T={T}], got {window}")
    prefix = torch.nn.functional.pad(errors.to(torch.float64).cumsum(0), (1, 0))
    means = ((prefix[window:] - prefix[:-window]) / window).to(errors.dtype)
    return windows_to_timestamps(means, T, window, 1, reduce)
