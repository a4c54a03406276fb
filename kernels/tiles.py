"""Tile shapes of the Triton row kernels (coupling, AnoGAN's residual and Adam): a program owns rows × cols
elements of a [rows, length] matrix and walks a row's length in chunks of cols.

A fixed 16 × 64 tile leaves half its lanes masked off on rows of 32 (AnoGAN's latent of 32, a coupling over 64
features) and 15/16 of them on rows of 4: those lanes load nothing and the program moves half (or a sixteenth)
of the bytes it could. Here cols is the row length rounded up to a power of two, at most MAX_COLS, and rows
grows to keep a program at ELEMENTS elements (8 a thread at Triton's default 4 warps), so every shape keeps the
bytes in flight of a full tile.
"""
from __future__ import annotations

import triton

MAX_COLS = 64
ELEMENTS = 1024


def tile_shape(length: int, max_cols: int = MAX_COLS, elements: int = ELEMENTS) -> tuple[int, int]:
    """(rows, cols) of a program's tile for rows of ``length`` elements: cols = next power of two >= length (at
    least 1, at most max_cols), rows = elements // cols."""
    cols = min(max_cols, triton.next_power_of_2(max(int(length), 1)))
    return elements // cols, cols
