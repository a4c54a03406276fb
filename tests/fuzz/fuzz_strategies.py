"""Hypothesis strategies shared by the fuzz suite: arrays with awkward layouts, magnitudes and bad values.

The number of examples a fuzz test runs scales with the active Hypothesis profile (``tests/conftest.py``):
:func:`examples` multiplies a test's own budget (sized for the "ci" profile, whose ``max_examples`` is 100)
by ``max_examples / 100``, so the "long" profile runs every fuzz test proportionally longer.
"""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st


def examples(n: int) -> settings:
    """``@settings`` for a fuzz test whose ci budget is ``n`` examples (scaled by the active profile)."""
    scale = max(1, settings().max_examples // 100)
    return settings(max_examples=n * scale)


#: Magnitudes of the data, as powers of ten: tiny, normal and huge (float32 holds 1e-38 .. 3e38).
MAGNITUDES = st.sampled_from([-30, -8, -3, 0, 0, 0, 1, 3, 8, 30])
DTYPES = st.sampled_from([torch.float32, torch.float64])


@st.composite
def matrices(draw, rows=st.integers(0, 33), cols=st.integers(1, 33), dtype=DTYPES, magnitude=MAGNITUDES,
             bad_values=True):
    """``(t, dense)``: a ``[rows, cols]`` tensor in a random layout (contiguous, a column slice of a wider
    matrix with a row stride, every other row, or a 3-D batch view) and its contiguous copy. Some columns
    are constant or near-constant, and with ``bad_values`` a few entries are NaN, +inf or -inf."""
    n, d, dt = draw(rows), draw(cols), draw(dtype)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * 10.0 ** draw(magnitude)
    for j in range(d):
        kind = draw(st.sampled_from(["normal"] * 4 + ["constant", "near_constant"]))
        if kind == "constant":
            x[:, j] = x[0, j] if n else 0.0
        elif kind == "near_constant" and n:
            x[:, j] = x[0, j] * (1.0 + 1e-7 * rng.normal(size=n))
    if bad_values and n and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            x[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf]))
    # torch.from_numpy of an empty array has strides (0, 0), which every fused op refuses (a known defect, its own
    # test in test_fuzz_ops.py); built through torch.tensor here, so the fuzzing explores everything else
    dense = torch.from_numpy(x).to(dt) if n else torch.empty((0, d), dtype=dt)
    return draw(layouts(dense)), dense


@st.composite
def layouts(draw, dense: torch.Tensor):
    """``dense`` (2-D) in a random memory layout with unit stride on the last dimension."""
    n, d = dense.shape
    kind = draw(st.sampled_from(["contiguous", "column_slice", "every_other_row", "batch_view"]))
    if kind == "column_slice":
        left, right = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        big = torch.full((n, left + d + right), 7.0, dtype=dense.dtype)
        big[:, left:left + d] = dense
        return big[:, left:left + d]
    if kind == "every_other_row":
        big = torch.full((2 * n, d), 7.0, dtype=dense.dtype)
        big[::2] = dense
        return big[::2]
    if kind == "batch_view" and n % 2 == 0:
        return dense.reshape(2, n // 2, d)
    return dense.clone()


def assert_nan_where(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """NaN in exactly the same places as the reference (propagated, never zeroed or invented)."""
    got_nan, want_nan = torch.isnan(got), torch.isnan(want)
    assert torch.equal(got_nan, want_nan), (f"{what}: NaN at {got_nan.nonzero()[:5].tolist()}, the reference at "
                                            f"{want_nan.nonzero()[:5].tolist()}")
