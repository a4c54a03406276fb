"""The held-out windows of series (genad_fast.nn.training, "Validation samples of series"): the end of each
series, after a gap, so that no held-out window shares a timestamp with a training window."""
import numpy as np
import pytest
import torch

from genad_fast.detectors.autoencoder import AutoEncoderDetector
from genad_fast.detectors.vae import VAEDetector
from genad_fast.detectors._training_params import series_validation
from genad_fast.nn import training


def _timestamps(indices, starts_of_series, stride, window):
    """(series, timestamp) pairs covered by the windows ``indices`` of consecutive series."""
    out = set()
    for i in indices.tolist():
        s = int(np.searchsorted(starts_of_series, i, side="right") - 1)
        start = (i - starts_of_series[s]) * stride
        out.update((s, t) for t in range(start, start + window))
    return out


@pytest.mark.parametrize("window, stride", [(16, 1), (16, 4), (10, 3), (8, 8)])
@pytest.mark.parametrize("lengths", [(200,), (200, 57, 120)])
def test_held_out_windows_share_no_timestamp_with_training_windows(window, stride, lengths):
    n_windows = tuple((T - window) // stride + 1 for T in lengths)
    gap = training.series_val_gap(window, stride)
    config = training.TrainConfig(val_fraction=0.2, val_gap=gap,
                                  val_segments=n_windows if len(lengths) > 1 else None)
    train, val = training.split_train_val(sum(n_windows), config, torch.Generator().manual_seed(0))
    assert set(train.tolist()).isdisjoint(val.tolist())
    firsts = np.cumsum((0,) + n_windows)[:-1]
    assert _timestamps(train, firsts, stride, window).isdisjoint(_timestamps(val, firsts, stride, window))
    assert training.split_sizes(sum(n_windows), config) == (train.numel(), val.numel())
    for s, n in enumerate(n_windows):  # each series long enough holds out its last round(0.2 n) windows
        mine = val[(val >= firsts[s]) & (val < firsts[s] + n)] - firsts[s]
        n_val = round(0.2 * n)
        if 2 * (n - n_val - gap) >= n:
            assert sorted(mine.tolist()) == list(range(n - n_val, n))
            # ... and only the gap before them is left unused
            assert ((train >= firsts[s]) & (train < firsts[s] + n)).sum() == n - n_val - gap
        else:
            assert mine.numel() == 0


def test_the_gap_is_the_fewest_windows_that_keep_the_sets_apart():
    # windows i and j are disjoint when (j - i) * stride >= W
    assert training.series_val_gap(16, 1) == 15
    assert training.series_val_gap(16, 4) == 3
    assert training.series_val_gap(16, 16) == 0
    assert training.series_val_gap(10, 3) == 3


def test_a_series_too_short_for_its_gap_holds_nothing_out():
    # 20 windows of 16 timestamps: 2 held out after a gap of 15 would leave 3 of 20 to train on
    config = training.TrainConfig(val_fraction=0.1, val_gap=15)
    train, val = training.split_train_val(20, config, torch.Generator().manual_seed(0))
    assert val.numel() == 0 and sorted(train.tolist()) == list(range(20))


def test_rows_are_still_held_out_at_random():
    config = training.TrainConfig(val_fraction=0.25)
    train, val = training.split_train_val(40, config, torch.Generator().manual_seed(0))
    assert val.numel() == 10 and sorted(train.tolist() + val.tolist()) == list(range(40))
    assert sorted(val.tolist()) != list(range(30, 40))  # not the last rows


def test_segments_must_add_up_to_the_shard():
    config = training.TrainConfig(val_fraction=0.1, val_gap=3, val_segments=(10, 10))
    with pytest.raises(ValueError, match=r"val_segments \(10, 10\) hold 20 windows, the shard 30"):
        training.split_train_val(30, config, torch.Generator())
    with pytest.raises(ValueError, match="val_segments .* needs val_gap"):
        training.TrainConfig(val_segments=(10,))
    with pytest.raises(ValueError, match="val_gap must be None or an int >= 0"):
        training.TrainConfig(val_gap=-1)


@pytest.mark.parametrize("cls", [AutoEncoderDetector, VAEDetector])
def test_detectors_hold_out_the_end_of_each_series(cls, monkeypatch):
    """A series fit (one series, and a collection of several) trains with the blocked split of its window and
    stride; a table with the random one."""
    seen = []
    original = training.split_train_val

    def spy(n, config, generator):
        seen.append((n, config.val_gap, config.val_segments))
        return original(n, config, generator)

    monkeypatch.setattr(training, "split_train_val", spy)
    rng = np.random.default_rng(0)
    kw = dict(epochs=2, min_steps=0, seed=0, verbose=False)
    cls(window=12, stride=2, **kw).fit(rng.normal(size=(300, 2)))
    assert seen[-1] == (145, training.series_val_gap(12, 2), None)
    cls(window=12, **kw).fit([rng.normal(size=(100, 2)), rng.normal(size=(80, 2))])
    assert seen[-1] == (89 + 69, 11, (89, 69))
    cls(**kw).fit(rng.normal(size=(100, 3)))
    assert seen[-1] == (100, None, None)
    assert series_validation(cls(**kw).fit(rng.normal(size=(50, 3)))) == {}
