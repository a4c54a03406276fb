"""Many series (or tables) in one call (issue #14, point 1), for EVERY registered detector.

- A collection (list, tuple, dict, long DataFrame with ``by=``; numpy, pandas and torch parts of different
  lengths: one window exactly, off-grid tails at stride 4) scores exactly as the per-series loop: bitwise on
  the CPU backend (``assert_array_equal``), every detector. That holds because a row's score does not depend on
  the batch it lands in: the stochastic scores draw keyed on the row (VAE, AnoGAN) or on the series' own length
  (diffusion), and batches smaller than ``min_score_rows`` are padded (BLAS rounds one- and two-row products
  differently).
- ``predict``, ``set_threshold``, ``fit_predict``, ``score_samples``, ``predict_proba`` follow the layout.
- ``fit`` on a collection: the normaliser is the one of the concatenated rows; ``_fit_model`` gets the grid
  windows of each series and none across a boundary; ``decision_scores_`` is the concatenation of the parts'
  training scores; a tabular collection fits exactly as the concatenated table.
- Extreme values in one series make +inf there only; bad parts are errors that name them.
- Packing: one ``_score_model`` call for many short series, one flow plan and one diffusion network plan per
  call, fewer network calls than the loop; threads sharing a fitted model score collections correctly.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from genad_fast.detectors import get_detector
from genad_fast.detectors._extremes import ExtremeValueWarning
from genad_fast.series import Normalizer, sliding_windows
from tiny_detectors import STRIDE, TINY, WINDOW, cases, make_detector

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE_SET = {"kde", "knn", "lof"}  # leave-one-out training scores (their decision_scores_ are not rescored)
#: Fit hands the (normalised) series to member detectors, which window them: no _fit_model of its own to watch
#: (each member's windows are checked in its own case). Its training scores combine the members' own, kNN's
#: leave-one-out ones among them, so they are not rescored either.
MEMBERS = {"ensemble"}
#: Equal to rounding only, not bitwise, with the reason. The others are bitwise.
ROUNDING_ONLY = {
    # Their networks have products with fewer than four output columns (the latent code or the SVDD code:
    # 2 here), and MKL's float32 GEMM rounds such narrow products differently by the number of rows in the
    # batch (test_why_some_detectors_agree_to_rounding_only shows it on ATen's own mm).
    "vae": 1e-6, "deep_svdd": 1e-6, "fanogan": 1e-6,
    # the same for DTE's output product (n_bins = 7 columns), and the ensemble, which averages DTE's scores
    "dte": 1e-6, "ensemble": 1e-6,
    # the same, and its latent search follows the gradient: a one-ulp change can move its end point a little
    "anogan": 1e-5,
    # scikit-learn's IsolationForest averages path lengths in float64 in an order that depends on the batch
    "iforest": 1e-12,
    # scikit-learn's OneClassSVM: float64 rounding that depends on the batch on some CPUs (4e-16 on an AMD EPYC,
    # family 25, AVX2; bitwise on a Sapphire Rapids Xeon)
    "ocsvm": 1e-12,
}
COLS = {"series": ["a", "b", "c"], "tabular": ["a", "b", "c", "d"]}
#: Series lengths: exactly one window, an off-grid tail ((37 - 16) % 4 = 1), on the grid, a long one.
SERIES_LENGTHS = (WINDOW, 37, 28, 81)
TABLE_ROWS = (1, 7, 30)


def _exact16(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a * 64.0) / 64.0, -4.0, 4.0)


def series_data(T: int, seed: int, C: int = 3) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return _exact16(np.sin(2 * np.pi * t / 25 + np.arange(C) + seed) + 0.1 * rng.normal(size=(T, C)))


def tabular_data(n: int, seed: int, d: int = 4) -> np.ndarray:
    return _exact16(np.random.default_rng(seed).normal(size=(n, d)))


def parts_of(mode: str, base_seed: int = 10) -> list[np.ndarray]:
    if mode == "series":
        return [series_data(T, base_seed + i) for i, T in enumerate(SERIES_LENGTHS)]
    return [tabular_data(n, base_seed + i) for i, n in enumerate(TABLE_ROWS)]


def mixed_types(parts: list[np.ndarray], mode: str) -> list:
    """numpy (float64), a named DataFrame, a float32 torch tensor, a Fortran-order float32 array, ..."""
    kinds = [lambda p: p, lambda p: pd.DataFrame(p, columns=COLS[mode]), lambda p: torch.from_numpy(p).float(),
             lambda p: np.asfortranarray(p.astype(np.float32))]
    return [kinds[i % len(kinds)](p) for i, p in enumerate(parts)]


_FITTED: dict = {}


def fitted(name: str, mode: str):
    """One tiny fit per (detector, mode), on a named DataFrame; shared, never changed by the tests."""
    if (name, mode) not in _FITTED:
        train = series_data(300, 0) if mode == "series" else tabular_data(200, 0)
        _FITTED[name, mode] = make_detector(name, mode, device="cpu").fit(pd.DataFrame(train, columns=COLS[mode]))
    return _FITTED[name, mode]


@pytest.fixture(params=cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def case(request):
    name, mode = request.param
    return name, mode, fitted(name, mode)


# ------------------------------------------------------------------------------------------- same as the loop
def assert_same(name: str, got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    if name in ROUNDING_ONLY:
        np.testing.assert_allclose(got, want, rtol=ROUNDING_ONLY[name], atol=ROUNDING_ONLY[name], err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def test_a_collection_scores_as_the_per_series_loop(case):
    name, mode, det = case
    parts = mixed_types(parts_of(mode), mode)
    loop = [det.decision_function(p) for p in parts]
    got = det.decision_function(parts)
    assert isinstance(got, list) and len(got) == len(parts)
    for i, (g, want) in enumerate(zip(got, loop)):
        assert g.dtype == np.float64 and g.shape == want.shape == (len(parts[i]),)
        assert_same(name, g, want, f"{name}/{mode}: part {i}")
    as_tuple = det.decision_function(tuple(parts))
    as_dict = det.decision_function({f"s{i}": p for i, p in enumerate(parts)})
    assert list(as_dict) == [f"s{i}" for i in range(len(parts))]
    for i, want in enumerate(loop):
        np.testing.assert_array_equal(as_tuple[i], got[i])
        np.testing.assert_array_equal(as_dict[f"s{i}"], got[i])


def test_why_some_detectors_agree_to_rounding_only():
    """The float32 GEMM may round a row of a narrow product (2 output columns) differently by its batch (MKL on a
    Sapphire Rapids Xeon does; on an AMD EPYC, AVX2, the same products came out bitwise equal): whatever the
    BLAS, the difference stays at float32 rounding, which is what ROUNDING_ONLY's tolerances allow."""
    a, w = torch.randn(64, 16, generator=torch.Generator().manual_seed(0)), torch.randn(2, 16)
    full = a @ w.t()
    for m in range(2, 40):
        torch.testing.assert_close(a[:m] @ w.t(), full[:m], rtol=1e-6, atol=1e-6)


