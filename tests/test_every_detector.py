"""The Python API of EVERY registered detector, in tabular and series mode (issue #12).

One module-scoped fit per (detector, mode) with tiny settings, shared by every test of that case:
input types and layouts give the scores of the C-order float64 array; every bad input is a ValueError
naming the problem; save/load and repeated calls give identical scores; the extreme-value rule
(values beyond 1e6 training standard deviations make their rows/windows +inf, everything else is finite);
spikes score monotonically; constant training columns warn and still work; the smallest inputs score.

The test data are multiples of 1/64 in [-4, 4], exact in float16, so every float dtype carries the
same values and the scores must agree to the last bit of the model's float32 arithmetic.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import torch

import genad_fast
from genad_fast.detectors import detector_names
from genad_fast.series import window_starts
from tiny_detectors import STRIDE, WINDOW, cases, make_detector

pytestmark = pytest.mark.usefixtures("one_thread")

TAB_COLS, SER_COLS = ["a", "b", "c", "d"], ["a", "b", "c"]


def _exact16(a: np.ndarray) -> np.ndarray:
    """Round to multiples of 1/64 in [-4, 4]: exactly representable in float16, float32 and float64."""
    return np.clip(np.round(a * 64.0) / 64.0, -4.0, 4.0)


def tabular_data(n: int, seed: int, d: int = 4) -> np.ndarray:
    return _exact16(np.random.default_rng(seed).normal(size=(n, d)))


def series_data(T: int, seed: int, C: int = 3) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return _exact16(np.sin(2 * np.pi * t / 25 + np.arange(C)) + 0.1 * rng.normal(size=(T, C)))


@dataclass
class Case:
    """A fitted detector and its data: ``train`` (a named DataFrame), ``test`` (C-order float64), ``ref``
    (the scores of ``test``)."""

    name: str
    mode: str
    det: object
    train: pd.DataFrame
    test: np.ndarray
    ref: np.ndarray
    columns: list[str] = field(default_factory=list)

    @property
    def series(self) -> bool:
        return self.mode == "series"


@pytest.fixture(scope="module", params=cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def case(request) -> Case:
    name, mode = request.param
    if mode == "tabular":
        train, test, cols = tabular_data(300, 0), tabular_data(48, 1), TAB_COLS
    else:
        train, test, cols = series_data(400, 0), series_data(80, 1), SER_COLS
    frame = pd.DataFrame(train, columns=cols)
    det = make_detector(name, mode).fit(frame)
    test = np.ascontiguousarray(test, dtype=np.float64)
    return Case(name, mode, det, frame, test, det.decision_function(test), cols)


def assert_same_scores(got, want, what: str) -> None:
    """Equal up to float32 rounding of the model's arithmetic (a layout may change the order of a sum)."""
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == np.float64, what
    scale = max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale, err_msg=what)


# ---------------------------------------------------------------------------------------------- layouts
def _column_slice(x: np.ndarray) -> np.ndarray:
    """``x`` as a strided view: every other row and an inner column block of a bigger array."""
    big = np.full((2 * x.shape[0], x.shape[1] + 3), 99.0)
    big[::2, 1:-2] = x
    return big[::2, 1:-2]


