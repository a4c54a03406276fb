"""Synthetic data: seeded, labelled where injected, every anomaly type present and visible."""
from __future__ import annotations

import numpy as np
import pytest

from genad_fast.datasets import ALL_SERIES_TYPES, ANOMALY_KINDS, SERIES_TYPES, make_series, make_tabular


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


# ---------------------------------------------------------------------------------------------- all kinds, scopes
def _base_and_diff(kind, scope, C=5):
    """The series with ``kind`` events, and |change| / channel std against the same seed's series without them."""
    kw = dict(T=4000, C=C, period=32, seed=7, dtype=np.float64)
    data = make_series(anomaly_types=(kind,), scope=scope, contamination=0.03, **kw)
    base = make_series(anomaly_types=("point",), contamination=0.001, **kw)  # a few points, elsewhere masked
    diff = np.abs(data.test - base.test) / data.train.std(0)
    diff[base.labels.astype(bool)] = np.nan
    return data, diff


# Largest |change| / channel std an event must reach (spikes 4-6 std, drifts to 3-5; a burst adds
# 0.3 std noise, so over 16 steps its largest draw is past 0.3 std with near certainty).
MIN_CHANGE = {"point": 3.0, "contextual": 0.8, "collective": 0.3, "trend": 2.5, "frequency": 0.8}


@pytest.mark.parametrize("scope", ["single", "correlated"])
@pytest.mark.parametrize("kind", ALL_SERIES_TYPES)
def test_series_every_kind_in_every_scope_changes_only_its_channels(kind, scope):
    data, diff = _base_and_diff(kind, scope)
    assert data.anomalies and {ev.kind for ev in data.anomalies} == {kind}
    assert set(np.unique(data.kinds)) == {0, ANOMALY_KINDS[kind]}
    outside = ~data.labels.astype(bool)
    assert np.nanmax(diff[outside]) == 0.0  # nothing changes off the labelled timestamps
    for ev in data.anomalies:
        assert ev.scope == scope
        seg = diff[ev.start:ev.stop]
        changed = np.flatnonzero(np.nanmax(seg, 0) > 1e-9)
        if scope == "single":
            assert len(ev.channels) == 1 and changed.tolist() == list(ev.channels)
        else:
            assert ev.channels == tuple(range(5)) and len(changed) == 5
        if not (kind == "collective" and ev.detail == "frozen"):  # a freeze may sit near the held value
            assert np.nanmax(seg) > MIN_CHANGE[kind], (ev, np.nanmax(seg))


@pytest.mark.parametrize("scope", ["single", "correlated"])
def test_series_trend_is_a_linear_drift(scope):
    kw = dict(T=4000, C=5, period=32, seed=7, dtype=np.float64)
    data = make_series(anomaly_types=("trend",), scope=scope, contamination=0.03, **kw)
    base = make_series(anomaly_types=("point",), contamination=0.001, **kw)
    for ev in data.anomalies:
        if base.labels[ev.start:ev.stop].any():
            continue
        d = (data.test - base.test)[ev.start:ev.stop][:, list(ev.channels)]
        steps = np.diff(d, axis=0)
        assert np.allclose(steps, steps[0], atol=1e-9)  # constant slope, per channel
        assert np.allclose(d[0], steps[0])  # starts from zero: ramp_i = end * (i + 1) / L
        assert np.abs(d[-1]).max() > 1.0


def test_series_frequency_change_keeps_values_in_range_and_phase_at_start():
    kw = dict(T=4000, C=4, period=32, seed=11, dtype=np.float64)
    data = make_series(anomaly_types=("frequency",), scope="correlated", contamination=0.03, **kw)
    base = make_series(anomaly_types=("point",), contamination=0.001, **kw)
    lo, hi = data.train.min(0), data.train.max(0)
    span = hi - lo
    for ev in data.anomalies:
        d = (data.test - base.test)[ev.start:ev.stop]
        assert np.abs(d[0]).max() < 1e-12  # phase continuous at the change point
        seg = data.test[ev.start:ev.stop]
        assert (seg >= lo - 0.25 * span).all() and (seg <= hi + 0.25 * span).all()
        assert "frequency" in ev.detail


def test_series_mixed_scope_draws_both_for_new_kinds_and_keeps_old_recipe():
    data = make_series(T=20000, C=4, period=32, anomaly_types=ALL_SERIES_TYPES, contamination=0.05, seed=0)
    assert {ev.kind for ev in data.anomalies} == set(ALL_SERIES_TYPES)
    new = [ev.scope for ev in data.anomalies if ev.kind in ("trend", "frequency")]
    assert set(new) == {"single", "correlated"}
    assert {ev.scope for ev in data.anomalies if ev.kind in SERIES_TYPES} == {"subset"}
    # the default is the original recipe: same arrays as scope="mixed" with the three original types
    a, b = make_series(T=1500, C=3, seed=4), make_series(T=1500, C=3, seed=4, scope="mixed",
                                                          anomaly_types=SERIES_TYPES)
    assert np.array_equal(a.test, b.test) and a.anomalies == b.anomalies
    assert a.params["anomaly_types"] == SERIES_TYPES


def test_series_one_channel_scoped_events():
    data = make_series(T=3000, C=1, period=32, anomaly_types=ALL_SERIES_TYPES, scope="correlated", seed=2)
    assert data.test.shape[1] == 1 and all(ev.channels == (0,) for ev in data.anomalies)
    assert {ev.scope for ev in data.anomalies} == {"single"}  # one channel has nothing to correlate with


def test_series_bad_scope():
    with pytest.raises(ValueError, match="scope must be one of mixed, single, correlated"):
        make_series(scope="all")
