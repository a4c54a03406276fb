"""The keyed noise of :mod:`genad_fast.nn.keyed_noise` written with ops every exporter and onnxruntime run.

A VAE scores with latent draws keyed on each row's content (``row_keys`` + ``keyed_normals``): the same row gets
the same draws in any batch. An exported VAE must draw exactly those numbers to give the detector's scores, so
the graph recomputes the key from the row. Two of the eager version's steps have no exportable twin:

- ``x.view(torch.int32)`` (the IEEE bits of a float32): the ONNX exporter has no translation of a dtype view.
  Here the bits are computed arithmetically, in float64, from sign, exponent and significand:

      bits(x) = s·2^31 + e·2^23 + m,   |x| = 2^(e-127)·(1 + m/2^23)  (normal),  |x| = m·2^-149 (e = 0: subnormal)

  with e from ``floor(log2|x|)`` corrected by one step either way (log2 may round across a power of two), 2^e
  from ``pow`` (exact for integer exponents) and -0.0 told from +0.0 by the sign of 1/x. Every step is exact in
  float64, so the bits are the IEEE bits for every finite float32.
- the int64 sum over a row's columns: onnxruntime's ReduceSum accumulates int64 in double (it loses the low
  bits the key lives on). The sum is a tree of element-wise adds over column halves instead, which wrap modulo
  2^64 as torch's sum does (addition modulo 2^64 is associative, so any order gives the same key).

The rest (wrapping int64 products, xor, logical shifts, the gather from the table of normals) exports as it is.
The table itself, ``[2^b, n]`` standard normals drawn once from the seed, becomes a constant of the graph.
"""
from __future__ import annotations

import torch
from torch import nn

from genad_fast.nn import keyed_noise as _eager

__all__ = ["KeyedNormals", "float32_bits"]


def float32_bits(x: torch.Tensor) -> torch.Tensor:
    """The IEEE bits of float32 ``x`` as int64 in [0, 2^32) (``x.view(torch.int32) & 0xFFFFFFFF``), finite x."""
    a = x.abs().to(torch.float64)
    negative = (x < 0) | ((x == 0) & (torch.reciprocal(x) < 0))
    normal = a >= 2.0 ** -126
    e = torch.floor(torch.log2(torch.where(normal, a, torch.ones_like(a))))
    p = torch.pow(2.0, e)
    e = e - (a < p).to(torch.float64) + (a >= 2.0 * p).to(torch.float64)  # log2 rounded across 2^e
    p = torch.pow(2.0, e)
    exponent = torch.where(normal, e + 127.0, torch.zeros_like(e))
    # 2^149 as two factors: the exporter may store a scalar constant as float32, where 2^149 overflows
    significand = torch.where(normal, (a / p - 1.0) * 2.0 ** 23, a * 2.0 ** 75 * 2.0 ** 74)
    bits = negative.to(torch.float64) * 2.0 ** 31 + exponent * 2.0 ** 23 + significand
    return bits.to(torch.int64)


def _wrapping_row_sum(v: torch.Tensor) -> torch.Tensor:
    """Σ over the last dimension of int64 ``v`` modulo 2^64, by element-wise adds (see the module docstring)."""
    while v.shape[-1] > 1:
        half = v.shape[-1] // 2
        head = v[..., :half] + v[..., half:2 * half]
        v = torch.cat([head, v[..., 2 * half:]], dim=-1) if v.shape[-1] % 2 else head
    return v[..., 0]


class KeyedNormals(nn.Module):
    """``[B, n]`` standard normals keyed on each row of ``x`` (``[B, ...]``): ``keyed_normals(row_keys(x), seed,
    n)`` of :mod:`genad_fast.nn.keyed_noise`, in exportable ops; the table is a buffer (a graph constant)."""

    def __init__(self, seed: int, n: int, n_columns: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.seed = int(seed)
        self.bits = _eager.table_bits(int(n))
        # The eager module's own cached table and column weights: the same numbers by construction.
        self.register_buffer("table", _eager._table(self.seed, int(n), dtype, torch.device("cpu")).clone())
        self.register_buffer("weights", _eager._column_weights(int(n_columns), torch.device("cpu")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(x.shape[0], -1).to(torch.float32)
        key = _eager._splitmix(_wrapping_row_sum(float32_bits(rows) * self.weights))
        index = _eager._shr(_eager._splitmix(key * _eager._signed(_eager._GOLDEN) + _eager._signed(self.seed)),
                            64 - self.bits)
        return self.table[index]