def test_predict_and_the_scikit_learn_names_follow_the_layout(case):
    name, mode, det = case
    parts = parts_of(mode)
    labels = det.predict({"x": parts[0], "y": parts[2]})
    assert list(labels) == ["x", "y"]
    if name not in ROUNDING_ONLY:
        np.testing.assert_array_equal(labels["y"], det.predict(parts[2]))
    assert labels["x"].dtype == np.int64
    samples = det.score_samples(parts)
    assert_same(name, samples[1], -det.decision_function(parts[1]))
    proba = det.predict_proba(parts, method="unify")
    assert_same(name, proba[3 if mode == "series" else 2], det.predict_proba(parts[-1], method="unify"))


def test_anogan_components_of_a_collection_are_per_part():
    det = fitted("anogan", "series")
    parts = parts_of("series")[:2]
    got = det.decision_components({"p": parts[0], "q": parts[1]})
    for key, part in zip("pq", parts):
        want = det.decision_components(part)
        assert set(got[key]) == {"score", "residual", "feature"}
        for k in want:
            np.testing.assert_array_equal(got[key][k], want[k])


def test_a_long_frame_by_id_scores_each_series_in_frame_order():
    det = fitted("flow", "series")
    parts = parts_of("series")
    ids = ["pump-7", 3, "b", "a"]
    frame = pd.concat([pd.DataFrame(p, columns=COLS["series"]).assign(sensor=i) for p, i in zip(parts, ids)])
    # interleave the series' rows, each series keeping its own order (sorted keys within a series)
    rng = np.random.default_rng(0)
    keys = np.concatenate([np.sort(rng.uniform(size=len(p))) for p in parts])
    long = frame.iloc[np.argsort(keys, kind="stable")].reset_index(drop=True)
    long = long[["sensor", "a", "b", "c"]]  # the id column first: dropped wherever it is
    got = det.decision_function(long, by="sensor")
    first_seen = list(dict.fromkeys(long["sensor"].tolist()))
    assert list(got) == first_seen and first_seen != ids
    for p, i in zip(parts, ids):
        np.testing.assert_array_equal(got[i], det.decision_function(p))
    # y per row of the frame is reordered with the rows; the fitted threshold moves as the flat equivalent does
    y = (long["a"].to_numpy() > 0.5).astype(int)
    flat_y = np.concatenate([y[long["sensor"].to_numpy() == i] for i in first_seen])
    a = fitted("flow", "series")
    before = a.threshold_
    try:
        a.set_threshold(long, y, by="sensor")
        by_frame = a.threshold_
        a.set_threshold([parts[ids.index(i)] for i in first_seen], flat_y)
        assert a.threshold_ == by_frame
    finally:
        a.threshold_ = before


