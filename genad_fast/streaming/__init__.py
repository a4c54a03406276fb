"""Scoring series as they arrive: ``det.stream()`` (docs/streaming.md).

- :mod:`~genad_fast.streaming.causal`: the causal reduction (which windows a timestamp combines, and when it is
  due) and its batch form;
- :mod:`~genad_fast.streaming.scorer`: :class:`StreamScorer` (``update``/``flush``) and :class:`StreamOutput`;
- :mod:`~genad_fast.streaming.batch`: ``causal_decision_function``, the same scores of a whole series;
- :mod:`~genad_fast.streaming.chunks`, :mod:`~genad_fast.streaming.buffer`, :mod:`~genad_fast.streaming.windows`,
  :mod:`~genad_fast.streaming.scope`, :mod:`~genad_fast.streaming.diffusion`: reading a chunk, the rows kept, the
  window scores, the call held between updates, DiffusionDetector's windows;
- :mod:`~genad_fast.streaming.live`: fixed, SPOT and DSPOT thresholds run on the scores as they come.
"""
from genad_fast.streaming.causal import CausalRule, PendingScores, causal_to_timestamps
from genad_fast.streaming.scorer import StreamOutput, StreamScorer

__all__ = ["CausalRule", "PendingScores", "StreamOutput", "StreamScorer", "causal_to_timestamps"]
