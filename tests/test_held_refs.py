"""Reference sets held packed between calls of the cpu distance kernels (genad_fast.ops.distance.hold_refs), and
the kNN/KDE detectors' use of it (a stream packs its reference set once, issue #15 point 5).

- Held or not, knn_distance and kde_logpdf give the same bits (the same packing, made once), for 1, 7, 8 and
  1000 queries, float32 and float64, also called with a view of the held tensor; both match the eager op within
  the op spec's tolerance; opcheck passes on a held set.
- The cached pack is dropped when it must be: an in-place write to the held tensor (the next call sees the new
  data), a release, the hold's garbage collection; an inference tensor cannot be held (no version counter).
- Detectors: an open kNN stream holds one packed set, a flushed one none; a refit (new reference_) streams the
  new model's scores; one fitted model shared by threads (streams and decision_function at once) gives every
  thread the single-thread scores.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

import genad_fast
from genad_fast import ops
from genad_fast.detectors import get_detector
from genad_fast.ops.distance import HeldRefs, hold_refs
from op_specs.compare import close
from op_specs.distance import KDE_TOL, KNN_TOL, data

pytestmark = pytest.mark.skipif(not genad_fast.build_info()["loaded"], reason="genad_fast._C is not built")


def _held(packed_only: bool = True) -> int:
    return int(genad_fast._ext._C._held_refs_count(packed_only))


@pytest.fixture(autouse=True)
def no_holds_left():
    gc.collect()
    before = _held(False)
    yield
    gc.collect()
    assert _held(False) == before, "a hold outlived its owner"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 8, 1000])
def test_held_equals_unheld_and_eager(n, dtype):
    q, r = data(n, 300, 24, dtype, seed=n)
    free_knn = ops.knn_distance(q, r, 5, backend="cpu")
    free_kde = ops.kde_logpdf(q, r, 0.8, backend="cpu")
    with hold_refs(r) as h:
        assert isinstance(h, HeldRefs) and h.held and _held() == 0  # packed at the first call, not before
        for _ in range(2):  # the first call packs and stores, the second reuses
            assert torch.equal(ops.knn_distance(q, r, 5, backend="cpu"), free_knn)
            assert _held() == 1
        assert torch.equal(ops.kde_logpdf(q, r, 0.8, backend="cpu"), free_kde)  # the same packed form
        assert torch.equal(ops.knn_distance(q, r[:], 5, backend="cpu"), free_knn)  # a view, same layout
        assert _held() == 1
    assert _held() == 0
    close(free_knn, ops.knn_distance(q, r, 5, backend="eager"), KNN_TOL("cpu", dtype))
    close(free_kde, ops.kde_logpdf(q, r, 0.8, backend="eager"), KDE_TOL("cpu", dtype))


def test_opcheck_on_a_held_set():
    q, r = data(8, 50, 6, torch.float32)
    with hold_refs(r):
        ops.knn_distance(q, r, 3, backend="cpu")
        torch.library.opcheck(torch.ops.genad_fast.knn_distance.default, (q, r, 3, False))
        torch.library.opcheck(torch.ops.genad_fast.kde_logpdf.default, (q, r, 0.5, False))


def test_in_place_write_is_seen():
    q, r = data(7, 200, 10, torch.float32, seed=3)
    with hold_refs(r):
        before = ops.knn_distance(q, r, 4, backend="cpu")
        with torch.no_grad():
            r[:50] = q[0]  # the version counter moves: the pack is stale
        after = ops.knn_distance(q, r, 4, backend="cpu")
        assert torch.equal(after, ops.knn_distance(q, r.clone(), 4, backend="cpu"))  # the new data's distances
        assert not torch.equal(after, before) and float(after[0, 0]) == 0.0
        with torch.inference_mode():  # an in-place write under inference_mode moves a normal tensor's counter too
            r[:50] = q[1]
        assert torch.equal(ops.knn_distance(q, r, 4, backend="cpu"), ops.knn_distance(q, r.clone(), 4, backend="cpu"))


def test_release_and_garbage_collection_drop_the_pack():
    q, r = data(3, 40, 5, torch.float32)
    h = hold_refs(r)
    ops.knn_distance(q, r, 2, backend="cpu")
    assert _held() == 1
    h.release()
    h.release()  # idempotent
    assert _held(False) == 0 and not h.held
    h = hold_refs(r)
    ops.knn_distance(q, r, 2, backend="cpu")
    del h
    gc.collect()
    assert _held(False) == 0


def test_bad_holds():
    with pytest.raises(TypeError, match="torch.Tensor"):
        hold_refs(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        hold_refs(torch.zeros(3))
    with torch.inference_mode():
        t = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="version counter"):
        hold_refs(t)


def _series(T: int, seed: int) -> np.ndarray:
    t = np.arange(T)[:, None]
    return np.sin(2 * np.pi * t / 20 + np.arange(3)) + 0.2 * np.random.default_rng(seed).normal(size=(T, 3))


def _stream(det, x, chunk=1):
    s = det.stream(stride=1)
    out = [s.update(x[i:i + chunk]).scores for i in range(0, len(x), chunk)]
    out.append(s.flush().scores)
    return s, np.concatenate(out)


@pytest.mark.parametrize("name", ["knn", "kde"])
def test_stream_holds_one_pack_and_a_refit_streams_the_new_model(name):
    det = get_detector(name)(window=12, device="cpu", verbose=False).fit(_series(400, 0))
    x = _series(80, 1)
    s = det.stream(stride=1)
    s.update(x[:30])
    assert _held() == 1  # the stream's hold, packed at its first window
    s.update(x[30:])
    assert _held() == 1
    s.flush()
    assert _held(False) == 0  # a flushed stream drops its hold at once
    got = _stream(det, x, chunk=3)[1]
    np.testing.assert_array_equal(got, det.causal_decision_function(x, stride=1))
    assert _held(False) == 0  # the batch call's hold went with it
    old_ref = det.reference_
    det.fit(_series(400, 2))  # a new reference set: a new stream packs it
    assert det.reference_ is not old_ref
    got = _stream(det, x)[1]
    np.testing.assert_array_equal(got, det.causal_decision_function(x, stride=1))
    gc.collect()
    assert _held(False) == 0


def test_one_fitted_knn_shared_by_threads():
    det = get_detector("knn")(window=12, device="cpu", verbose=False).fit(_series(400, 0))
    xs = [_series(60, 10 + i) for i in range(4)]
    want_stream = [det.causal_decision_function(x, stride=1) for x in xs]
    want_batch = [det.decision_function(x) for x in xs]
    got, errors = {}, []

    def work(i):
        try:
            for _ in range(3):
                got[("stream", i)] = _stream(det, xs[i], chunk=1 + i)[1]
                got[("batch", i)] = det.decision_function(xs[i])
        except Exception as exc:  # reported below: an exception in a thread would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        np.testing.assert_array_equal(got[("stream", i)], want_stream[i])
        np.testing.assert_array_equal(got[("batch", i)], want_batch[i])