def _read_only(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y.flags.writeable = False
    return y


def _torch_column_slice(x: np.ndarray) -> torch.Tensor:
    big = torch.full((x.shape[0], x.shape[1] + 2), 99.0, dtype=torch.float64)
    big[:, 1:-1] = torch.from_numpy(x)
    return big[:, 1:-1]


LAYOUTS = {
    "fortran": np.asfortranarray,
    "strided_view": _column_slice,
    "transposed": lambda x: np.ascontiguousarray(x.T).T,
    "reversed_twice": lambda x: np.ascontiguousarray(x[::-1])[::-1],  # negative row stride
    "read_only": _read_only,
    "big_endian": lambda x: x.astype(">f8"),
    "float16": lambda x: x.astype(np.float16),
    "float32": lambda x: x.astype(np.float32),
    "float32_fortran": lambda x: np.asfortranarray(x.astype(np.float32)),
    "list": lambda x: x.tolist(),
    "torch": torch.from_numpy,
    "torch_float32": lambda x: torch.from_numpy(x).float(),
    "torch_column_slice": _torch_column_slice,
    "torch_transposed": lambda x: torch.from_numpy(np.ascontiguousarray(x.T)).T,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_gives_the_c_order_scores(case, layout):
    x = LAYOUTS[layout](case.test)
    assert_same_scores(case.det.decision_function(x), case.ref, f"{case.name}/{case.mode}: {layout}")


def test_named_frames_select_and_drop_columns(case):
    """``frame[cols]`` and ``frame.drop(columns=...)`` of a wider frame, in the fitted order, and a frame
    whose columns were reordered back: the same scores."""
    wide = pd.DataFrame(case.test, columns=case.columns)
    wide.insert(1, "extra", 7.0)
    wide["label"] = 0
    for what, frame in (("frame", pd.DataFrame(case.test, columns=case.columns)),
                        ("frame of a fortran array", pd.DataFrame(np.asfortranarray(case.test), columns=case.columns)),
                        ("frame float32", pd.DataFrame(case.test.astype(np.float32), columns=case.columns)),
                        ("frame[cols]", wide[case.columns]), ("drop", wide.drop(columns=["extra", "label"])),
                        ("reordered back", wide[case.columns[::-1]][case.columns])):
        assert_same_scores(case.det.decision_function(frame), case.ref, f"{case.name}/{case.mode}: {what}")


def test_integer_and_bool_inputs(case):
    """int32/int64/uint8/bool arrays, tensors and frames score as the float64 array of the same values."""
    ints = np.round(case.test * 2.0)  # small integers, same shape
    bools = case.test > 0
    want_i = case.det.decision_function(ints)
    want_b = case.det.decision_function(bools.astype(np.float64))
    for what, x in (("int64", ints.astype(np.int64)), ("int32 fortran", np.asfortranarray(ints.astype(np.int32))),
                    ("torch int64", torch.from_numpy(ints.astype(np.int64))),
                    ("frame int", pd.DataFrame(ints.astype(np.int64), columns=case.columns))):
        assert_same_scores(case.det.decision_function(x), want_i, f"{case.name}/{case.mode}: {what}")
    for what, x in (("bool", bools), ("torch bool", torch.from_numpy(bools)),
                    ("frame bool", pd.DataFrame(bools, columns=case.columns))):
        assert_same_scores(case.det.decision_function(x), want_b, f"{case.name}/{case.mode}: {what}")
    u8 = np.abs(ints).astype(np.uint8)
    assert_same_scores(case.det.decision_function(u8), case.det.decision_function(u8.astype(np.float64)), "uint8")


def test_expanded_tensor(case):
    """A stride-0 (expanded) tensor scores as the materialised repeat of its row."""
    n = case.test.shape[0]
    row = torch.from_numpy(case.test[3:4])
    want = case.det.decision_function(np.repeat(case.test[3:4], n, axis=0))
    assert_same_scores(case.det.decision_function(row.expand(n, -1)), want, f"{case.name}/{case.mode}: expanded")


# ---------------------------------------------------------------------------------------------- errors
def _errors(case: Case) -> dict[str, tuple[object, str]]:
    x = case.test
    nan, inf = x.copy(), x.copy()
    nan[5, 1] = np.nan
    inf[7, 0] = -np.inf
    renamed = pd.DataFrame(x, columns=[c.upper() for c in case.columns])
    out = {
        "nan": (nan, r"non-finite.*row 5"),
        "inf": (inf, r"non-finite.*row 7"),
        "rank3": (x[None], r"shape \(1, "),
        "channels": (x[:, :-1], rf"{x.shape[1] - 1} .*fitted on {x.shape[1]}"),
        "empty": (x[:0], "has 0"),
        "no_columns": (x[:, :0], "has 0"),
        "column_names": (renamed, "columns"),
        "strings": (np.array([["a"] * x.shape[1]] * x.shape[0]), "real numbers|non-numeric"),
    }
    if case.series:
        out["too_short"] = (x[:WINDOW - 1], f"fewer than window={WINDOW}")
    else:
        out["rank1"] = (x[:, 0], "2-D")
    return out


def test_bad_input_is_a_value_error_that_names_it(case):
    """Every bad input of :func:`_errors`, through decision_function and predict; all mismatches reported at once."""
    wrong = []
    for problem, (x, match) in _errors(case).items():
        for method in (case.det.decision_function, case.det.predict):
            try:
                method(x)
            except ValueError as exc:
                if not re.search(match, str(exc)):
                    wrong.append(f"{problem}: {method.__name__} message {str(exc)[:200]!r} lacks {match!r}")
            except Exception as exc:  # noqa: BLE001 - reported below
                wrong.append(f"{problem}: {method.__name__} raised {type(exc).__name__}: {str(exc)[:200]}")
            else:
                wrong.append(f"{problem}: {method.__name__} raised nothing")
    assert not wrong, "\n".join(wrong)


def test_unfitted_and_bad_fit_input(case, tmp_path):
    fresh = make_detector(case.name, case.mode)
    with pytest.raises(ValueError, match="not fitted"):
        fresh.decision_function(case.test)
    with pytest.raises(ValueError, match="not fitted"):
        fresh.save(tmp_path / "never-written.pt")
    nan = case.train.to_numpy().copy()
    nan[3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        make_detector(case.name, case.mode).fit(nan)
    too_few = case.train.to_numpy()[:WINDOW - 1] if case.series else case.train.to_numpy()[:1]
    with pytest.raises(ValueError, match="fewer than window|needs at least"):
        make_detector(case.name, case.mode).fit(too_few)
    with pytest.raises(ValueError, match="has 0"):
        make_detector(case.name, case.mode).fit(case.train.to_numpy()[:0])


# ---------------------------------------------------------------------------------------------- files, determinism
def test_save_load_round_trip(case, tmp_path):
    path = tmp_path / f"{case.name}-{case.mode}.pt"
    case.det.save(path)
    loaded = genad_fast.load(path)
    assert type(loaded) is type(case.det) and loaded.threshold_ == case.det.threshold_
    np.testing.assert_array_equal(loaded.decision_function(case.test), case.ref)
    np.testing.assert_array_equal(loaded.predict(case.test), case.det.predict(case.test))


def test_deterministic(case):
    """Two calls, and a second fit with the same seed, give the same scores."""
    np.testing.assert_array_equal(case.det.decision_function(case.test), case.ref)
    again = make_detector(case.name, case.mode).fit(case.train)
    np.testing.assert_array_equal(again.decision_function(case.test), case.ref)


# ---------------------------------------------------------------------------------------------- extreme values
def expected_infinite(case: Case, extreme: np.ndarray) -> np.ndarray:
    """Rows holding an extreme value (tabular); for a series, the timestamps whose covering windows holding
    one decide the score under ``reduce``: any of them ("mean", "max") or all of them ("min")."""
    if not case.series:
        return extreme.copy()
    T = extreme.size
    starts = window_starts(T, WINDOW, STRIDE).numpy()
    holds = np.array([extreme[s:s + WINDOW].any() for s in starts])
    covering = np.zeros((starts.size, T), dtype=bool)
    for i, s in enumerate(starts):
        covering[i, s:s + WINDOW] = True
    any_ = (covering & holds[:, None]).any(0)
    all_ = ((~covering) | holds[:, None]).all(0)
    return all_ if case.det.reduce == "min" else any_


@pytest.mark.parametrize("value", [3e38, -3e38, 1e30, 5e7])
def test_extreme_value_scores_plus_inf_with_a_warning(case, value):
    """A missing-value sentinel (3e38) or a glitch, in one row/timestamp and column: +inf where it is,
    finite everywhere else, flagged by predict, and a warning."""
    x = case.test.copy()
    x[10, 1] = value
    with pytest.warns(UserWarning, match="extreme"):
        scores = case.det.decision_function(x)
    extreme = np.zeros(x.shape[0], dtype=bool)
    extreme[10] = True
    inf = expected_infinite(case, extreme)
    assert not np.isnan(scores).any()
    assert np.isposinf(scores[inf]).all(), f"not +inf at {np.flatnonzero(inf & ~np.isposinf(scores))}"
    assert np.isfinite(scores[~inf]).all(), f"not finite at {np.flatnonzero(~inf & ~np.isfinite(scores))}"
    with pytest.warns(UserWarning, match="extreme"):
        assert case.det.predict(x)[10] == 1


@pytest.mark.parametrize("sigmas", [1e2, 1e4, 9e5])
def test_large_but_not_extreme_values_score_finite(case, sigmas):
    """Below the 1e6-sigma bound every score is finite (no float32 overflow inside the model) and no warning."""
    x = case.test.copy()
    std = case.train.to_numpy().std(0)
    mean = case.train.to_numpy().mean(0)
    x[10, 1] = mean[1] + sigmas * std[1]
    x[20, 0] = mean[0] - sigmas * std[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scores = case.det.decision_function(x)
    bad = np.flatnonzero(~np.isfinite(scores))
    assert bad.size == 0, f"{case.name}/{case.mode}: non-finite scores {scores[bad][:5]} at {bad[:5]}"


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_spike_scores_monotone_and_flagged(case, sign):
    """A spike on one timestamp/row of normal data scores at least as high as any smaller spike of the same
    sign (3 to 1e30 training standard deviations), and one far outside the training range is flagged."""
    mags = [3.0, 10.0] + [10.0 ** k for k in range(2, 31, 2)]
    std = float(case.train.to_numpy()[:, 1].std())
    at = 40 if case.series else 10
    got = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the largest spikes are extreme, by design
        for m in mags:
            x = case.test.copy()
            x[at, 1] += sign * m * std
            got.append(case.det.decision_function(x)[at])
            if m == 1e4:
                assert case.det.predict(x)[at] == 1, f"a {m:g}-sigma spike is not flagged"
    got = np.array(got)
    assert not np.isnan(got).any()
    drops = [(mags[i], got[i], mags[i + 1], got[i + 1]) for i in range(len(mags) - 1) if got[i + 1] < got[i]]
    assert not drops, f"{case.name}/{case.mode}: larger spikes score lower: {drops}"


# ---------------------------------------------------------------------------------------------- degenerate training
@pytest.mark.parametrize("kind", ["constant", "near_constant"])
def test_constant_training_column(case, kind):
    """A stuck training column warns naming it (constant) and the detector still trains and scores finite."""
    train = case.train.copy()
    if kind == "constant":
        train["b"] = 2.5
    else:
        train["b"] = 2.5 + 1e-9 * np.random.default_rng(5).normal(size=len(train))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det = make_detector(case.name, case.mode).fit(train)
    messages = [str(w.message) for w in caught]
    if kind == "constant":
        assert any("constant" in m and "'b'" in m for m in messages), messages
    assert np.isfinite(det.decision_scores_).all() and np.isfinite(det.threshold_)
    test = case.test.copy()
    test[:, 1] = 2.5
    assert np.isfinite(det.decision_function(test)).all()
    test[:5, 1] = 2.5 + 1e-3  # a tiny change of a stuck column: finite or +inf, never NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = det.decision_function(test)
    assert not np.isnan(scores).any() and not np.isneginf(scores).any()


# ---------------------------------------------------------------------------------------------- smallest inputs
def test_smallest_inputs(case):
    """One row (tabular: its score equals its score in a batch) or exactly one window (series)."""
    if case.series:
        s = case.det.decision_function(case.test[:WINDOW])
        assert s.shape == (WINDOW,) and np.isfinite(s).all()
    else:
        for i in (0, 17):
            s = case.det.decision_function(case.test[i:i + 1])
            assert s.shape == (1,)
            np.testing.assert_allclose(s[0], case.ref[i], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{case.name}: row {i} scores differently alone than in a batch of "
                                               f"{case.test.shape[0]} (its score depends on the other rows)")


@pytest.mark.parametrize("name", sorted(n for n in detector_names()))
def test_one_channel_series_inputs(name):
    """A one-channel series as 1-D numpy, (T, 1), pandas Series, a one-column frame, a 1-D tensor and a list."""
    one = series_data(300, 2, C=1)
    det = make_detector(name, "series").fit(one[:, 0])
    test = series_data(64, 3, C=1)[:, 0]
    want = det.decision_function(test)
    assert want.shape == (64,) and np.isfinite(want).all()
    for what, x in (("(T, 1)", test[:, None]), ("pandas Series", pd.Series(test, name="x")),
                    ("frame", pd.DataFrame({"x": test})), ("tensor", torch.from_numpy(test)),
                    ("list", test.tolist()), ("strided", np.repeat(test, 2)[::2]), ("float32", test.astype("<f4"))):
        assert_same_scores(det.decision_function(x), want, f"{name}: {what}")
