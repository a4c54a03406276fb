"""genad_fast.thresholds: GPD fit, POT quantiles, SPOT/DSPOT streams, best F1, and detectors' threshold=."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import genpareto
from sklearn.base import clone

import genad_fast
from genad_fast import metrics
from genad_fast.detectors import NotFittedError
from genad_fast.thresholds import (
    BestF1Threshold,
    ContaminationThreshold,
    DSPOTThreshold,
    FixedThreshold,
    POTThreshold,
    SPOTThreshold,
    finite_quantile,
    fit_gpd,
    make_threshold,
    pot_quantile,
)


# ---------------------------------------------------------------------------------------------- GPD fit
@pytest.mark.parametrize("shape", [0.4, 0.1, 0.0, -0.2, -0.6])
@pytest.mark.parametrize("n", [200, 2000])
def test_fit_gpd_likelihood_at_least_scipy(shape, n):
    rng = np.random.default_rng(int(1000 * (shape + 1)) + n)
    y = genpareto.rvs(shape, scale=2.0, size=n, random_state=rng)
    g, s = fit_gpd(y)
    c_sp, _, s_sp = genpareto.fit(y, floc=0)
    mine = genpareto.logpdf(y, g, scale=s).sum()
    theirs = genpareto.logpdf(y, c_sp, scale=s_sp).sum()
    assert np.isfinite(mine)
    assert mine >= theirs - 1e-6 * n


@pytest.mark.parametrize("shape", [0.3, 0.0, -0.3])
def test_fit_gpd_recovers_parameters(shape):
    y = genpareto.rvs(shape, scale=1.5, size=20000, random_state=np.random.default_rng(5))
    g, s = fit_gpd(y)
    assert g == pytest.approx(shape, abs=0.03)
    assert s == pytest.approx(1.5, rel=0.04)


def test_fit_gpd_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        fit_gpd([1.0])
    with pytest.raises(ValueError, match="> 0"):
        fit_gpd([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        fit_gpd([1.0, np.nan, 2.0])


def test_pot_quantile_hand_worked():
    # t = 1, n = 1000, N_t = 50, q = 0.01: q n / N_t = 0.2
    assert pot_quantile(1.0, 0.0, 2.0, 0.01, 1000, 50) == pytest.approx(1.0 - 2.0 * math.log(0.2))
    assert pot_quantile(1.0, 0.5, 2.0, 0.01, 1000, 50) == pytest.approx(1.0 + 4.0 * (0.2 ** -0.5 - 1.0))


# ---------------------------------------------------------------------------------------------- POT
def test_pot_exponential_quantile():
    x = np.random.default_rng(0).exponential(size=200_000)
    pot = POTThreshold(q=1e-4).fit(x)
    assert pot.threshold_ == pytest.approx(-math.log(1e-4), rel=0.06)  # 9.21: 200x beyond the 98% level
    assert pot.t_ == pytest.approx(np.quantile(x, 0.98))
    assert pot.n_peaks_ == int((x > pot.t_).sum()) and pot.n_ == x.size
    assert abs(pot.gamma_) < 0.05  # exponential tail


def test_pot_gpd_tail_quantile():
    shape = 0.2
    x = genpareto.rvs(shape, size=200_000, random_state=np.random.default_rng(1))
    pot = POTThreshold(q=1e-4, level=0.98).fit(x)
    assert pot.threshold_ == pytest.approx(genpareto.ppf(1 - 1e-4, shape), rel=0.10)  # 26.5


def test_pot_flags_about_q_of_fresh_data():
    rng = np.random.default_rng(2)
    q = 1e-3
    thr = POTThreshold(q=q).fit(rng.normal(size=200_000)).threshold_
    rate = float((rng.normal(size=200_000) > thr).mean())
    assert 0.7 * q < rate < 1.3 * q


def test_pot_errors():
    x = np.random.default_rng(3).normal(size=200)
    with pytest.raises(ValueError, match="at least 10"):
        POTThreshold().fit(x)  # 4 scores above the 98% quantile
    with pytest.raises(ValueError, match="q=0.1 must be below"):
        POTThreshold(q=0.1, level=0.9).fit(x)
    with pytest.raises(ValueError, match="level"):
        POTThreshold(level=1.0).fit(x)
    with pytest.raises(ValueError, match="q must be"):
        POTThreshold(q=0).fit(x)
    with pytest.raises(ValueError, match="NaN"):
        POTThreshold().fit(np.array([1.0, np.nan] * 500))


def test_contamination_and_fixed():
    x = np.random.default_rng(4).normal(size=1000)
    assert ContaminationThreshold(0.05).fit(x).threshold_ == np.quantile(x, 0.95)
    assert FixedThreshold(1.5).fit(x).threshold_ == 1.5
    with pytest.raises(ValueError, match="contamination"):
        ContaminationThreshold(0.7).fit(x)
    with pytest.raises(ValueError, match="empty"):
        ContaminationThreshold().fit(np.array([]))


# ---------------------------------------------------------------------------------------------- SPOT / DSPOT
def test_spot_stationary_stream_flags_about_q():
    rng = np.random.default_rng(0)
    q = 1e-3
    calib, stream = rng.exponential(size=5000), rng.exponential(size=30_000)
    spot = SPOTThreshold(q=q).fit(calib)
    assert spot.threshold_ == POTThreshold(q=q).fit(calib).threshold_  # calibration is POT
    out = spot.run(stream)
    assert out.thresholds.shape == stream.shape and out.alarms.dtype == bool
    assert np.array_equal(out.alarms, stream > out.thresholds)
    # About q, biased upwards: alarms are kept out of the tail fit (as they must be, so anomalies do not
    # inflate it), which truncates the tail and lowers z_q (measured 1.7x-3.1x q over four seeds).
    assert 0.3 * q < out.alarms.mean() < 4 * q
    assert abs(spot.threshold_ - (-math.log(q))) < 1.5  # 6.9


def test_spot_flags_spikes_and_keeps_them_out_of_the_tail():
    rng = np.random.default_rng(1)
    spot = SPOTThreshold(q=1e-3).fit(rng.normal(size=5000))
    stream = rng.normal(size=3000)
    spikes = np.array([500, 1500, 2500])
    stream[spikes] += 8.0
    peaks_before = spot.n_peaks_
    out = spot.run(stream)
    assert out.alarms[spikes].all()
    normal_peaks = int(((stream > spot.t_) & ~out.alarms).sum())
    assert spot.n_peaks_ == peaks_before + normal_peaks
    assert spot.n_ == 5000 + int((~out.alarms).sum())


def test_spot_state_carries_over_between_runs():
    rng = np.random.default_rng(2)
    calib, stream = rng.normal(size=4000), rng.normal(size=2000)
    a = SPOTThreshold(q=1e-3).fit(calib)
    whole = a.run(stream)
    b = SPOTThreshold(q=1e-3).fit(calib)
    parts = np.concatenate([b.run(stream[:700]).thresholds, b.run(stream[700:]).thresholds])
    np.testing.assert_array_equal(whole.thresholds, parts)


def test_dspot_follows_drift():
    rng = np.random.default_rng(3)
    q = 1e-3
    calib = rng.normal(size=3000)
    drift = np.linspace(0.0, 10.0, 20_000)
    stream = rng.normal(size=20_000) + drift
    spikes = np.arange(1000, 20_000, 2000)
    stream[spikes] += 8.0
    dspot = DSPOTThreshold(depth=10, q=q).fit(calib).run(stream)
    # a threshold on the calibration level flags most of the drifted stream
    assert (stream > POTThreshold(q=q).fit(calib).threshold_).mean() > 0.5
    normal = np.ones(stream.size, dtype=bool)
    normal[spikes] = False
    assert dspot.alarms[normal].mean() < 5 * q
    assert dspot.alarms[spikes].all()
    rise = dspot.thresholds[-1000:].mean() - dspot.thresholds[:1000].mean()
    assert rise == pytest.approx(drift[-1000:].mean() - drift[:1000].mean(), abs=0.5)


def test_dspot_fit_and_errors():
    x = np.random.default_rng(4).normal(size=2000)
    d = DSPOTThreshold(depth=5, q=1e-3).fit(x)
    assert d.threshold_ == pytest.approx(x[-5:].mean() + d.z_)
    local = np.array([x[i - 5:i].mean() for i in range(5, x.size)])
    assert d.z_ == pytest.approx(POTThreshold(q=1e-3).fit(x[5:] - local).threshold_)
    with pytest.raises(ValueError, match="depth"):
        DSPOTThreshold(depth=0).fit(x)
    with pytest.raises(ValueError, match="more than depth"):
        DSPOTThreshold(depth=10).fit(x[:10])
    with pytest.raises(ValueError, match="not fitted"):
        DSPOTThreshold().run(x)
    with pytest.raises(ValueError, match="not fitted"):
        SPOTThreshold().run(x)


# ---------------------------------------------------------------------------------------------- best F1
def test_best_f1_threshold_on_labels():
    rng = np.random.default_rng(5)
    y = (rng.random(500) < 0.1).astype(int)
    s = rng.normal(size=500) + 2.5 * y
    b = BestF1Threshold().fit(s, y)
    ref = metrics.best_f1(y, s)
    assert b.threshold_ == ref["threshold"] and b.f1_ == ref["f1"]
    pred = (s > b.threshold_).astype(int)
    tp = int((pred * y).sum())
    assert 2 * tp / (pred.sum() + y.sum()) == pytest.approx(b.f1_)
    with pytest.raises(ValueError, match="needs labels"):
        BestF1Threshold().fit(s)


# ---------------------------------------------------------------------------------------------- objects
def test_threshold_params_and_make_threshold():
    p = POTThreshold(q=1e-3)
    assert p.get_params() == {"q": 1e-3, "level": 0.98}
    assert p.set_params(level=0.95) is p and p.level == 0.95
    assert repr(p) == "POTThreshold(q=0.001, level=0.95)"
    with pytest.raises(ValueError, match="invalid parameter"):
        p.set_params(depth=3)
    assert DSPOTThreshold(depth=7).get_params() == {"depth": 7, "q": 1e-4, "level": 0.98}
    fresh = make_threshold(p)
    assert type(fresh) is POTThreshold and fresh is not p and fresh.get_params() == p.get_params()
    assert isinstance(make_threshold(None, 0.2), ContaminationThreshold)
    assert make_threshold(None, 0.2).contamination == 0.2
    assert isinstance(make_threshold(2), FixedThreshold)
    for bad in ("nope", float("nan"), True, object()):
        with pytest.raises(ValueError, match="threshold"):
            make_threshold(bad)


# ---------------------------------------------------------------------------------------------- detectors
def _rows(n=2000, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_detector_threshold_variants(gauss_cls):
    X = _rows()
    base = gauss_cls(contamination=0.05, verbose=False).fit(X)
    s = base.decision_scores_
    assert base.threshold is None
    assert base.threshold_ == pytest.approx(np.quantile(s, 0.95))
    same = gauss_cls(contamination=0.05, threshold="contamination", verbose=False).fit(X)
    assert same.threshold_ == base.threshold_
    fixed = gauss_cls(threshold=3.0, verbose=False).fit(X)
    assert fixed.threshold_ == 3.0
    assert np.array_equal(fixed.predict(X), (s > 3.0).astype(np.int64))
    pot = gauss_cls(threshold="pot", verbose=False).fit(X)
    assert pot.threshold_ == POTThreshold().fit(s).threshold_
    assert pot.threshold_ > np.quantile(s, 0.999)  # q = 1e-4 lies beyond the training scores' 99.9%
    assert gauss_cls(threshold="spot", verbose=False).fit(X).threshold_ == pot.threshold_
    dspot = gauss_cls(threshold="dspot", verbose=False).fit(X)
    assert dspot.threshold_ == DSPOTThreshold().fit(s).threshold_
    rule = POTThreshold(q=1e-3, level=0.95)
    obj = gauss_cls(threshold=rule, verbose=False).fit(X)
    assert obj.threshold_ == POTThreshold(q=1e-3, level=0.95).fit(s).threshold_
    assert not hasattr(rule, "threshold_")  # the parameter is not fitted in place


def test_detector_threshold_on_series(gauss_cls, series):
    det = gauss_cls(window=16, threshold="pot", verbose=False).fit(series.train)
    assert det.threshold_ == POTThreshold().fit(det.decision_scores_).threshold_


@pytest.mark.parametrize("bad, match", [
    ("nope", "threshold must be"),
    (float("nan"), "finite"),
    (True, "threshold must be"),
    ("best_f1", "set_threshold"),
    (BestF1Threshold(), "set_threshold"),
])
def test_detector_bad_threshold(gauss_cls, bad, match):
    det = gauss_cls(threshold=bad, verbose=False)
    with pytest.raises(ValueError, match=match):
        det.fit(_rows(300))
    assert not hasattr(det, "threshold_")


def test_detector_pot_on_too_few_rows_says_why(gauss_cls):
    with pytest.raises(ValueError, match="at least 10"):
        gauss_cls(threshold="pot", verbose=False).fit(_rows(200))


def test_detector_threshold_clone_and_params(gauss_cls):
    det = gauss_cls(threshold=POTThreshold(q=1e-3), verbose=False)
    params = det.get_params(deep=True)
    assert params["threshold__q"] == 1e-3
    twin = clone(det)
    assert type(twin.threshold) is POTThreshold and twin.threshold is not det.threshold
    assert twin.threshold.get_params() == {"q": 1e-3, "level": 0.98}
    det.set_params(threshold__level=0.95)
    assert det.threshold.level == 0.95
    det.set_params(threshold="dspot")
    assert det.threshold == "dspot"
    assert "threshold" in repr(det)


@pytest.mark.parametrize("spec", ["pot", 2.5, POTThreshold(q=1e-3, level=0.97), DSPOTThreshold(depth=4, q=1e-3)])
def test_detector_save_load_keeps_threshold(registered_gauss, tmp_path, spec):
    X = _rows()
    det = registered_gauss(threshold=spec, verbose=False).fit(X)
    path = tmp_path / "m.pt"
    det.save(path)
    back = genad_fast.load(path)
    assert back.threshold_ == det.threshold_
    if isinstance(spec, (str, float)):
        assert back.threshold == spec
    else:
        assert type(back.threshold) is type(spec) and back.threshold.get_params() == spec.get_params()
    np.testing.assert_array_equal(back.predict(X), det.predict(X))


def test_detector_save_load_after_set_threshold(registered_gauss, tmp_path):
    det = registered_gauss(verbose=False).fit(_rows())
    det.set_threshold(_rows(seed=1), method=4.0)
    det.save(tmp_path / "m.pt")
    assert genad_fast.load(tmp_path / "m.pt").threshold_ == 4.0


def test_set_threshold_on_held_out_data(gauss_cls):
    X = _rows()
    det = gauss_cls(contamination=0.05, verbose=False).fit(X)
    rng = np.random.default_rng(9)
    val = rng.normal(size=(1000, 3)).astype(np.float32)
    y = np.zeros(1000, dtype=int)
    y[:50] = 1
    val[:50] += 3.0
    s_val = det.decision_function(val)
    # labels given: best F1 on them
    assert det.set_threshold(val, y) is det
    assert det.threshold_ == metrics.best_f1(y, s_val)["threshold"]
    # no labels: the detector's own rule (contamination quantile) on the held-out scores
    det.set_threshold(val)
    assert det.threshold_ == pytest.approx(np.quantile(s_val, 0.95))
    det.set_threshold(val, method=POTThreshold(q=1e-3, level=0.95))
    assert det.threshold_ == POTThreshold(q=1e-3, level=0.95).fit(s_val).threshold_
    with pytest.raises(ValueError, match="y has 10 labels"):
        det.set_threshold(val, y[:10])
    with pytest.raises(ValueError, match="needs labels"):
        det.set_threshold(val, method="best_f1")
    with pytest.raises(NotFittedError):
        gauss_cls().set_threshold(val, y)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_fit_threshold(registered_gauss, tmp_path, capsys):
    import pandas as pd

    from genad_fast import cli

    pd.DataFrame(_rows(), columns=["a", "b", "c"]).to_csv(tmp_path / "train.csv", index=False)
    args = ["fit", "--detector", "toy-gauss", "--input", str(tmp_path / "train.csv"), "--quiet"]
    assert cli.main(args + ["--threshold", "pot", "--out", str(tmp_path / "pot.pt")]) == 0
    det = genad_fast.load(tmp_path / "pot.pt")
    assert det.threshold == "pot"
    assert det.threshold_ == POTThreshold().fit(det.decision_scores_).threshold_
    assert cli.main(args + ["--threshold", "2.5", "--out", str(tmp_path / "fixed.pt")]) == 0
    assert genad_fast.load(tmp_path / "fixed.pt").threshold_ == 2.5
    assert cli.main(args + ["--param", "threshold=dspot", "--out", str(tmp_path / "d.pt")]) == 0
    assert genad_fast.load(tmp_path / "d.pt").threshold == "dspot"
    capsys.readouterr()
    assert cli.main(args + ["--threshold", "nope", "--out", str(tmp_path / "x.pt")]) == 2
    assert "expected a number or one of contamination, pot, spot, dspot" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- +inf scores
def _normal_scores_with_infs(n=3000, n_inf=30, seed=11):
    """Exponential scores with ``n_inf`` of them set to +inf at random positions, and the finite rest."""
    rng = np.random.default_rng(seed)
    s = rng.exponential(size=n)
    s[rng.choice(n, size=n_inf, replace=False)] = np.inf
    return s, s[np.isfinite(s)]


@pytest.mark.parametrize("n_inf, level", [(1, 0.5), (3, 0.9), (10, 0.99), (10, 0.999), (50, 0.99), (100, 0.95)])
def test_finite_quantile_with_plus_inf(n_inf, level):
    """Below the +inf scores: numpy's quantile; reaching them (where numpy gives inf or NaN): the largest
    finite score, so ``score > threshold`` flags exactly the +inf scores."""
    s, finite = _normal_scores_with_infs(1000, n_inf)
    got = finite_quantile(s, level)
    assert math.isfinite(got)
    with np.errstate(invalid="ignore"):
        raw = np.quantile(s, level)
    if math.isfinite(raw):
        assert got == raw
    else:
        assert got == finite.max()
        assert np.array_equal(s > got, np.isinf(s))


def test_numpy_quantile_between_infs_is_nan():
    """Why finite_quantile exists: numpy interpolates inf - inf (and 0 * inf) into NaN."""
    with np.errstate(invalid="ignore"):
        assert math.isnan(np.quantile(np.array([0.0, 1.0, np.inf, np.inf]), 0.9))
    assert finite_quantile(np.array([0.0, 1.0, np.inf, np.inf]), 0.9) == 1.0


def test_contamination_with_plus_inf_scores():
    s, finite = _normal_scores_with_infs(1000, 5)
    thr = ContaminationThreshold(0.1).fit(s).threshold_
    assert thr == np.quantile(np.minimum(s, finite.max()), 0.9)  # the 5 +inf lie above the 90% quantile
    s2, finite2 = _normal_scores_with_infs(100, 30)  # 30% +inf: the 90% quantile lies among them
    thr2 = ContaminationThreshold(0.1).fit(s2).threshold_
    assert thr2 == finite2.max() and np.array_equal(s2 > thr2, np.isinf(s2))
    with pytest.raises(ValueError, match=r"all 4 scores are \+inf"):
        ContaminationThreshold(0.1).fit(np.full(4, np.inf))
    for bad, what in ((np.nan, "NaN"), (-np.inf, "-inf")):
        with pytest.raises(ValueError, match=f"1 {what} value.*index 2"):
            ContaminationThreshold(0.1).fit(np.array([0.0, 1.0, bad, 2.0]))


@pytest.mark.parametrize("cls", [POTThreshold, SPOTThreshold])
def test_pot_leaves_plus_inf_out_of_the_tail(cls):
    """+inf scores have no GPD likelihood: the tail is fitted on the finite scores, the threshold is finite."""
    s, finite = _normal_scores_with_infs()
    got, want = cls(q=1e-3).fit(s), cls(q=1e-3).fit(finite)
    assert math.isfinite(got.threshold_) and got.threshold_ == want.threshold_
    assert (got.n_, got.n_peaks_, got.n_inf_) == (want.n_, want.n_peaks_, 30)
    with pytest.raises(ValueError, match=r"\+inf"):
        cls().fit(np.full(50, np.inf))


def test_spot_stream_plus_inf_is_an_alarm_and_leaves_the_model_alone():
    rng = np.random.default_rng(12)
    calib, stream = rng.exponential(size=3000), rng.exponential(size=1000)
    with_inf = np.insert(stream, [100, 100, 700], np.inf)
    a, b = SPOTThreshold(q=1e-3).fit(calib), SPOTThreshold(q=1e-3).fit(calib)
    out_a, out_b = a.run(stream), b.run(with_inf)
    is_inf = np.isinf(with_inf)
    assert out_b.alarms[is_inf].all() and np.isfinite(out_b.thresholds).all()
    np.testing.assert_array_equal(out_b.thresholds[~is_inf], out_a.thresholds)
    assert (a.threshold_, a.n_, a.n_peaks_) == (b.threshold_, b.n_, b.n_peaks_)


def test_dspot_plus_inf_never_enters_the_window():
    """An +inf in the calibration or the stream would make the moving mean inf and the next deviation
    inf - inf = NaN; it is an alarm instead, kept out of the window (as DSPOT's run does with alarms)."""
    rng = np.random.default_rng(13)
    calib, stream = rng.normal(size=2000), rng.normal(size=800)
    calib_inf = np.insert(calib, [500, 1999], np.inf)
    got, want = DSPOTThreshold(depth=5, q=1e-3).fit(calib_inf), DSPOTThreshold(depth=5, q=1e-3).fit(calib)
    assert got.threshold_ == want.threshold_ and got.z_ == want.z_ and got.n_inf_ == 2
    out_want = want.run(stream)
    out_got = got.run(np.insert(stream, 400, np.inf))
    assert out_got.alarms[400] and np.isfinite(out_got.thresholds).all()
    np.testing.assert_array_equal(np.delete(out_got.thresholds, 400), out_want.thresholds)
    np.testing.assert_array_equal(np.delete(out_got.alarms, 400), out_want.alarms)
    with pytest.raises(ValueError, match="finite scores"):
        DSPOTThreshold(depth=5).fit(np.concatenate((np.ones(3), np.full(10, np.inf))))


def test_best_f1_and_fixed_thresholds_with_plus_inf():
    rng = np.random.default_rng(14)
    y = (rng.random(400) < 0.1).astype(int)
    s = rng.normal(size=400) + 2.0 * y
    s[np.flatnonzero(y)[:5]] = np.inf
    b = BestF1Threshold().fit(s, y)
    assert math.isfinite(b.threshold_) and (s[np.isinf(s)] > b.threshold_).all()
    assert b.f1_ == metrics.best_f1(y, s)["f1"]
    assert FixedThreshold(2.0).fit(s).threshold_ == 2.0


def test_detector_set_threshold_on_scores_with_plus_inf(gauss_cls):
    """set_threshold on held-out data whose scores hold +inf (the detectors' verdict on a 3e38 sentinel) gives a
    finite threshold that flags them, for every named rule and for best F1 with labels."""
    from genad_fast.detectors._extremes import ExtremeValueWarning

    x = _rows()
    det = gauss_cls(verbose=False).fit(x)
    held_x = _rows(seed=1)
    held_x[::97, 1] = 3e38  # an FLT_MAX-like missing-value sentinel: those rows score +inf
    with pytest.warns(ExtremeValueWarning):
        held_out = det.decision_function(held_x)
    sentinel = np.zeros(held_out.size, dtype=bool)
    sentinel[::97] = True
    assert np.array_equal(np.isinf(held_out), sentinel)
    for method in ("contamination", "pot", "spot", "dspot", 0.5):
        with pytest.warns(ExtremeValueWarning):
            det.set_threshold(held_x, method=method)
        assert math.isfinite(det.threshold_), method
        assert (held_out[sentinel] > det.threshold_).all(), method
    with pytest.warns(ExtremeValueWarning):
        det.set_threshold(held_x, sentinel.astype(int))
    assert math.isfinite(det.threshold_) and np.array_equal(held_out > det.threshold_, sentinel)
