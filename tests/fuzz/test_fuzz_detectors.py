"""Property-based fuzzing of every registered detector through the public API.

Random detector, mode (tabular / series with a random window and stride), training length (down to the
fewest rows or a series barely longer than the window), channel count, magnitude (1e-20 to 1e20) and offset,
constant and near-constant columns, input dtype and layout; scoring data with NaN, ±inf or extreme values
(beyond 1e6 training standard deviations) at random places. Invariants:

- fit and scoring either work or raise a ValueError/TypeError whose message names the problem;
- a fitted detector has finite training scores and a finite threshold;
- scores are never NaN or -inf: +inf exactly where the extreme-value rule puts it, finite elsewhere;
- NaN/inf in the input is a ValueError that says so.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from fuzz_strategies import examples
from hypothesis import given
from hypothesis import strategies as st

from genad_fast.detectors import detector_names
from genad_fast.series import window_starts
from tiny_detectors import SERIES_ONLY, make_detector

pytestmark = [pytest.mark.fuzz, pytest.mark.usefixtures("one_thread")]

#: Words one of which a rejection's message must contain: it names the problem, not just "error".
NAMED = re.compile(r"rows|timestamps|window|channels|features|columns|constant|variance|rank|finite|NaN|inf|"
                   r"needs|at least|fewer|must|overflow|dtype|shape", re.I)


@st.composite
def problems(draw):
    """A detector, its mode and geometry, and float64 training/scoring data in physical units."""
    name = draw(st.sampled_from(detector_names()))
    series = name in SERIES_ONLY or draw(st.booleans())
    window = draw(st.integers(2, 10)) if series else None
    stride = draw(st.integers(1, window)) if series else 1
    C = draw(st.integers(1, 5))
    n = window + draw(st.integers(0, 12)) * stride + draw(st.integers(0, 30)) if series else draw(
        st.integers(2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.sampled_from([-20, -6, 0, 0, 3, 12, 20]))
    offset = scale * draw(st.sampled_from([0.0, 0.0, 5.0, -1e3, 1e7]))
    train = offset + scale * rng.normal(size=(n, C))
    for j in range(C):
        kind = draw(st.sampled_from(["normal"] * 3 + ["constant", "near_constant"]))
        if kind == "constant":
            train[:, j] = offset
        elif kind == "near_constant":
            train[:, j] = offset + scale * 1e-9 * rng.normal(size=n)
    m = draw(st.integers(window or 1, (window or 1) + 25))
    test = offset + scale * rng.normal(size=(m, C))
    return name, window, stride, train, test, rng


def _layout(draw, x: np.ndarray) -> np.ndarray:
    kind = draw(st.sampled_from(["c", "fortran", "float32", "strided", "big_endian"]))
    if kind == "fortran":
        return np.asfortranarray(x)
    if kind == "float32" and np.isfinite(x.astype(np.float32)).all():
        return x.astype(np.float32)
    if kind == "strided":
        big = np.zeros((x.shape[0], 2 * x.shape[1]))
        big[:, ::2] = x
        return big[:, ::2]
    if kind == "big_endian":
        return x.astype(">f8")
    return x


def _must_name_the_problem(exc: Exception, what: str) -> None:
    assert isinstance(exc, (ValueError, TypeError)), f"{what} raised {type(exc).__name__}: {exc}"
    assert NAMED.search(str(exc)), f"{what}: the message does not name the problem: {exc}"


def _extreme_rows(train: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` with a value beyond 1e6 training standard deviations (a constant column — std at most
    10·eps·max(1, |mean|), the Normalizer's rule, so also a column of values ~1e-30 — in its own units),
    ``(certainly, possibly)``: the training statistics are taken in float64 and in float32 (the precision a
    detector may compute them in), and a value between 1e4 and 1e8 deviations in either is left undecided."""
    zs = []
    for dt in (np.float64, np.float32):
        t = train.astype(dt).astype(np.float64)
        mean, std = t.mean(0), t.std(0)
        constant = std <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
        zs.append(np.abs(x - mean) / np.where(constant, 1.0, std))
    certain = ((zs[0] > 1e8) & (zs[1] > 1e8)).any(1)
    maybe = ((zs[0] > 1e4) | (zs[1] > 1e4)).any(1)
    return certain, maybe


def _expected_infinite(extreme: np.ndarray, window: int | None, stride: int, reduce: str) -> np.ndarray:
    if window is None:
        return extreme
    T = extreme.size
    starts = window_starts(T, window, stride).numpy()
    covering = np.zeros((starts.size, T), dtype=bool)
    for i, s in enumerate(starts):
        covering[i, s:s + window] = True
    holds = (covering & extreme[None]).any(1)
    if reduce == "min":
        return ((~covering) | holds[:, None]).all(0)
    return (covering & holds[:, None]).any(0)


@examples(150)
@given(problem=problems(), data=st.data())
def test_detector_fit_and_score_invariants(problem, data):
    name, window, stride, train, test, rng = problem
    det = make_detector(name, "series" if window else "tabular", window=window or 16, stride=stride)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constant columns warn; checked in test_every_detector
        try:
            det.fit(_layout(data.draw, train))
        except Exception as exc:  # noqa: BLE001 - the invariant is about what was raised
            _must_name_the_problem(exc, f"{name}.fit{train.shape}")
            return
    assert np.isfinite(det.decision_scores_).all(), f"{name}: non-finite training scores"
    assert np.isfinite(det.threshold_), f"{name}: threshold_ {det.threshold_}"

    # extreme values: +inf where the rule says, finite elsewhere, never NaN or -inf
    x = test.copy()
    for _ in range(data.draw(st.integers(0, 2))):
        i, j = data.draw(st.integers(0, x.shape[0] - 1)), data.draw(st.integers(0, x.shape[1] - 1))
        x[i, j] = data.draw(st.sampled_from([3e38, -3e38]))
    given = _layout(data.draw, x)
    # the oracle sees the values the detector is given (a float32 layout rounds them)
    certain, maybe = _extreme_rows(train, np.asarray(given, dtype=np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            scores = det.decision_function(given)
        except Exception as exc:  # noqa: BLE001
            _must_name_the_problem(exc, f"{name}.decision_function{x.shape}")
            return
    assert scores.shape == (x.shape[0],) and scores.dtype == np.float64
    assert not np.isnan(scores).any(), f"{name}: NaN scores at {np.flatnonzero(np.isnan(scores))[:5]}"
    assert not np.isneginf(scores).any(), f"{name}: -inf scores"
    inf = _expected_infinite(certain, window, stride, det.reduce)
    finite = ~_expected_infinite(maybe, window, stride, "max")
    assert np.isposinf(scores[inf]).all(), f"{name}: extreme rows/timestamps not +inf: {scores[inf][:5]}"
    assert np.isfinite(scores[finite]).all(), (f"{name}: non-finite scores away from extreme values at "
                                               f"{np.flatnonzero(finite & ~np.isfinite(scores))[:5]}")

    # NaN / inf in the input: a ValueError that says so
    bad = test.copy()
    bad[data.draw(st.integers(0, bad.shape[0] - 1)), 0] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(ValueError, match="non-finite"):
        det.decision_function(bad)
