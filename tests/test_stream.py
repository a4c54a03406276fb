"""det.stream() (issue #15, points 1, 2 and 4) for EVERY registered detector in series mode.

- A series streamed in random chunk sizes (1 to 40 timestamps, also a whole series in one chunk) gives the
  scores of one ``causal_decision_function`` call, at delays 0, 7 and W-1, on the detector's stride (4, with an
  off-grid end window) and at stride 1: bitwise on the CPU, except the detectors of :data:`ROUNDING_ONLY`
  (with the reason). Every timestamp comes out exactly once, in order.
- ``delay = W - 1`` is ``decision_function``'s centred reduction (window detectors; to float32 rounding of the
  mean); DiffusionDetector's windows are each scored as ``decision_function`` scores that window alone.
- Memory is flat: after 10^5 timestamps in chunks, the stream holds at most W rows and W pending timestamps.
- The fused paths stay fused: one flow plan and one diffusion network plan per stream, not per update.
- Extreme values score +inf as in batch; streams of one detector on two threads; a loaded model; the errors.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from genad_fast.detectors import load
from genad_fast.detectors._extremes import ExtremeValueWarning
from tiny_detectors import TINY, cases, make_detector

pytestmark = pytest.mark.usefixtures("one_thread")

W = 16
#: Equal to rounding only, not bitwise, with the reason; the others are bitwise. A stream scores its windows in
#: batches of the update's size, the batch call in batches of score_batch_size: the products with fewer than
#: four output columns (the latent or SVDD code, 2 here) round differently by the number of rows in MKL's
#: float32 GEMM (tests/test_many_series.py shows it on ATen's mm); AnoGAN's latent search follows the gradient
#: from there; scikit-learn's IsolationForest averages path lengths in an order that depends on the batch.
ROUNDING_ONLY = {"vae": 1e-6, "deep_svdd": 1e-6, "fanogan": 1e-6, "anogan": 1e-5, "iforest": 1e-12,
                 "dte": 1e-6,  # DTE: its output product has n_bins = 7 columns, as narrow as those above
                 "ocsvm": 1e-12}  # OneClassSVM: float64 rounding by the batch on some CPUs (4e-16, AMD EPYC AVX2)
#: Detectors without a stream: the ensemble combines its members' whole-series scores (it raises, saying so).
NO_STREAM = {"ensemble"}
SERIES = sorted(name for name, mode in cases() if mode == "series" and name not in NO_STREAM)


#: exact=False (the default): the update's windows scored unpadded; equal to the batch call to this relative budget
#: (float32 products of fewer than min_score_rows rows round otherwise; AnoGAN's latent search follows the gradient
#: on). UNPADDED_RTOL: the budget of the tests that stream the default way.
UNPADDED_BUDGET = {"anogan": 1e-4}
UNPADDED_RTOL = 1e-5


def series(T: int, seed: int, C: int = 3) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * t / 25 + np.arange(C) + seed) + 0.1 * rng.normal(size=(T, C))


_FITTED: dict = {}


def fitted(name: str):
    if name not in _FITTED:
        _FITTED[name] = make_detector(name, "series", window=W, stride=4, device="cpu").fit(
            pd.DataFrame(series(300, 0), columns=["a", "b", "c"]))
    return _FITTED[name]


def run_stream(s, x, rng, max_chunk: int = 40):
    outs, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, max_chunk + 1))
        outs.append(s.update(x[i:i + n]))
        i += n
    outs.append(s.flush())
    return tuple(np.concatenate([getattr(o, f) for o in outs]) for f in ("index", "scores", "alarms", "thresholds"))


def assert_same(name, got, want, what=""):
    if name in ROUNDING_ONLY:
        np.testing.assert_allclose(got, want, rtol=ROUNDING_ONLY[name], atol=ROUNDING_ONLY[name], err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("name", SERIES)
def test_stream_in_random_chunks_equals_the_batch_call(name):
    det = fitted(name)
    x = series(97, 5)  # (97 - 16) % 4 = 1: an end-aligned window off the stride grid
    rng = np.random.default_rng(1)
    for stride in (None, 1):
        for delay in (0, 7, W - 1):
            want = det.causal_decision_function(x, delay=delay, stride=stride)
            assert want.dtype == np.float64 and want.shape == (97,) and np.isfinite(want).all()
            s = det.stream(delay=delay, stride=stride, exact=True)  # the bits (the default: to rounding, below)
            index, scores, alarms, thresholds = run_stream(s, x, rng)
            np.testing.assert_array_equal(index, np.arange(97))
            assert_same(name, scores, want, f"{name} stride={stride} delay={delay}")
            np.testing.assert_array_equal(alarms, scores > det.threshold_)
            np.testing.assert_array_equal(thresholds, np.full(97, det.threshold_))
    # the whole series as one chunk, and a DataFrame / float32 tensor chunk
    for chunk in (x, pd.DataFrame(x, columns=["a", "b", "c"]), torch.from_numpy(x)):
        s = det.stream(delay=3, exact=True)
        out, end = s.update(chunk), s.flush()
        assert_same(name, np.concatenate([out.scores, end.scores]), det.causal_decision_function(x, delay=3))


@pytest.mark.parametrize("name", [n for n in SERIES if n != "diffusion"])
def test_delay_w_minus_1_is_decision_function(name):
    det = fitted(name)
    x = series(96, 6)  # (96 - 16) % 4 = 0: on the grid
    got = det.causal_decision_function(x, delay=W - 1)
    want = det.decision_function(x)
    # float64 sums in window order against windows_to_timestamps' float32 sums (exact for max and min)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    if det.reduce != "mean":
        assert_same(name, got, want)


def test_diffusion_windows_are_scored_as_series_of_their_own():
    """Stride W, delay W-1: each timestamp lies in one window only, so its score is that window's score, which
    is what decision_function gives the window passed alone (its noise depends on its length only)."""
    det = fitted("diffusion")
    x = series(4 * W, 8)
    got = det.causal_decision_function(x, delay=W - 1, stride=W)
    want = np.concatenate([det.decision_function(x[j * W:(j + 1) * W]) for j in range(4)])
    np.testing.assert_array_equal(got, want)
    s = det.stream(delay=0, stride=W)
    np.testing.assert_array_equal(np.concatenate([s.update(x[i:i + 5]).scores for i in range(0, 4 * W, 5)]
                                                 + [s.flush().scores]), want)


def test_memory_is_flat(gauss_cls):
    det = gauss_cls(window=W, stride=1, verbose=False, device="cpu").fit(series(200, 0))
    rng = np.random.default_rng(2)
    x = series(100_000, 3)
    for stride in (1, 5):
        s = det.stream(delay=4, stride=stride)
        i, peak, n_out = 0, {"rows": 0, "pending": 0, "bytes": 0}, 0
        while i < len(x):
            n = int(rng.choice([1, 7, 300, 2000]))
            n_out += s.update(x[i:i + n]).index.size
            i += n
            b = s.buffered()
            stored = (s._buffer._store.untyped_storage().nbytes() + s._pending._acc.nbytes + s._pending._count.nbytes
                      + s._buffer.extreme.nbytes)  # the stores, not the views of what is pending
            peak = {"rows": max(peak["rows"], b["rows"]), "pending": max(peak["pending"], b["pending"]),
                    "bytes": max(peak["bytes"], stored)}
        n_out += s.flush().index.size
        assert n_out == len(x)
        assert peak["rows"] <= W and peak["pending"] <= W, peak
        # stores of 2 W: rows (float32, 3 channels), sums, counts; flags
        assert peak["bytes"] <= 2 * W * (3 * 4 + 8 + 8 + 1), peak


def test_plans_are_built_once_per_stream(monkeypatch):
    """Point 4: per stream, not per update: the flow's scoring plan, the diffusion network's plan and its tile
    plan (groups and noise counters, per set of lengths: one here, every update brings one window), and the
    extreme-value bounds of the input checks; each update still scores its window (the equality tests above)."""
    import genad_fast.detectors.flow as flow_module
    import genad_fast.nn.diffusion.sampler as sampler_module
    import genad_fast.nn.flow.plan as flow_plan_module
    import genad_fast.streaming.chunks as chunks_module
    import genad_fast.streaming.diffusion as stream_diffusion
    import genad_fast.streaming.windows as windows_module

    built = {"flow": 0, "flow_plans": 0, "diffusion": 0, "tiles": 0, "bounds": 0}
    real_flow, real_plan = flow_module.scoring_log_prob, sampler_module.DenoiserInference
    real_tiles, real_bounds = stream_diffusion.tile_groups, chunks_module.extreme_bounds

    def counted(key, real):
        def f(*a, **k):
            built[key] += 1
            return real(*a, **k)
        return f

    class CountedPlan(real_plan):
        def __init__(self, *a, **k):
            built["diffusion"] += 1
            super().__init__(*a, **k)

    class CountedFlowPlan(flow_plan_module.FlowInference):
        def __init__(self, *a, **k):
            built["flow_plans"] += 1
            super().__init__(*a, **k)

    monkeypatch.setattr(flow_plan_module, "FlowInference", CountedFlowPlan)
    monkeypatch.setattr(windows_module, "FlowInference", CountedFlowPlan)

    monkeypatch.setattr(flow_module, "scoring_log_prob", counted("flow", real_flow))
    monkeypatch.setattr(sampler_module, "DenoiserInference", CountedPlan)
    monkeypatch.setattr(stream_diffusion, "tile_groups", counted("tiles", real_tiles))
    monkeypatch.setattr(chunks_module, "extreme_bounds", counted("bounds", real_bounds))
    x = series(80, 9)
    for name in ("flow", "diffusion"):
        det = fitted(name)
        for exact in (True, False):
            built.update(flow=0, flow_plans=0, diffusion=0, tiles=0, bounds=0)
            s = det.stream(exact=exact)
            for i in range(len(x)):
                s.update(x[i:i + 1])
            s.flush()
            # exact=False: the flow holds a second plan for batches of a few windows (streaming.windows)
            want = {"flow": dict(flow=1, flow_plans=1 if exact else 2, diffusion=0, tiles=0, bounds=1),
                    "diffusion": dict(flow=0, flow_plans=0, diffusion=1, tiles=1, bounds=1)}[name]
            assert built == want, (name, exact, built)
        det.decision_function(x)  # a batch call builds its own, once
        assert built[name] == 2, (name, built)


def test_extreme_values_score_inf_as_in_batch():
    det = fitted("autoencoder")
    x = series(96, 10)
    x[50, 1] = 1e30
    with pytest.warns(ExtremeValueWarning):
        want = det.causal_decision_function(x, delay=W - 1)
    with pytest.warns(ExtremeValueWarning):  # the centred reduction: to the float32 rounding of a mean's sum
        np.testing.assert_allclose(want, det.decision_function(x), rtol=1e-6, atol=0)
    s = det.stream(delay=W - 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index, scores, alarms, _ = run_stream(s, x, np.random.default_rng(4))
    assert any(issubclass(w.category, ExtremeValueWarning) for w in caught)
    assert (np.isposinf(scores) == np.isposinf(want)).all()
    np.testing.assert_allclose(scores, want, rtol=UNPADDED_RTOL, atol=0)  # the default stream: to rounding
    assert np.isposinf(scores).sum() > 0 and alarms[np.isposinf(scores)].all()


def test_two_threads_two_streams():
    det = fitted("flow")
    xs = [series(120, 11), series(120, 12)]
    want = [det.causal_decision_function(x, delay=2) for x in xs]
    got = [None, None]

    def work(k):
        got[k] = run_stream(det.stream(delay=2), xs[k], np.random.default_rng(k), max_chunk=5)[1]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        np.testing.assert_allclose(got[k], want[k], rtol=UNPADDED_RTOL, atol=UNPADDED_RTOL)


def test_interleaved_streams_on_one_thread_and_a_batch_call_between():
    det = fitted("flow")
    a, b = series(60, 13), series(60, 14)
    sa, sb = det.stream(), det.stream(delay=5)
    out_a, out_b = [], []
    for i in range(0, 60, 3):
        out_a.append(sa.update(a[i:i + 3]).scores)
        det.decision_function(b)
        out_b.append(sb.update(b[i:i + 3]).scores)
    out_a.append(sa.flush().scores)
    out_b.append(sb.flush().scores)
    np.testing.assert_allclose(np.concatenate(out_a), det.causal_decision_function(a), rtol=UNPADDED_RTOL,
                               atol=UNPADDED_RTOL)
    np.testing.assert_allclose(np.concatenate(out_b), det.causal_decision_function(b, delay=5), rtol=UNPADDED_RTOL,
                               atol=UNPADDED_RTOL)


def test_loaded_model_streams_the_same(tmp_path):
    det = fitted("knn")
    det.save(tmp_path / "m.pt")
    other = load(str(tmp_path / "m.pt"))
    x = series(70, 15)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(run_stream(other.stream(delay=1), x, rng)[1],
                                  det.causal_decision_function(x, delay=1))


def test_one_channel_chunks(gauss_cls):
    det = gauss_cls(window=8, verbose=False, device="cpu").fit(np.sin(np.arange(200) / 5.0))
    x = np.sin(np.arange(50) / 5.0 + 1)
    s = det.stream()
    scores = np.concatenate([s.update(x[i:i + 3]).scores for i in range(0, 50, 3)] + [s.flush().scores])
    np.testing.assert_allclose(scores, det.causal_decision_function(x), rtol=UNPADDED_RTOL, atol=UNPADDED_RTOL)
    s = det.stream()
    assert s.update(0.5).index.size == 0  # a scalar is one timestamp of the one channel


def test_errors():
    det = fitted("knn")
    s = det.stream()
    with pytest.raises(ValueError, match="has 2 channels, but KNNDetector was fitted on 3"):
        s.update(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"one timestamp of a multichannel series is a \[1, C\] array"):
        s.update(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        s.update(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="0 timestamps"):
        s.update(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="columns"):
        s.update(pd.DataFrame(np.zeros((2, 3)), columns=["a", "c", "b"]))
    s.update(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="ended after 5 timestamps, fewer than window=16"):
        s.flush()
    s = det.stream()
    s.update(series(20, 1))
    s.flush()
    with pytest.raises(ValueError, match="flushed"):
        s.update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="flushed"):
        s.flush()
    with pytest.raises(ValueError, match=r"delay must be in \[0, window - 1\] = \[0, 15\]"):
        det.stream(delay=16)
    with pytest.raises(TypeError, match="delay must be an int"):
        det.stream(delay=1.0)
    with pytest.raises(ValueError, match="stride must be in"):
        det.stream(stride=17)
    with pytest.raises(ValueError, match="reduce must be one of"):
        det.stream(reduce="median")
    tab = make_detector("knn", "tabular", device="cpu").fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError, match="a stream needs a series model"):
        tab.stream()
    with pytest.raises(ValueError, match="not fitted"):
        make_detector("knn", "series", window=W).stream()
    assert set(TINY) - NO_STREAM <= set(SERIES)


def test_numpy_chunks_read_as_the_full_path():
    """A clean NumPy chunk takes the stream's short read (checks in NumPy, the normaliser's two ops); it gives the
    full path's rows bit for bit (float64 and float32 input, one row and many), and a chunk that fails a check
    (NaN, an extreme value) goes the full way: its error, its flags."""
    from genad_fast.streaming.chunks import ChunkReader, read_chunk

    det = fitted("pca")
    reader = ChunkReader(det)
    assert reader._fast
    x = series(40, 3)
    for chunk in (x[:1], x, x.astype(np.float32)[:1], x.astype(np.float32), x[::2], x[:, :][::-1]):
        z, extreme = reader(chunk)
        want, want_extreme = read_chunk(det, chunk)
        assert extreme is None and want_extreme is None
        assert z.dtype == want.dtype and torch.equal(z, want)
        assert not np.shares_memory(z.numpy(), chunk)
    bad = x[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        reader(bad)
    bad[1, 2] = 1e30  # extreme: flagged, replaced for the model
    with pytest.warns(ExtremeValueWarning):
        z, extreme = reader(bad)
    assert extreme.tolist() == [False, True, False] and torch.isfinite(z).all()


@pytest.mark.parametrize("name", SERIES)
def test_unpadded_stream_equals_the_batch_call_to_rounding(name):
    det = fitted(name)
    x = series(97, 5)
    rng = np.random.default_rng(2)
    for stride, delay in ((1, 0), (None, 7)):
        want = det.causal_decision_function(x, delay=delay, stride=stride)
        index, scores, _, _ = run_stream(det.stream(delay=delay, stride=stride, exact=False), x, rng, max_chunk=3)
        np.testing.assert_array_equal(index, np.arange(97))
        budget = UNPADDED_BUDGET.get(name, 1e-5)
        np.testing.assert_allclose(scores, want, rtol=budget, atol=budget, err_msg=f"{name} stride={stride}")


def test_unpadded_stream_scores_one_window_per_timestamp(monkeypatch):
    """The default (exact=False) at chunk 1 and stride 1: _score_model sees each completed window once, alone (no
    padding to min_score_rows copies); exact=True pads it as the batch path does."""
    det = fitted("autoencoder")
    seen: list[int] = []
    real = type(det)._score_model

    def counted(self, batch):
        seen.append(batch.shape[0])
        return real(self, batch)

    monkeypatch.setattr(type(det), "_score_model", counted)
    x = series(40, 3)
    for exact, rows in ((None, 1), (False, 1), (True, det.min_score_rows)):
        s = det.stream(stride=1) if exact is None else det.stream(stride=1, exact=exact)
        s.update(x[:W - 1])
        seen.clear()
        for i in range(W - 1, 40):
            s.update(x[i:i + 1])
        assert seen == [rows] * (40 - W + 1), (exact, seen)
    with pytest.raises(TypeError, match="exact must be a bool"):
        det.stream(exact=1)
