"""The CUDA row-group kernels' code, run on the host: the coupling forward / inverse and AnoGAN's residual and Adam
kernels give each row a group of lanes with 16-byte loads (genad/row_groups.h), and tests/cpp/row_groups_check.cpp
replays their whole launch grid, block by block and lane by lane, with each warp's shuffle butterflies, against
plain per-element loops over the same math: outputs bit for bit, row sums within a few ulps, nothing written past
the last row or into the padding between rows, Adam's counts advanced on active rows only. Row lengths 0 to 1,000,
1 to 257 rows, padded strides, both vector widths, float and double. So the indexing of kernels that only a GPU
runs is checked on every machine (the GPU runner, tests/gpu, checks the kernels themselves against eager)."""
from __future__ import annotations

from host_cpp import run_host_check


def test_the_row_group_kernels_give_the_per_element_results(tmp_path):
    out = run_host_check("row_groups_check.cpp", tmp_path)
    words = out.split()
    assert words[0] == "ok" and int(words[1]) >= 9000, out
