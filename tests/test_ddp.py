"""Data-parallel training under torchrun (genad_fast.distributed.ddp): 2 processes on gloo against 1.

What is held, and to what tolerance (measured on 2 Xeon cores, 1 thread per process, 4 shards): the per-epoch
training (and validation) losses of a 2-process run equal those of a 1-process run on the same shards within
rtol 1e-5 (measured: at most 3.1e-7 over flow, diffusion, VAE, autoencoder, Deep SVDD, AnoGAN, f-AnoGAN); the
saved models, loaded with genad_fast.load, score new data equally within rtol 1e-4 (measured: at most 6.7e-6);
the normaliser is the same bit for bit. The only difference between the runs is the order in which gradients
are summed (per process, then over the processes). One shard in one process is ``detector.fit`` bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist

import genad_fast
from genad_fast.detectors import get_detector
from genad_fast.distributed.ddp import fit_distributed
from genad_fast.distributed.ddp_data import row_ranges
from genad_fast.distributed.ddp_sync import DDPSync, kth_smallest
from genad_fast.nn.training import BatchPlan
from genad_fast.series import Normalizer

LOSS_RTOL = 1e-5
SCORE_RTOL = 1e-4

# the runs of the 2-process test, small enough for 2 cores: key -> (detector, parameters, data). "series": 4 series
# shards of 180-300 timestamps; "uneven": 4 row shards of 400, 3, 400 and 2 rows, so that rank 1 (shards 1 and 3)
# has no sample at most steps and joins the gradient average with zeros (and, for the GAN, with no latent codes)
RUNS = {
    "flow": ("flow", dict(window=8, n_steps=2, hidden=16, epochs=3, batch_size=64), "series"),
    # the permutation mixing of wide flows, whose training steps run the fused actnorm_permute_split
    "flow-permutation": ("flow", dict(window=8, n_steps=2, hidden=16, epochs=2, batch_size=64,
                                      mixing="permutation"), "series"),
    # patience 1: epochs of at most 8 batches (training.validation_steps) where a pass is 13, so the epochs of the
    # global plan are cut the same way on one process and on two
    "flow-short-epochs": ("flow", dict(window=8, n_steps=2, hidden=16, epochs=2, batch_size=64, patience=1),
                          "series"),
    "diffusion": ("diffusion", dict(window=32, n_steps=10, residual_channels=8, n_layers=2, embedding_dim=16,
                                    epochs=2, batch_size=64, n_draws=1, tile_size=128), "series"),
    "vae": ("vae", dict(window=8, hidden=(8, 8), epochs=3, min_steps=0, batch_size=64, n_samples=2), "series"),
    "fanogan": ("fanogan", dict(window=8, hidden=(16,), critic_hidden=(16,), epochs=2, min_steps=1, batch_size=32,
                                encoder_epochs=2), "series"),
    "autoencoder-uneven": ("autoencoder", dict(hidden=(8,), epochs=3, min_steps=0, batch_size=16), "uneven"),
    "anogan-uneven": ("anogan", dict(hidden=(8,), critic_hidden=(8,), epochs=2, min_steps=1, batch_size=16,
                                     iterations=3), "uneven"),
}

WORKER = textwrap.dedent('''
    import gc, json, os, sys, warnings
    import numpy as np, torch, torch.distributed as dist
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    from genad_fast.detectors import BaseDetector, get_detector
    from genad_fast.distributed.ddp import fit_distributed

    out, runs = sys.argv[1], json.loads(sys.argv[2])
    rank = int(os.environ["RANK"])
    saves = open(os.path.join(out, "saves.log"), "a")
    original_save = BaseDetector.save
    def save(self, path):  # which process writes a model file
        saves.write(f"{rank} {os.path.basename(path)}\\n"); saves.flush()
        original_save(self, path)
    BaseDetector.save = save

    rng = np.random.default_rng(0)
    shards = [np.cumsum(rng.normal(size=(n, 3)), 0) * 0.1 + rng.normal(size=(n, 3)) for n in (300, 250, 180, 220)]
    uneven = [rng.normal(size=(n, 3)) for n in (400, 3, 400, 2)]
    result = {}
    for key, (name, params, data) in runs.items():
        det = fit_distributed(get_detector(name)(seed=3, verbose=False, **params),
                              shards if data == "series" else uneven, out=os.path.join(out, key + ".pt"))
        h = getattr(det, "history_", None)
        result[key] = {"loss": h.train_loss if h else det.gan_history_.critic_loss + det.gan_history_.generator_loss,
                        "val_loss": h.val_loss if h else [], "threshold": det.threshold_,
                        "has_scores": hasattr(det, "decision_scores_")}
    # window="auto": resolved over all the shards, the same on every process and for any number of processes
    auto = fit_distributed(get_detector("autoencoder")(window="auto", hidden=(8,), epochs=1, min_steps=0, seed=3,
                                                       verbose=False),
                           shards)
    result["auto_window"] = auto.window_
    # every process needs a shard: 1 shard for 2 processes is refused on both
    try:
        fit_distributed(get_detector("flow")(window=8, epochs=1, verbose=False), shards[:1])
    except ValueError as exc:
        result["one_shard"] = str(exc)
    # a bad shard read by rank 1 only: both processes raise, rank 0 naming rank 1
    bad = [s.copy() for s in shards]
    bad[1][5, 0] = np.nan
    try:
        fit_distributed(get_detector("flow")(window=8, epochs=1, verbose=False), bad)
    except ValueError as exc:
        result["bad_shard"] = str(exc)
    json.dump(result, open(os.path.join(out, f"rank{rank}.json"), "w"))
    # what still holds gloo state goes while the group is alive: left to the exit, gloo aborted rank 1 once in
    # a CI run ("terminate called without an active exception"), as genad_fast.distributed.ddp explains
    gc.collect()
    dist.destroy_process_group()
''')


def _torchrun(nproc: int, args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The worker run with 1 and with 2 processes: {nproc: (directory, {rank: result})}."""
    out = {}
    for nproc in (1, 2):
        d = tmp_path_factory.mktemp(f"ddp{nproc}")
        (d / "worker.py").write_text(WORKER)
        _torchrun(nproc, [str(d / "worker.py"), str(d), json.dumps(RUNS)], str(d))
        out[nproc] = (d, {r: json.loads((d / f"rank{r}.json").read_text()) for r in range(nproc)})
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_train_as_one(runs, name):
    (_, one), (_, two) = runs[1], runs[2]
    ref = one[0][name]
    for rank in (0, 1):  # every process holds the same curve
        got = two[rank][name]
        np.testing.assert_allclose(got["loss"], ref["loss"], rtol=LOSS_RTOL, err_msg=f"{name}, rank {rank}")
        np.testing.assert_allclose(got["val_loss"], ref["val_loss"], rtol=LOSS_RTOL)
        np.testing.assert_allclose(got["threshold"], ref["threshold"], rtol=SCORE_RTOL)
    assert len(ref["loss"]) >= 2 and ref["loss"][0] != ref["loss"][-1]  # it trained
    assert two[0][name]["has_scores"] and not two[1][name]["has_scores"]  # decision_scores_ on rank 0 only


