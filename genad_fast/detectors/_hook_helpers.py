"""What a detector's hooks use besides the data: seeded random streams, the call scope, progress bars, epoch logs.

Detectors never touch the process-global RNG (threads share it): every random draw comes from a generator
seeded from the detector's ``seed_`` and a name for its purpose (:func:`stream_seed`), so two uses of one seed
are independent and every thread, process and device draws the same numbers for the same seed.
"""
from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("genad_fast")

__all__ = ["HookHelpersMixin", "stream_seed"]


def stream_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for each named use of the detector's seed (SeedSequence spawn keys)."""
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(purpose.encode()),))
    hi, lo = (int(v) for v in ss.generate_state(2, np.uint32))
    return ((hi << 32) | lo) & ((1 << 63) - 1)


class HookHelpersMixin:
    """Helpers for the hooks of :class:`~genad_fast.detectors.base.BaseDetector` subclasses."""

    def _torch_generator(self, purpose: str = "fit", device: torch.device | str | None = None) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` (default ``device_``) seeded from ``seed_`` and ``purpose``."""
        g = torch.Generator(device=device if device is not None else self.device_)
        g.manual_seed(stream_seed(self.seed_, purpose))
        return g

    def _numpy_rng(self, purpose: str = "fit") -> np.random.Generator:
        """A numpy ``Generator`` seeded from ``seed_`` and ``purpose`` (independent of the torch streams)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed_, spawn_key=(zlib.crc32(purpose.encode()),)))

    def _call_scope(self, purpose: str) -> contextlib.AbstractContextManager:
        """One fit (``"fit"``) or scoring (``"score"``) call: its generators, the backend read once, what the
        hooks build for it, kept per thread (:mod:`genad_fast.detectors._call`). No global RNG is seeded,
        drawn from or restored: a fitted detector is shared between threads."""
        from genad_fast.detectors._call import call_scope

        return call_scope(self, purpose)

    def _progress(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                  long_only: bool = False, **kwargs: Any):
        """A tqdm bar over ``iterable`` (or a manual one), shown when ``verbose``.

        ``long_only=True`` (used for scoring) shows it only for more than one step and only once the
        work has taken half a second.
        """
        from tqdm.auto import tqdm

        disable = not self.verbose or (long_only and total is not None and total <= 1)
        if long_only:
            kwargs.setdefault("delay", 0.5)
        name = type(self).__name__
        return tqdm(iterable, total=total, desc=f"{name} {desc}" if desc else name, disable=disable,
                    leave=False, **kwargs)

    def _log_epoch(self, epoch: int, n_epochs: int | None = None, **metrics: float) -> None:
        """Log one training epoch at DEBUG level on the ``genad_fast`` logger: ``Name epoch 3/50: loss=...``."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        of = f"/{n_epochs}" if n_epochs is not None else ""
        parts = " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        logger.debug("%s epoch %d%s: %s", type(self).__name__, epoch, of, parts)
