"""``conv1d_act``: one stage of a small 1-D convolutional encoder or decoder, the call a stream makes per window.

The autoencoder's windows (``ConvEncoder``/``ConvDecoder`` of :mod:`genad_fast.nn.blocks`, 8 channels, W = 32,
hidden (32, 64)) at their deepest stages: the encoder's second ``Conv1d(32 -> 64, k=5) -> LeakyReLU(0.1) ->
MaxPool1d(2)`` on 16 timestamps, and the decoder's ``Upsample(8 -> 16) -> Conv1d(64 -> 32, k=5) -> LeakyReLU``.
The eager provider is those modules' functional form (``F.conv1d`` etc., what the autoencoder runs); ``compile`` is
``torch.compile`` of it; ``cpu`` the fused op. Sizes: one window (a stream's update at chunk 1: the per-call cost
decides) and 256 windows (a batch: the arithmetic decides, where oneDNN's batched convolution is strong; Deep
SVDD, whose score is these convolutions alone, uses the fused op below 32 windows only). float32.

Bytes moved, each tensor once: read x [N, C_in, L_in] and the weights [C_out, C_in, k] + bias, write
[N, C_out, L_out].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.registry import Case, Size, allclose_check, fused_op, register, standard_providers

STAGES = {"enc": dict(c_in=32, c_out=64, l_in=16, length=16, pool=True),
          "dec": dict(c_in=64, c_out=32, l_in=8, length=16, pool=False)}
SIZES = [Size(f"N{n}-{stage}", {"n": n, "stage": stage}) for stage in STAGES for n in (1, 256)]
SMOKE = Size("N1-enc-smoke", {"n": 1, "stage": "enc"})
K, SLOPE = 5, 0.1
CHECK = allclose_check(rtol=1e-5, atol=1e-5)


def setup(size: Size, device: torch.device) -> dict:
    st = STAGES[size["stage"]]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(size["n"], st["l_in"], st["c_in"], generator=g).transpose(1, 2)  # a window's [N, C, L] view
    w = torch.randn(st["c_out"], st["c_in"], K, generator=g) / (st["c_in"] * K) ** 0.5
    b = torch.randn(st["c_out"], generator=g)
    return {"x": x.to(device), "weight": w.to(device), "bias": b.to(device), "length": st["length"],
            "pool": st["pool"]}


def stage_eager(x, weight, bias, length, pool):
    u = x if length == x.shape[2] else F.interpolate(x, size=length, mode="nearest")
    y = F.leaky_relu(F.conv1d(u, weight, bias, padding=weight.shape[2] // 2), SLOPE)
    return F.max_pool1d(y, 2, ceil_mode=True) if pool else y


def stage_fused(backend: str):
    op = fused_op("conv1d_act")
    return lambda x, weight, bias, length, pool: op(x, weight, bias, length=length, slope=SLOPE, pool=pool,
                                                    backend=backend)


def stage_bytes(s: Size) -> float:
    st = STAGES[s["stage"]]
    out_len = (st["length"] + 1) // 2 if st["pool"] else st["length"]
    return 4.0 * (s["n"] * st["c_in"] * st["l_in"] + st["c_out"] * (st["c_in"] * K + 1)
                  + s["n"] * st["c_out"] * out_len)


register(Case(
    "conv1d_act", "forward", SIZES, setup, standard_providers(stage_eager, stage_fused),
    items=lambda s: s["n"], item_unit="window", bytes_moved=stage_bytes, check=CHECK, smoke=SMOKE,
    description="one autoencoder stage (conv k=5 + LeakyReLU + max pool, or nearest upsampling + conv + "
                "LeakyReLU), float32"))