def test_one_channel_series_as_1d_arrays_pandas_series_and_tensors():
    det = make_detector("knn", "series", device="cpu").fit(series_data(200, 0, C=1)[:, 0])
    raw = [series_data(T, 20 + T, C=1)[:, 0] for T in (16, 41, 64)]
    parts = [raw[0], pd.Series(raw[1], name="v"), torch.from_numpy(raw[2])]
    got = det.decision_function(parts)
    for g, p in zip(got, raw):
        np.testing.assert_array_equal(g, det.decision_function(p))


def test_a_nested_list_of_numbers_is_still_one_table_or_series():
    det = fitted("pca", "tabular")
    x = tabular_data(9, 3)
    np.testing.assert_array_equal(det.decision_function(x.tolist()), det.decision_function(x))
    s = fitted("pca", "series")
    y = series_data(40, 3)
    np.testing.assert_array_equal(s.decision_function(y.tolist()), s.decision_function(y))
    one = make_detector("pca", "series", device="cpu").fit(series_data(100, 0, C=1)[:, 0])
    np.testing.assert_array_equal(one.decision_function(list(y[:, 0])), one.decision_function(y[:, 0]))


@pytest.mark.parametrize("mode", ["reconstruct", "impute"])
@pytest.mark.parametrize("backend", ["cpu", "eager"])
def test_diffusion_tiles_of_many_series_share_network_calls_and_score_as_alone(mode, backend):
    """Series longer and shorter than a tile read (tile 24 + 2 halos of 3 = 30), two lengths of short series:
    groups of tiles from several series; each series' scores equal its own, bitwise, on both backends."""
    # elbo_levels=0: the chain's plan is counted here; the window loss's (one per call too) in test_window_loss.py
    det = get_detector("diffusion")(**{**TINY["diffusion"], "mode": mode}, window=WINDOW, stride=STRIDE, tile_size=24,
                                    tile_batch=3, n_draws=2, backend=backend, device="cpu", elbo_levels=0,
                                    verbose=False).fit(series_data(300, 0))
    parts = [series_data(T, 30 + i) for i, T in enumerate((16, 95, 16, 30, 61, 20, 16))]
    loop = [det.decision_function(p) for p in parts]
    from genad_fast.nn.diffusion import plan as plan_module
    calls, builds = [0], [0]
    real_call, real_init = plan_module.DenoiserInference.__call__, plan_module.DenoiserInference.__init__

    def counted_call(self, *args, **kwargs):
        calls[0] += 1
        return real_call(self, *args, **kwargs)

    def counted_init(self, *args, **kwargs):
        builds[0] += 1
        real_init(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module.DenoiserInference, "__call__", counted_call)
        mp.setattr(plan_module.DenoiserInference, "__init__", counted_init)
        for p in parts:
            det.decision_function(p)
        loop_calls, loop_builds = calls[0], builds[0]
        calls[0] = builds[0] = 0
        got = det.decision_function(parts)
    for i, (g, want) in enumerate(zip(got, loop)):
        np.testing.assert_array_equal(g, want, err_msg=f"series {i}")
    if backend == "cpu":  # the inference plan runs (eager runs the modules)
        assert builds[0] == 1 and loop_builds == len(parts)
        assert 0 < calls[0] < loop_calls


