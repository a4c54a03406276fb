"""The containers every data set of genad_fast comes in, synthetic or real.

:class:`SeriesData` (a series task) and :class:`TabularData` (rows) unpack as ``train, test, labels``;
``kinds`` codes each test label by :data:`ANOMALY_KINDS`. The generators (:mod:`genad_fast.data.synthetic`)
and the loaders of real data (:mod:`genad_fast.data.ucr`, ``.tabular``, ``.files``) all build them, so they
live here, below both.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ANOMALY_KINDS", "Anomaly", "SeriesData", "TabularData"]

#: Codes of ``SeriesData.kinds`` / ``TabularData.kinds``: 0 is normal.
ANOMALY_KINDS = {"point": 1, "contextual": 2, "collective": 3, "uniform": 4, "shifted": 5, "trend": 6,
                 "frequency": 7, "labelled": 8}  # labelled: a real data set's labels (kind unknown)


@dataclass(frozen=True)
class Anomaly:
    """One injected anomaly: test rows ``start:stop`` of ``channels``; ``detail`` says how it was made."""

    kind: str
    start: int
    stop: int
    channels: tuple[int, ...]
    detail: str
    #: "single" (one channel, the others untouched), "correlated" (every channel, through the shared
    #: latent signals) or "subset" (several channels changed independently: the ``scope="mixed"``
    #: point and contextual events).
    scope: str = "subset"


@dataclass(frozen=True)
class SeriesData:
    """``train`` ``[T_train, C]`` (clean), ``test`` ``[T_test, C]``, ``labels`` ``[T_test]`` (1 = anomalous).

    Unpacks as ``train, test, labels = make_series(...)``. ``kinds`` holds the
    :data:`ANOMALY_KINDS` code of each test timestamp, ``anomalies`` the injected events.
    """

    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    anomalies: tuple[Anomaly, ...]
    params: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.train, self.test, self.labels))


@dataclass(frozen=True)
class TabularData:
    """``train`` ``[n_train, D]`` (clean), ``test`` ``[n_test, D]``, ``labels`` ``[n_test]``; unpacks as three."""

    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    params: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.train, self.test, self.labels))
