"""The Ledoit-Wolf shrunk covariance and the whitening built on it (genad_fast.nn.whitening)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from genad_fast.nn.whitening import MIN_SHRINKAGE, Whitening, ledoit_wolf


def correlated(n: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + 3.0


@pytest.mark.parametrize("n, p, chunk", [(300, 40, 64), (30, 40, 7), (500, 5, 4096)])
def test_ledoit_wolf_is_scikit_learns(n, p, chunk):
    x = correlated(n, p)
    mean, cov, shrinkage = ledoit_wolf(torch.tensor(x), chunk=chunk)
    want = LedoitWolf().fit(x)
    assert shrinkage == pytest.approx(want.shrinkage_, rel=1e-9)
    np.testing.assert_allclose(mean.numpy(), want.location_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), want.covariance_, rtol=1e-9, atol=1e-12)


def test_the_matrix_is_the_inverse_square_root_of_the_shrunk_covariance():
    x = torch.tensor(correlated(200, 12), dtype=torch.float32)
    w = Whitening.fit(x)
    _, cov, shrinkage = ledoit_wolf(x, min_shrinkage=MIN_SHRINKAGE)
    m = w.matrix.double()
    torch.testing.assert_close(m, m.T)
    torch.testing.assert_close(m @ cov @ m, torch.eye(12, dtype=torch.float64), rtol=0, atol=1e-4)
    assert w.shrinkage == shrinkage > 0.0


def test_the_shrinkage_is_at_least_the_floor():
    # many independent samples of few features: Ledoit-Wolf's own shrinkage is far below the floor
    x = torch.tensor(correlated(5000, 4), dtype=torch.float64)
    assert ledoit_wolf(x)[2] < MIN_SHRINKAGE
    mean, cov, shrinkage = ledoit_wolf(x, min_shrinkage=0.25)
    sample = torch.cov(x.T, correction=0)
    assert shrinkage == 0.25
    torch.testing.assert_close(cov, 0.75 * sample + 0.25 * sample.trace() / 4 * torch.eye(4, dtype=torch.float64))
    assert Whitening.fit(x.float()).shrinkage == MIN_SHRINKAGE


def test_windows_are_whitened_as_their_flattened_rows_and_in_chunks():
    x = torch.tensor(correlated(100, 12), dtype=torch.float32)
    flat, windows = Whitening.fit(x), Whitening.fit(x.reshape(100, 4, 3), chunk=9)
    torch.testing.assert_close(windows.matrix, flat.matrix)
    torch.testing.assert_close(windows.transform_all(x.reshape(100, 4, 3), chunk=9), flat(x))


def test_a_constant_feature_stays_finite_and_constant_data_has_nothing_to_whiten():
    x = correlated(200, 6)
    x[:, 2] = 5.0
    w = Whitening.fit(torch.tensor(x, dtype=torch.float32))
    z = w(torch.tensor(x, dtype=torch.float32))
    assert torch.isfinite(w.matrix).all() and torch.isfinite(z).all()
    assert Whitening.fit(torch.full((50, 4), 2.5)) is None
    with pytest.raises(ValueError, match="at least one sample"):
        Whitening.fit(torch.zeros(0, 4))
