"""Triton kernel of the Philox noise stream (DESIGN.md, "Noise"): ``tl.randn4x`` in the genad_fast layout.

For a tensor of n elements, q = ceil(n / 4): program p owns counters j in [p*BLOCK, (p+1)*BLOCK) and writes
the four normals of ``tl.randn4x(seed, offset + j)`` to elements j, q + j, 2q + j and 3q + j (those below n),
so every store is a contiguous run.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
#: Launch option of every kernel that draws or combines this stream: no contraction of a multiply and an add into
#: an FMA. With fusion on, Triton emits contractible ``mul.f32``/``add.f32`` and ptxas fuses them as the surrounding
#: code allows, so the same normals computed inside a diffusion kernel differed in their last bits from this
#: kernel's (seen on an H200, Triton 3.6); with it off every operation is rounded (``mul.rn``/``add.rn``) and the
#: in-kernel noise is this stream bit for bit (tests/gpu passed). This kernel's speed did not change on the H200
#: (docs/benchmark_gpu.md); the diffusion kernels' was not settled by one noisy run.
NO_FP_FUSION = {"enable_fp_fusion": False}


# No value specialisation of the integers: Triton would turn a 1 into a compile-time constant (and recompile per
# divisibility), while the kernel treats them as int64 tensors.
@triton.jit(do_not_specialize=["n", "q", "seed", "offset"])
def _philox_normal_kernel(out_ptr,  # [n], float32 or float64
                          n, q, seed, offset, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    j = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    # int64 counters: randint4x then takes the high 32 bits as the second counter word.
    ctr = offset.to(tl.int64) + j
    n = n.to(tl.int64)
    q = q.to(tl.int64)
    z0, z1, z2, z3 = tl.randn4x(seed, ctr)
    dtype = out_ptr.dtype.element_ty
    live = j < q
    tl.store(out_ptr + j, z0.to(dtype), mask=live)
    tl.store(out_ptr + q + j, z1.to(dtype), mask=live & (q + j < n))
    tl.store(out_ptr + 2 * q + j, z2.to(dtype), mask=live & (2 * q + j < n))
    tl.store(out_ptr + 3 * q + j, z3.to(dtype), mask=live & (3 * q + j < n))


def philox_normal_(out: torch.Tensor, seed: int, offset: int) -> None:
    """Fill the contiguous float32/float64 tensor ``out`` with the stream at (seed, offset), in place."""
    n = out.numel()
    if n == 0:
        return
    q = (n + 3) // 4
    grid = (triton.cdiv(q, BLOCK),)
    _philox_normal_kernel[grid](out, n, q, seed, offset, BLOCK=BLOCK, **NO_FP_FUSION)
