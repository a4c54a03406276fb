"""DiffusionDetector in a stream: each window a series of its own, the reverse chain's plan built once.

DiffusionDetector scores a whole series at once (:mod:`genad_fast.nn.diffusion.sampler`): k reverse steps of a
convolutional denoiser of receptive radius r, so a timestamp's score depends on the series up to k·r
timestamps ahead (hundreds), and each step's noise is laid out over the whole series ``[draws, C, T]`` (the
Philox counters depend on T). No stream that has not seen the end can give those scores. A stream scores it
by windows instead: window j (``W = window`` timestamps on the stride grid) is scored as the series it is,
alone, by the detector's own ``_score_series`` (its noise depends on its length only, so a window scores the
same in a stream, in a batch of windows, or passed alone to ``decision_function``), and the causal rule
(:mod:`genad_fast.streaming.causal`) combines the per-timestamp scores of the windows. Its batch counterpart
is ``causal_decision_function``; ``delay = W - 1`` is the centred reduction over those windows. A timestamp's
evidence is its windows: the latency of a stream is ``delay`` (at least the stride's wait), never the k·r
reach of the whole-series chain.

The plan of the chain (step coefficients, step embeddings, the denoiser's inference plan and its per-step
constants) depends on the fitted model, the schedule and the data dtype only, so :class:`CachedChainSampler`
builds it at the first update and reuses it; the tile groups and noise counters depend on how many windows an
update brings (its lengths), so the whole plan is kept per set of lengths too (a stream's updates bring a few
distinct counts: one window per update at stride 1 and chunk 1), at most :data:`MAX_LENGTH_PLANS` of them. The
stream installs the sampler as the detector's thread value ``"sampler"``, which ``DiffusionDetector._score_series``
uses instead of building one.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from genad_fast import ops
from genad_fast.nn.diffusion.sampler import ChainPlan, SeriesSampler, tile_groups

__all__ = ["CachedChainSampler", "held_sampler"]

#: Plans kept per set of lengths (beyond them the oldest goes: a stream of ever-changing chunk sizes stays bounded).
MAX_LENGTH_PLANS = 16
#: The detector classes whose ``_score_series`` takes a held sampler (import path).
DIFFUSION = {"genad_fast.detectors.diffusion:DiffusionDetector": None}


class CachedChainSampler(SeriesSampler):
    """A :class:`SeriesSampler` whose :meth:`plan_chain` keeps its plans: the parts that do not depend on the
    lengths once, the whole plan per set of lengths (:data:`MAX_LENGTH_PLANS` at most). A plan is only read by
    :meth:`~SeriesSampler.run_chain`, so one object serves every update with those lengths."""

    _cores: dict
    _plans: dict

    @classmethod
    def of(cls, sampler: SeriesSampler) -> "CachedChainSampler":
        """The same sampler (every attribute, whatever the detector set), with the plan cache and no progress
        bar (an update is short)."""
        out = cls.__new__(cls)
        out.__dict__.update(copy.copy(sampler.__dict__))
        out.progress = None
        out._cores, out._plans = {}, {}
        return out

    def plan_chain(self, state: torch.Tensor | list[torch.Tensor], taus: list[int]) -> ChainPlan:
        states = [state] if isinstance(state, torch.Tensor) else list(state)
        B, C, _ = states[0].shape
        key = (tuple(taus), B, C, states[0].dtype, states[0].device)
        lengths = tuple(s.shape[2] for s in states)
        plan = self._plans.get((key, lengths))
        if plan is not None:
            return plan
        core = self._cores.get(key)
        if core is None:
            core = self._cores[key] = super().plan_chain(states[:1], taus)
        plan = dataclasses.replace(core, groups=tile_groups(list(lengths), self.tile_size,
                                                            self.model.receptive_radius, self.tile_batch),
                                   counters=[ops.philox_counters(B * C * T) for T in lengths])
        if len(self._plans) >= MAX_LENGTH_PLANS:
            del self._plans[next(iter(self._plans))]  # the oldest (dicts keep insertion order)
        self._plans[(key, lengths)] = plan
        return plan


def held_sampler(det: Any) -> CachedChainSampler:
    """The detector's sampler for this call (call it inside the stream's held call), with the plan cached."""
    return CachedChainSampler.of(det._sampler())