@pytest.mark.parametrize("name", list(RUNS))
def test_saved_models_score_alike(runs, name):
    (d1, _), (d2, _) = runs[1], runs[2]
    a, b = genad_fast.load(str(d1 / f"{name}.pt")), genad_fast.load(str(d2 / f"{name}.pt"))
    assert type(a) is type(b) is get_detector(RUNS[name][0])
    test = np.random.default_rng(1).normal(size=(200, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa, sb = a.decision_function(test), b.decision_function(test)
    np.testing.assert_allclose(sb, sa, rtol=SCORE_RTOL, atol=1e-6)
    torch.testing.assert_close(b.normalizer_.mean, a.normalizer_.mean, rtol=0, atol=0)
    torch.testing.assert_close(b.normalizer_.scale, a.normalizer_.scale, rtol=0, atol=0)


def test_only_rank_zero_writes(runs):
    for nproc in (1, 2):
        d, _ = runs[nproc]
        lines = (d / "saves.log").read_text().split()
        assert lines == [tok for name in RUNS for tok in ("0", f"{name}.pt")]


def test_window_auto_is_one_for_any_number_of_processes(runs):
    """The worker's series shards with window="auto": rank 0 and 1 of 2 processes and the 1-process run resolve the
    window the in-process fit on the same 4 series resolves."""
    rng = np.random.default_rng(0)  # the worker's shards
    shards = [np.cumsum(rng.normal(size=(n, 3)), 0) * 0.1 + rng.normal(size=(n, 3)) for n in (300, 250, 180, 220)]
    want = get_detector("autoencoder")(window="auto", hidden=(8,), epochs=1, min_steps=0, seed=3,
                                       verbose=False).fit(shards)
    got = [runs[1][1][0]["auto_window"], runs[2][1][0]["auto_window"], runs[2][1][1]["auto_window"]]
    assert got == [want.window_] * 3


def test_errors_are_raised_on_every_process(runs):
    _, two = runs[2]
    for rank in (0, 1):
        assert "2 processes but 1 shard(s)" in two[rank]["one_shard"]
    assert "shard 1" in two[1]["bad_shard"] and "NaN" in two[1]["bad_shard"]  # its own error, naming the shard
    assert "failed on rank 1 of 2" in two[0]["bad_shard"] and "shard 1" in two[0]["bad_shard"]


def test_command_line_row_ranges_one_and_two_processes(tmp_path):
    """torchrun -m genad_fast.distributed.ddp on one CSV cut into 3 row ranges: 1 and 2 processes agree."""
    import pandas as pd

    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=(900, 3)), 0) * 0.1 + rng.normal(size=(900, 3))
    pd.DataFrame(x, columns=["a", "b", "c"]).assign(t=np.arange(900)).to_csv(tmp_path / "data.csv", index=False)
    reports = {}
    for nproc in (1, 2):
        args = ["-m", "genad_fast.distributed.ddp", "--detector", "autoencoder", "--input", "data.csv",
                "--num-shards", "3", "--time-column", "t", "--params",
                '{"window": 16, "hidden": [8], "epochs": 3, "min_steps": 0, "batch_size": 64, "verbose": false}',
                "--out", f"m{nproc}.pt", "--report", f"r{nproc}.json"]
        done = _torchrun(nproc, args, str(tmp_path))
        assert done.stdout.count("fitted autoencoder") == 1  # rank 0 alone prints
        reports[nproc] = json.loads((tmp_path / f"r{nproc}.json").read_text())
    assert reports[2]["world_size"] == 2 and reports[2]["num_shards"] == 3
    np.testing.assert_allclose(reports[2]["train_loss"], reports[1]["train_loss"], rtol=LOSS_RTOL)
    model = genad_fast.load(str(tmp_path / "m2.pt"))
    assert list(model.feature_names_in_) == ["a", "b", "c"]