def test_the_default_path_packs_windows_of_many_series_into_one_model_call():
    det = make_detector("autoencoder", "series", device="cpu").fit(series_data(300, 0))
    parts = [series_data(T, i) for i, T in enumerate([20, 33, 16, 50] * 10)]
    n = [0]
    real = det._score_model

    def counted(batch):
        n[0] += 1
        return real(batch)

    det._score_model = counted
    try:
        det.decision_function(parts)
        assert n[0] == 1                         # 40 series, 4096 windows per batch
        det.score_batch_size = 7
        got = det.decision_function(parts)
        windows = sum(len(range(0, T - WINDOW + 1, STRIDE)) + ((T - WINDOW) % STRIDE != 0) for T in map(len, parts))
        assert n[0] == 1 + -(-windows // 7)      # full batches across series boundaries
    finally:
        del det._score_model, det.score_batch_size
    for g, p in zip(got, parts):
        np.testing.assert_array_equal(g, det.decision_function(p))


def test_flow_builds_one_plan_per_call_for_a_collection(monkeypatch):
    from genad_fast.detectors import flow as flow_module

    det = fitted("flow", "series")
    n = [0]
    real = flow_module.scoring_log_prob

    def counted(*args, **kwargs):
        n[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(flow_module, "scoring_log_prob", counted)
    det.decision_function([series_data(T, i) for i, T in enumerate([20, 40, 60, 16, 90])])
    assert n[0] == 1


def test_two_torch_threads_still_score_as_the_loop():
    """The benchmark's setting (2 intra-op threads): flow and diffusion, packed = loop, bitwise."""
    torch.set_num_threads(2)  # the one_thread fixture restores its value after the module
    try:
        for name in ("flow", "diffusion"):
            det = fitted(name, "series")
            parts = [series_data(T, 40 + i) for i, T in enumerate((16, 57, 300, 37))]
            for g, p in zip(det.decision_function(parts), parts):
                np.testing.assert_array_equal(g, det.decision_function(p), err_msg=name)
    finally:
        torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------- fit
@pytest.mark.parametrize(("name", "mode"), cases(), ids=lambda v: str(v))
def test_fit_on_a_collection(name, mode):
    """Normaliser of all rows, windows inside each series, decision_scores_ the parts' training scores in order."""
    parts = [series_data(T, 50 + i) for i, T in enumerate((90, 61, 120))] if mode == "series" else \
        [tabular_data(n, 50 + i) for i, n in enumerate((60, 41, 80))]
    det = make_detector(name, mode, device="cpu")
    seen = []
    real = det._fit_model
    det._fit_model = lambda data: (seen.append(data.detach().clone()), real(data))[1]
    frames = [pd.DataFrame(p, columns=COLS[mode]) for p in parts]
    det.fit(frames)
    del det._fit_model
    rows = np.concatenate(parts)
    want = Normalizer.fit(torch.from_numpy(rows).float())
    assert torch.equal(det.normalizer_.mean, want.mean) and torch.equal(det.normalizer_.scale, want.scale)
    assert list(det.feature_names_in_) == COLS[mode]
    z = det.normalizer_.transform(torch.from_numpy(rows).float())
    if name in MEMBERS:
        assert [m.n_features_in_ for m in det.members_] == [len(COLS[mode])] * len(det.members_)
    elif mode == "series":
        expected = torch.cat([sliding_windows(p, WINDOW, STRIDE) for p in torch.split(z, [len(p) for p in parts])])
        assert seen[-1].shape == expected.shape and torch.equal(seen[-1], expected)  # no window across a boundary
    else:
        assert torch.equal(seen[-1], z)
    assert det.decision_scores_.shape == (rows.shape[0],) and np.isfinite(det.decision_scores_).all()
    assert det.threshold_ == det._fit_threshold(None, det.decision_scores_, None)
    if name not in REFERENCE_SET | MEMBERS:
        assert_same(name, det.decision_scores_, np.concatenate([det.decision_function(p) for p in parts]))
    labels = make_detector(name, mode, device="cpu").fit_predict({"u": parts[0], "v": parts[1], "w": parts[2]})
    assert list(labels) == ["u", "v", "w"]
    np.testing.assert_array_equal(np.concatenate(list(labels.values())), det.labels_)
    if mode == "tabular":  # rows are independent: a list of tables fits as their concatenation
        whole = make_detector(name, mode, device="cpu").fit(pd.DataFrame(rows, columns=COLS[mode]))
        np.testing.assert_array_equal(whole.decision_scores_, det.decision_scores_)
        assert whole.threshold_ == det.threshold_
        np.testing.assert_array_equal(whole.decision_function(parts[1]), det.decision_function(parts[1]))


def test_fit_on_a_collection_of_one_equals_the_fit_on_the_series():
    x = series_data(200, 7)
    a = make_detector("vae", "series", device="cpu").fit(x)
    b = make_detector("vae", "series", device="cpu").fit([x])
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)
    np.testing.assert_array_equal(a.decision_function(x[:50]), b.decision_function(x[:50]))


def test_fit_by_id_column():
    parts = [series_data(T, 60 + i) for i, T in enumerate((80, 64))]
    long = pd.concat([pd.DataFrame(p, columns=COLS["series"]).assign(unit=u) for p, u in zip(parts, "pq")])
    a = make_detector("ocsvm", "series", device="cpu").fit(long, by="unit")
    b = make_detector("ocsvm", "series", device="cpu").fit(parts)
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)
    assert list(a.feature_names_in_) == COLS["series"]  # the id column is not a feature
    assert not hasattr(b, "feature_names_in_")


