"""Synthetic data: seeded, labelled where injected, every anomaly type present and visible."""
from __future__ import annotations

import numpy as np
import pytest

from genad_fast.datasets import ANOMALY_KINDS, make_series, make_tabular


def test_series_shapes_and_unpacking():
    data = make_series(T=1000, C=4, seed=3)
    train, test, labels = data
    assert train.shape == (500, 4) and test.shape == (500, 4) and labels.shape == (500,)
    assert train.dtype == np.float32 and set(np.unique(labels)) <= {0, 1}
    assert np.isfinite(train).all() and np.isfinite(test).all()


def test_series_is_seeded():
    a, b, c = make_series(T=800, seed=5), make_series(T=800, seed=5), make_series(T=800, seed=6)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.labels, b.labels) and a.anomalies == b.anomalies
    assert not np.array_equal(a.train, c.train)


def test_series_labels_are_exactly_the_events():
    data = make_series(T=3000, C=6, contamination=0.03, seed=1)
    want = np.zeros_like(data.labels)
    kinds = np.zeros_like(data.kinds)
    for ev in data.anomalies:
        assert want[ev.start:ev.stop].sum() == 0  # events do not overlap
        want[ev.start:ev.stop] = 1
        kinds[ev.start:ev.stop] = ANOMALY_KINDS[ev.kind]
    assert np.array_equal(want, data.labels) and np.array_equal(kinds, data.kinds)
    assert {ev.kind for ev in data.anomalies} == {"point", "contextual", "collective"}
    assert 0.5 * 0.03 < data.labels.mean() < 3 * 0.03


def test_series_anomalies_change_the_signal_where_labelled():
    with_anoms = make_series(T=2000, C=5, seed=2, dtype=np.float64)
    # The signal and noise are drawn before the anomalies: another anomaly plan with the same seed
    # leaves every timestamp that neither plan labels identical.
    other = make_series(T=2000, C=5, seed=2, dtype=np.float64, anomaly_types=("point",))
    untouched = (with_anoms.labels == 0) & (other.labels == 0)
    assert np.array_equal(with_anoms.test[untouched], other.test[untouched])
    assert np.array_equal(with_anoms.train, other.train)
    assert not np.allclose(with_anoms.test[with_anoms.labels == 1], other.test[with_anoms.labels == 1])
    for ev in with_anoms.anomalies:
        seg = with_anoms.test[ev.start:ev.stop]
        before = with_anoms.test[max(0, ev.start - 40):ev.start]
        if ev.kind == "point":
            spike = np.abs(seg[0] - before.mean(0)) / with_anoms.train.std(0)
            assert spike[list(ev.channels)].max() > 2.5
        elif ev.kind == "collective" and ev.detail == "frozen":
            assert np.all(seg == seg[0])
    # Values of a contextual anomaly stay in the channel's normal range
    lo, hi = with_anoms.train.min(0), with_anoms.train.max(0)
    for ev in with_anoms.anomalies:
        if ev.kind == "contextual":
            seg = with_anoms.test[ev.start:ev.stop][:, list(ev.channels)]
            span = (hi - lo)[list(ev.channels)]
            assert (seg >= lo[list(ev.channels)] - 0.1 * span).all()
            assert (seg <= hi[list(ev.channels)] + 0.1 * span).all()


@pytest.mark.parametrize("kind", ["point", "contextual", "collective"])
def test_series_single_type(kind):
    data = make_series(T=1200, anomaly_types=(kind,), seed=0)
    assert {ev.kind for ev in data.anomalies} == {kind}
    assert set(np.unique(data.kinds)) == {0, ANOMALY_KINDS[kind]}


def test_series_channels_are_correlated():
    train = make_series(T=4000, C=6, seed=4).train
    corr = np.corrcoef(train.T)
    off = np.abs(corr[~np.eye(6, dtype=bool)])
    assert off.max() > 0.5


def test_series_bad_arguments():
    with pytest.raises(ValueError, match="unknown anomaly_types entry 'spike'"):
        make_series(anomaly_types=("spike",))
    with pytest.raises(ValueError, match="do not fit"):
        make_series(T=200, period=64, contamination=0.4)
    with pytest.raises(ValueError, match="train_fraction"):
        make_series(train_fraction=1.0)


def test_tabular_seeded_labelled_outliers_are_far():
    a = make_tabular(n_train=500, n_test=400, n_features=5, contamination=0.1, seed=1)
    b = make_tabular(n_train=500, n_test=400, n_features=5, contamination=0.1, seed=1)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.labels, b.labels)
    train, test, labels = a
    assert train.shape == (500, 5) and test.shape == (400, 5) and labels.sum() == 40
    assert set(np.unique(a.kinds[labels == 1])) == {ANOMALY_KINDS["uniform"], ANOMALY_KINDS["shifted"]}
    # outliers are farther from their nearest training row than normal test rows are
    d = np.sqrt(((test[:, None, :] - train[None]) ** 2).sum(-1)).min(1)
    assert np.median(d[labels == 1]) > 2 * np.median(d[labels == 0])
