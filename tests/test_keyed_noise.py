"""Noise keyed on a row's content (genad_fast.nn.keyed_noise): the same row, the same draws, in any batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from genad_fast.nn.keyed_noise import keyed_normals, row_keys, table_bits


def test_a_row_gets_the_same_draws_alone_and_in_any_batch():
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    together = keyed_normals(row_keys(x), seed=3, n=16)
    alone = torch.cat([keyed_normals(row_keys(x[i:i + 1]), seed=3, n=16) for i in range(50)])
    shuffled = keyed_normals(row_keys(x.flip(0)), seed=3, n=16).flip(0)
    torch.testing.assert_close(together, alone, rtol=0, atol=0)
    torch.testing.assert_close(together, shuffled, rtol=0, atol=0)
    assert not torch.equal(together, keyed_normals(row_keys(x), seed=4, n=16))


def test_keys_see_every_bit_and_layout_does_not_matter():
    x = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, 4] = torch.nextafter(y[:, 4].float(), torch.tensor(np.inf)).double()  # one float32 ulp in one column
    assert (row_keys(x) != row_keys(y)).all()
    torch.testing.assert_close(row_keys(x), row_keys(x.t().contiguous().t()), rtol=0, atol=0)
    assert row_keys(x).unique().numel() == 20


@pytest.mark.parametrize("n_rows", [1, 4096])
def test_the_draws_are_standard_normal_and_uncorrelated(n_rows):
    x = torch.randn(n_rows, 3, generator=torch.Generator().manual_seed(2))
    z = keyed_normals(row_keys(x), seed=11, n=max(2, 8000 // n_rows), dtype=torch.float64).flatten().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    if n_rows > 1:
        draws = keyed_normals(row_keys(x), seed=11, n=2, dtype=torch.float64).numpy()
        assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.06
        # rows share a table row only by hash collision: 4096 rows in 2^15 table rows hit 2^15·(1 - e^-1/8) = 3851
        assert 3750 < len(np.unique(draws[:, 0])) <= n_rows


def test_tables_stay_small_for_wide_draws():
    assert table_bits(16) == 15 and table_bits(160) == 14 and table_bits(1024) == 12 and table_bits(10 ** 6) == 10
    z = keyed_normals(row_keys(torch.randn(3, 2)), seed=5, n=20000)
    assert z.shape == (3, 20000) and torch.isfinite(z).all()