# ---------------------------------------------------------------------------------------------- extremes
def test_extreme_values_in_one_series_score_inf_there_only():
    det = fitted("vae", "series")
    parts = parts_of("series")
    bad = parts[2].copy()
    bad[9, 1] = 3.4e38
    parts[2] = bad
    with pytest.warns(ExtremeValueWarning, match=r"row 9, column 1\)"):
        alone = det.decision_function(bad)
    with pytest.warns(ExtremeValueWarning, match=r"1 extreme value .*row 9, column 1 of X\[2\]"):
        got = det.decision_function(parts)
    np.testing.assert_array_equal(got[2], alone)
    assert np.isposinf(got[2]).any() and np.isfinite(got[2]).any()
    for i in (0, 1, 3):
        assert np.isfinite(got[i]).all()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert_same("vae", got[i], det.decision_function(parts[i]))


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("X", "kwargs", "error", "match"), [
    ([series_data(40, 0), series_data(5, 1)], {}, ValueError, r"X\[1\] has 5 timestamps, fewer than window=16"),
    ({"a": series_data(40, 0), "b": np.full((30, 3), np.nan)}, {}, ValueError, r"X\['b'\] contains 90 non-finite"),
    ([series_data(40, 0), series_data(40, 1)[:, :2]], {}, ValueError, r"X\[1\] has 2 channels, but \w+ was fitted"),
    ([], {}, ValueError, r"empty list"),
    ({}, {}, ValueError, r"empty dict"),
    ([series_data(40, 0), [[1.0, 2.0, 3.0]] * 20], {}, TypeError, r"mixes arrays \(X\[0\].*X\[1\] is a list"),
    (series_data(40, 0), {"by": "id"}, TypeError, r"long pandas DataFrame, but X is a ndarray"),
    (pd.DataFrame(series_data(40, 0), columns=COLS["series"]), {"by": "id"}, ValueError, r"'id' is not a column"),
    (pd.DataFrame(series_data(40, 0), columns=COLS["series"]).assign(id=[None] + [1] * 39), {"by": "id"}, ValueError,
     r"missing value at row 0"),
    (pd.DataFrame(series_data(40, 0), columns=COLS["series"]).assign(id=[1] * 30 + [2] * 10), {"by": "id"},
     ValueError, r"series id=2 has 10 timestamps, fewer than window=16"),
    ([pd.DataFrame(series_data(40, 0), columns=["c", "b", "a"])], {}, ValueError, r"X\[0\] has columns"),
])
def test_a_bad_part_is_an_error_naming_it(X, kwargs, error, match):
    det = fitted("pca", "series")
    with pytest.raises(error, match=match):
        det.decision_function(X, **kwargs)


