"""Every registered detector shared between threads, and no detector touching the global RNG (issue #12, defect 5).

- N threads scoring one fitted detector get exactly the sequential scores (bitwise, CPU);
- fit and score leave the process-global torch and numpy RNGs alone: a thread drawing from the global
  torch RNG while a detector fits and scores in another sees the stream it would see alone;
- two detectors fitted in two threads at once equal the same fits done one after the other;
- a fit in another process gives the same scores as a fit here (same seed).

Each case is small (a fit takes about a second on one core) and runs on the CPU, where equal means bitwise equal.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from genad_fast.detectors import detector_names, get_detector

pytestmark = pytest.mark.usefixtures("one_thread")

#: case -> (registered name, parameters, data kind). Every registered detector has at least one case, and
#: each random code path (the diffusion detector's two modes, AnoGAN's random restarts) has its own.
CASES: dict[str, tuple[str, dict, str]] = {
    "flow": ("flow", dict(n_steps=2, hidden=16, n_blocks=1, epochs=3, batch_size=64), "rows"),
    "flow-series": ("flow", dict(window=8, stride=2, n_steps=2, hidden=16, n_blocks=1, epochs=2, batch_size=64),
                    "series"),
    "diffusion": ("diffusion", dict(window=16, stride=4, n_steps=10, residual_channels=8, n_layers=2,
                                    dilation_cycle=2, embedding_dim=8, epochs=2, batch_size=32, n_draws=2,
                                    tile_size=32, tile_batch=2), "series"),
    "diffusion-impute": ("diffusion", dict(window=16, stride=4, mode="impute", n_steps=10, denoise_steps=4,
                                           residual_channels=8, n_layers=2, dilation_cycle=2, embedding_dim=8,
                                           epochs=2, batch_size=32, n_draws=1, tile_size=32, tile_batch=2),
                         "series"),
    "autoencoder": ("autoencoder", dict(hidden=(8,), epochs=3, min_steps=0, batch_size=64), "rows"),
    "vae": ("vae", dict(hidden=(8,), epochs=3, min_steps=0, batch_size=64, n_samples=4), "rows"),
    "vae-series": ("vae", dict(window=8, stride=2, hidden=(4,), epochs=2, min_steps=0, batch_size=64, n_samples=3),
                   "series"),
    "deep_svdd": ("deep_svdd", dict(hidden=(8,), epochs=3, pretrain_epochs=2, min_steps=0, batch_size=64), "rows"),
    "pca": ("pca", dict(), "rows"),
    "ocsvm": ("ocsvm", dict(), "rows"),
    "iforest": ("iforest", dict(n_estimators=20), "rows"),
    "lof": ("lof", dict(n_neighbors=10), "rows"),
    "kde": ("kde", dict(), "rows"),
    "knn": ("knn", dict(), "rows"),
    "anogan": ("anogan", dict(hidden=(16,), critic_hidden=(16,), epochs=2, min_steps=1, batch_size=32, iterations=8,
                              restarts=2, tol=0.0), "rows"),
    "fanogan": ("fanogan", dict(hidden=(16,), critic_hidden=(16,), encoder_hidden=(16,), epochs=2, min_steps=1,
                                encoder_epochs=2, batch_size=32), "rows"),
    "dte": ("dte", dict(hidden=(16, 16), epochs=3, n_steps=40, batch_size=32, min_steps=0), "rows"),
    "dte-series": ("dte", dict(window=8, stride=2, variant="inverse_gamma", hidden=(16,), epochs=2, n_steps=40,
                               batch_size=32, min_steps=0), "series"),
    "ensemble": ("ensemble", dict(member_params={"flow": dict(n_steps=2, hidden=16, n_blocks=1, epochs=2),
                                                 "dte": dict(hidden=(16,), epochs=2, n_steps=40, min_steps=0)}),
                 "rows"),
}
#: Rows (or windows) per scoring batch, set on each fitted detector: several batches per call, so that a
#: call's state lives across batches while other threads score.
SCORE_BATCH = 40
N_THREADS, CALLS_PER_THREAD = 4, 3


def make_data(kind: str, seed: int = 0) -> np.ndarray:
    """Training rows ``[240, 4]`` (correlated Gaussian) or a series ``[240, 2]`` (two noisy sines)."""
    rng = np.random.default_rng(seed)
    if kind == "rows":
        mix = np.array([[1.0, 0.5, 0.0, 0.2], [0.0, 1.0, 0.3, 0.0], [0.0, 0.0, 1.0, 0.4], [0.0, 0.0, 0.0, 1.0]])
        return (rng.normal(size=(240, 4)) @ mix).astype(np.float32)
    t = np.arange(240)[:, None]
    return (np.sin(2 * np.pi * t / 20 + np.array([0.0, 1.0])) + 0.1 * rng.normal(size=(240, 2))).astype(np.float32)


def make_inputs(kind: str, n: int) -> list[np.ndarray]:
    """``n`` different scoring inputs: each from its own seed, 120 rows or timestamps."""
    return [make_data(kind, seed=100 + i)[:120] for i in range(n)]


def build(case: str, seed: int = 0):
    name, params, kind = CASES[case]
    det = get_detector(name)(seed=seed, verbose=False, device="cpu", **params)  # bitwise equality: CPU
    det.score_batch_size = SCORE_BATCH
    return det


def fit(case: str, seed: int = 0):
    return build(case, seed).fit(make_data(CASES[case][2]))


_FITTED: dict[str, object] = {}


def fitted(case: str):
    """One fitted detector per case, shared by the tests of this module (never refitted or changed by them)."""
    if case not in _FITTED:
        _FITTED[case] = fit(case)
    return _FITTED[case]


def _run_threads(targets) -> list:
    """Run each callable in its own thread, all released together; their results, or the first error raised."""
    barrier = threading.Barrier(len(targets))
    results: list = [None] * len(targets)
    errors: list[BaseException] = []

    def worker(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_every_registered_detector_has_a_case():
    covered = {name for name, _, _ in CASES.values()}
    assert set(detector_names()) <= covered, f"add a case for {sorted(set(detector_names()) - covered)}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_threads_scoring_one_detector_get_the_sequential_scores(case):
    det = fitted(case)
    inputs = make_inputs(CASES[case][2], N_THREADS * CALLS_PER_THREAD)
    want = [det.decision_function(x) for x in inputs]
    assert any(not np.array_equal(want[0], w) for w in want[1:])  # different inputs, different scores

    def score_share(t):
        return lambda: [det.decision_function(inputs[t + N_THREADS * k]) for k in range(CALLS_PER_THREAD)]

    got = _run_threads([score_share(t) for t in range(N_THREADS)])
    for t in range(N_THREADS):
        for k in range(CALLS_PER_THREAD):
            np.testing.assert_array_equal(got[t][k], want[t + N_THREADS * k],
                                          err_msg=f"thread {t}, call {k}")
    # and the threads changed nothing: the first input scores as before
    np.testing.assert_array_equal(det.decision_function(inputs[0]), want[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_and_score_leave_the_global_rng_alone(case):
    """The main thread draws from the global torch RNG while another thread fits and scores: it must see the
    stream it sees alone, and the global state (torch and numpy) ends where those draws alone leave it."""
    data, test = make_data(CASES[case][2]), make_inputs(CASES[case][2], 1)[0]
    torch.manual_seed(1234)
    seed_before = torch.random.initial_seed()
    np_before = np.random.get_state()
    done = threading.Event()

    def fit_and_score():
        try:
            build(case).fit(data).decision_function(test)
        finally:
            done.set()

    worker = threading.Thread(target=fit_and_score)
    draws = []
    worker.start()
    while not done.is_set():
        draws.append(torch.rand(8))
    worker.join()
    draws.append(torch.rand(8))  # after the fit: a fit that drew from (or reseeded) the generator shows here
    state_after = torch.random.get_rng_state()

    torch.manual_seed(1234)
    alone = [torch.rand(8) for _ in draws]
    assert torch.equal(torch.stack(draws), torch.stack(alone))
    assert torch.equal(state_after, torch.random.get_rng_state())
    assert torch.random.initial_seed() == seed_before
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1]) and np_after[2:] == np_before[2:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_fits_in_two_threads_equal_sequential_fits(case):
    kind = CASES[case][2]
    test = make_inputs(kind, 1)[0]

    def fit_and_score(seed):
        det = build(case, seed).fit(make_data(kind))
        return det.decision_scores_, det.decision_function(test)

    want = [fit_and_score(0), fit_and_score(1)]
    got = _run_threads([lambda: fit_and_score(0), lambda: fit_and_score(1)])
    for seed in (0, 1):
        np.testing.assert_array_equal(got[seed][0], want[seed][0], err_msg=f"seed {seed}: training scores")
        np.testing.assert_array_equal(got[seed][1], want[seed][1], err_msg=f"seed {seed}: test scores")


def test_a_fit_in_another_process_gives_the_same_scores(tmp_path):
    """Every case fitted in a fresh interpreter (same seed, one torch thread) scores exactly as here."""
    out = tmp_path / "scores.npz"
    script = (
        "import sys, json, numpy as np, torch\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "torch.set_num_threads(1)\n"
        "import test_thread_safety as m\n"
        "scores = {}\n"
        "for case in m.CASES:\n"
        "    det = m.fit(case)\n"
        "    scores[case] = det.decision_function(m.make_inputs(m.CASES[case][2], 1)[0])\n"
        "    scores[case + '/train'] = det.decision_scores_\n"
        f"np.savez({str(out)!r}, **scores)\n"
        "print(json.dumps(sorted(scores)))\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(json.loads(run.stdout.strip().splitlines()[-1])) == 2 * len(CASES)
    there = np.load(out)
    for case in CASES:
        det = fitted(case)
        np.testing.assert_array_equal(there[case + "/train"], det.decision_scores_, err_msg=case)
        np.testing.assert_array_equal(there[case], det.decision_function(make_inputs(CASES[case][2], 1)[0]),
                                      err_msg=case)
