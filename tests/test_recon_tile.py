"""The CUDA recon_error tile kernel's code, run on the host: genad/recon_tile.h holds the kernel's three phases as
plain functions, and tests/cpp/recon_tile_check.cpp runs them block by block and thread by thread against the
one-thread-per-row loop, bit for bit, over tile sizes, channel counts up to the shared-memory budget, masks,
strided layouts, float and double. So the indexing of a kernel that only a GPU runs is checked on every machine
(the GPU runner, tests/gpu, checks the kernel itself against eager)."""
from __future__ import annotations

from host_cpp import run_host_check


def test_the_tile_phases_give_the_per_row_kernel_bits(tmp_path):
    out = run_host_check("recon_tile_check.cpp", tmp_path)
    words = out.split()
    assert words[0] == "ok" and int(words[1]) >= 1000, out
    # rows of C terms at an odd stride (C | 1) within 256 bytes: the kernel's shared memory stays at 36 KiB at
    # most, under the 48 KiB every CUDA GPU gives a block
    assert out.rstrip().endswith("largest C: float 63, double 31"), out