def test_fit_errors_name_the_part():
    det = make_detector("pca", "series", device="cpu")
    with pytest.raises(ValueError, match=r"X\[1\] has 2 channels, but X\[0\] has 3"):
        det.fit([series_data(60, 0), series_data(60, 1)[:, :2]])
    with pytest.raises(ValueError, match=r"X\[1\] has columns \['a', 'c', 'b'\], but X\[0\] has"):
        det.fit([pd.DataFrame(series_data(60, 0), columns=COLS["series"]),
                 pd.DataFrame(series_data(60, 1), columns=["a", "c", "b"])])
    with pytest.raises(ValueError, match=r"the training series give 2 windows \(2 series"):
        make_detector("flow", "series", device="cpu").fit([series_data(16, 0), series_data(16, 1)])
    with pytest.raises(ValueError, match=r"y for X\[1\] has 3 labels, but X\[1\] gives 40 scores"):
        fitted("pca", "series").set_threshold([series_data(40, 0)] * 2, [np.zeros(40), np.zeros(3)])


# ------------------------------------------------------------------------------------------------ threads
def test_threads_sharing_a_fitted_model_score_collections():
    det = get_detector("vae")(window=8, stride=2, hidden=(4,), epochs=2, min_steps=0, n_samples=3, verbose=False, device="cpu",
                              seed=0).fit(series_data(240, 0, C=2))
    det.score_batch_size = 40  # several batches per call: the call's state lives while other threads score
    inputs = [[series_data(T, 100 * k + i, C=2) for i, T in enumerate((8, 45, 120, 31))] for k in range(4)]
    want = [det.decision_function(x) for x in inputs]
    barrier, results, errors = threading.Barrier(4), [None] * 4, []

    def work(k):
        try:
            barrier.wait()
            results[k] = [det.decision_function(inputs[k]) for _ in range(3)]
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(4):
        for rep in results[k]:
            for g, w in zip(rep, want[k]):
                np.testing.assert_array_equal(g, w)
