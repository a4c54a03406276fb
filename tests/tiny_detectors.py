"""Every registered detector at the smallest settings that still train (a fit well under a second on one
core), shared by tests/test_every_detector.py, the fuzz suite (tests/fuzz) and scripts/soak.py."""
from __future__ import annotations

from genad_fast.detectors import BaseDetector, detector_names, get_detector

#: Per registry name: constructor settings that make a fit tiny (defaults for the others).
TINY: dict[str, dict] = {
    "flow": dict(n_steps=2, hidden=16, n_blocks=1, epochs=3),
    "diffusion": dict(residual_channels=8, n_layers=2, dilation_cycle=2, embedding_dim=16, n_steps=10, epochs=2,
                      batch_size=64),
    "autoencoder": dict(hidden=(16,), epochs=3, min_steps=0),
    "vae": dict(hidden=(16,), epochs=3, min_steps=0),
    "deep_svdd": dict(hidden=(16,), epochs=3, pretrain_epochs=2, min_steps=0),
    # iforest keeps its default 100 trees: with 20, a 1e4-sigma spike in one feature scored below the threshold
    "lof": dict(n_neighbors=10),
    "anogan": dict(hidden=(16,), critic_hidden=(16,), encoder_hidden=(16,), epochs=2, min_steps=1, encoder_epochs=2,
                   iterations=5),
    "fanogan": dict(hidden=(16,), critic_hidden=(16,), encoder_hidden=(16,), epochs=2, min_steps=1, encoder_epochs=2),
    "dte": dict(hidden=(16, 16), epochs=5, lr=3e-3, n_steps=40, min_steps=0),
    "ensemble": dict(member_params={"flow": dict(n_steps=2, hidden=16, n_blocks=1, epochs=3),
                                    "dte": dict(hidden=(16, 16), epochs=3, n_steps=40, min_steps=0)}),
}
#: Detectors that only model series (window=None is refused at fit).
SERIES_ONLY = {"diffusion"}
#: The default series geometry of the shared tests.
WINDOW, STRIDE = 16, 4


def cases() -> list[tuple[str, str]]:
    """``(name, mode)`` for every registered detector: "tabular" (unless series-only) and "series"."""
    out = []
    for name in detector_names():
        if name not in SERIES_ONLY:
            out.append((name, "tabular"))
        out.append((name, "series"))
    return out


def make_detector(name: str, mode: str, window: int = WINDOW, stride: int = STRIDE, **overrides) -> BaseDetector:
    """A fresh tiny detector of registry name ``name`` in ``mode`` ("tabular" or "series")."""
    geometry = dict(window=None) if mode == "tabular" else dict(window=window, stride=stride)
    return get_detector(name)(verbose=False, **{**geometry, **TINY.get(name, {}), **overrides})