# ---- one process in this test process (a world of 1 on gloo) -------------------------------------------------
@pytest.fixture
def world_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_outside_a_process_group_is_a_clear_error(monkeypatch):
    assert not dist.is_initialized()
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="launch the program with torchrun"):
        fit_distributed(get_detector("flow")(window=8, epochs=1), [np.zeros((40, 2))])


def test_a_detector_without_gradient_training_is_refused():
    with pytest.raises(TypeError, match="KNNDetector has nothing to train with gradients"):
        fit_distributed(get_detector("knn")(), [np.zeros((40, 2))])


@pytest.mark.parametrize("name,params,data", [
    ("flow", dict(window=8, n_steps=2, hidden=16, epochs=2, batch_size=64, val_fraction=0.2, patience=1), "series"),
    ("diffusion", dict(window=32, mode="impute", n_steps=6, residual_channels=8, n_layers=2, embedding_dim=16,
                       epochs=2, batch_size=64, n_draws=1, tile_size=128), "series"),
    ("deep_svdd", dict(objective="soft-boundary", warm_up_epochs=1, hidden=(16,), epochs=2, pretrain_epochs=1,
                       min_steps=0, batch_size=64), "rows"),
    ("anogan", dict(hidden=(16,), critic_hidden=(16,), epochs=2, min_steps=1, batch_size=32, iterations=3),
     "rows"),
    # min_steps raises the epochs (180 training rows at batch 64: 3 steps an epoch, so 12 steps are 4 epochs)
    ("vae", dict(hidden=(8,), epochs=2, min_steps=12, batch_size=64, n_samples=2), "rows"),
    ("deep_svdd", dict(hidden=(8,), epochs=1, pretrain_epochs=1, min_steps=12, batch_size=64), "rows"),
])
def test_one_shard_is_fit_bit_for_bit(world_of_one, name, params, data):
    rng = np.random.default_rng(0)
    X = np.cumsum(rng.normal(size=(300, 3)), 0) * 0.1 + rng.normal(size=(300, 3)) if data == "series" \
        else rng.normal(size=(200, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = get_detector(name)(seed=3, verbose=False, **params).fit(X)
        b = fit_distributed(get_detector(name)(seed=3, verbose=False, **params), [X])
    sa, sb = a._get_state(), b._get_state()
    for key, value in sa.items():
        if isinstance(value, dict):
            for k, v in value.items():
                assert torch.equal(v, sb[key][k]), f"{key}.{k}"
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, sb[key]), key
        else:
            assert value == sb[key], key
    assert np.array_equal(a.decision_scores_, b.decision_scores_) and a.threshold_ == b.threshold_
    if params.get("min_steps", 0) > 1:  # the epochs were raised, in both fits alike
        assert len(b.history_.train_loss) == len(a.history_.train_loss) == 4


def test_shard_statistics(world_of_one):
    """Normaliser over shards = Normalizer.fit on all rows; a shard with other channels is named."""
    rng = np.random.default_rng(0)
    shards = [rng.normal(loc=m, scale=s, size=(n, 4)) for m, s, n in ((5.0, 2.0, 70), (-3.0, 0.5, 40), (1e3, 9.0, 90))]
    det = fit_distributed(get_detector("autoencoder")(hidden=(8,), epochs=1, min_steps=0, verbose=False), shards)
    full = Normalizer.fit(torch.from_numpy(np.concatenate(shards)).float())  # the detector sees float32
    torch.testing.assert_close(det.normalizer_.mean, full.mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(det.normalizer_.scale, full.scale, rtol=1e-12, atol=0)
    assert det.decision_scores_.shape == (200,)
    with pytest.raises(ValueError, match="shard 1 .* has 3 columns, shard 0 has 4 columns"):
        fit_distributed(get_detector("autoencoder")(epochs=1, min_steps=0, verbose=False),
                        [shards[0], shards[1][:, :3]])


def test_window_auto_over_the_shards(world_of_one):
    """window="auto" resolves as a fit on the collection of the shards does (each shard's period, their median), and
    a shard shorter than that window is named."""
    t = np.arange(600)[:, None]
    rng = np.random.default_rng(1)
    shards = [np.sin(2 * np.pi * t[:n] / p + np.arange(2)) + 0.1 * rng.normal(size=(n, 2))
              for n, p in ((600, 40), (500, 48), (450, 44))]
    params = dict(window="auto", hidden=(8,), epochs=1, min_steps=0, seed=0, verbose=False)
    det = fit_distributed(get_detector("autoencoder")(**params), shards)
    want = get_detector("autoencoder")(**params).fit(shards)
    assert det.window == "auto" and det.window_ == want.window_ and 30 <= det.window_ <= 60
    assert det.decision_scores_.shape == (1550,)
    short = shards[:2] + [shards[2][:7]]  # under the smallest window (8): the median cannot fit it
    with pytest.raises(ValueError, match=r"shard 2 \(.*\) has \d+ timestamps, fewer than the window"):
        fit_distributed(get_detector("autoencoder")(**params), short)


def test_radius_order_statistic(world_of_one):
    values = torch.from_numpy(np.random.default_rng(0).exponential(size=1001))
    sync = DDPSync(1, torch.device("cpu"))
    for k in (1, 17, 500, 1001):
        assert kth_smallest(values, k, sync) == float(np.sort(values.numpy())[k - 1])


def test_row_ranges_cover_the_file(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(23 * 2, dtype=np.float64).reshape(23, 2))
    parts = row_ranges(tmp_path / "x.npy", 4)
    assert [(p.start, p.stop) for p in parts] == [(0, 5), (5, 11), (11, 17), (17, 23)]
    np.testing.assert_array_equal(np.concatenate([p() for p in parts]), np.load(tmp_path / "x.npy"))


@pytest.mark.parametrize("sizes,batch", [([1000], 256), ([300, 250, 180, 220], 64), ([5, 1, 900, 3], 7)])
def test_batch_plan(sizes, batch):
    plan = BatchPlan(sizes, batch)
    assert plan.steps == -(-sum(sizes) // batch)
    for s, n in enumerate(sizes):
        b = plan.bounds(s)
        assert b[0] == 0 and b[-1] == n and np.all(np.diff(b) >= 0)  # every sample once per epoch
    assert plan.global_sizes.sum() == sum(sizes)
    assert np.all(np.abs(plan.global_sizes[:-1] - batch) < len(sizes))
    if len(sizes) == 1:  # the plain loop's batches
        assert np.all(plan.global_sizes[:-1] == batch)
    assert plan.shares(batch).sum() == batch and plan.shares(batch).min() >= 0


def test_the_uneven_run_has_idle_steps():
    """The "uneven" runs above do exercise a process without samples: rank 1's shards (1 and 3) are empty at most
    steps of the autoencoder's plan (training rows after the 10 % validation split)."""
    plan = BatchPlan([360, 3, 360, 2], 16)
    rank1 = np.diff(plan.bounds(1)) + np.diff(plan.bounds(3))
    assert (rank1 == 0).sum() > plan.steps // 2 and rank1.sum() == 5
