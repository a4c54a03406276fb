"""Spec of ``recon_error_accumulate_``: score[B, T] += weight · mean_c(mask·(x − x̂)²) for x, x̂, mask [B, T, C],
in place, with any layout of the operands (time-contiguous [B, C, T] storage included).
Oracle: :func:`genad_fast.reference.diffusion.recon_error_accumulate_`.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.reference import diffusion as ref
from op_specs.compare import F32, F64, Tolerances, close, tol
from op_specs.philox import BIG
from op_specs.targets import LARGE, Target, sized

OPS = ("recon_error_accumulate_",)
LAYOUTS = ("btc", "bct")
# Empty batch, empty series (C = 0 is an error, tested with the refusals), one element, odd sizes, C = 25 (the
# benchmark's channels), C = 40 and 70 (past the CUDA tile kernel's 31 float64 and 63 float32 channels:
# genad/recon_tile.h), a long thin series; BIG: the benchmark's shape on a GPU.
SHAPES = [(0, 4, 3), (2, 0, 3), (1, 1, 1), (2, 7, 13), (3, 50, 25), (3, 50, 40), (2, 9, 70), (1, 300, 2),
          sized(BIG, LARGE)]

# Against the oracle: a mean over C channels of squares, summed in another order than torch's reduction. The CPU
# kernel and the interpreter stay within 1e-6 (float32) and 1e-13 (float64) on these sizes; the GPU kernels,
# over BIG's 6.5 M elements in blocks, at C·eps relative at worst: 5e-6 and 1e-12.
TOL = Tolerances({F32: tol(1e-6), F64: tol(1e-13)}, cuda={F32: tol(5e-6), F64: tol(1e-12)},
                 triton={F32: tol(5e-6), F64: tol(1e-12)})
# Six float64 accumulations into one score: against the closed form, 1e-12.
SUM_TOL = tol(1e-12)


def data(shape, dtype, device="cpu", seed=0, layout="btc"):
    """x, x_hat, mask of logical shape [B, T, C]; layout 'bct' stores them as [B, C, T] (time contiguous)."""
    g = torch.Generator().manual_seed(seed)
    B, T, C = shape

    def make():
        if layout == "bct":
            return torch.randn(B, C, T, generator=g, dtype=dtype).to(device).transpose(1, 2)
        return torch.randn(B, T, C, generator=g, dtype=dtype).to(device)

    x, x_hat = make(), make()
    mask = (make() > 0).to(dtype)
    return x, x_hat, mask


def accumulate(target: Target, *args):
    return ops.recon_error_accumulate_(*args, backend=target.backend)


def check_matches_reference(target: Target, dtype, shape, layout, masked):
    x, x_hat, mask = data(shape, dtype, target.dev, layout=layout)
    mask = mask if masked else None
    start = torch.randn(shape[:2], dtype=dtype, generator=torch.Generator().manual_seed(1)).to(target.dev)
    score, expected = start.clone(), start.clone()
    assert accumulate(target, score, x, x_hat, mask, 1 / 3) is score
    ref.recon_error_accumulate_(expected, x, x_hat, mask, 1 / 3)
    close(score, expected, TOL(target, dtype), equal_nan=True)


def check_accumulates_draws_and_masks(target: Target):
    """K draws and complementary masks add up in one buffer: the sum equals the mean error over all of them."""
    T = target.pick(40, 40, 4000)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, T, 5, dtype=F64, generator=g).to(target.dev)
    draws = [torch.randn(1, T, 5, dtype=F64, generator=g).to(target.dev) for _ in range(3)]
    m = (torch.rand(1, T, 5, generator=g) > 0.5).double().to(target.dev)
    score = torch.zeros(1, T, dtype=F64, device=target.dev)
    for x_hat in draws:
        for mask in (m, 1 - m):
            accumulate(target, score, x, x_hat, mask, 1 / 3)
    expected = sum(((x - x_hat) ** 2).mean(-1) for x_hat in draws) / 3
    close(score, expected, SUM_TOL)


def check_strided_operands(target: Target):
    """A channel stride of 2, a batch broadcast, a permuted mask and a score that is a transposed column slice of a
    bigger matrix: read and written in place, nothing written outside the score's view."""
    T = target.pick(30, 30, 3000)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 1, T, 8, generator=g).to(target.dev)[:, 0, :, ::2]         # channel stride 2
    x_hat = torch.randn(1, T, 4, generator=g).to(target.dev).expand(3, T, 4)      # broadcast over the batch
    mask = torch.rand(4, T, 3, generator=g).to(target.dev).permute(2, 1, 0)       # [3, T, 4], channel stride 3T
    big = torch.zeros(T, 7, device=target.dev)
    score = big[:, 2:5].t()                                                        # [3, T], time stride 7
    expected = torch.zeros(3, T, device=target.dev)
    accumulate(target, score, x, x_hat, mask, 2.0)
    ref.recon_error_accumulate_(expected, x.contiguous(), x_hat.contiguous(), mask.contiguous(), 2.0)
    close(score, expected, TOL(target, F32))
    assert big[:, :2].eq(0).all() and big[:, 5:].eq(0).all()


def check_nan_and_inf_propagate(target: Target, layout):
    x, x_hat, mask = data((2, 20, 6), F32, target.dev, layout=layout)
    x[0, 3, 1] = float("nan")
    x_hat[1, 7, 2] = float("inf")
    mask[1, 7, 2] = 0.0  # masked out, still reported: 0 · inf = NaN, as in the oracle
    x_hat[1, 9, 0] = float("inf")
    mask[1, 9, 0] = 1.0
    score, expected = torch.zeros(2, 20, device=target.dev), torch.zeros(2, 20, device=target.dev)
    accumulate(target, score, x, x_hat, mask, 1.0)
    ref.recon_error_accumulate_(expected, x, x_hat, mask, 1.0)
    close(score, expected, TOL(target, F32), equal_nan=True)
    score = score.cpu()
    assert score[0, 3].isnan() and score[1, 7].isnan() and score[1, 9].isinf()
    assert score.isfinite().sum() == 40 - 3


def opcheck_samples(target: Target) -> dict:
    """Per dtype: [B, T, C] storage with a mask, [B, C, T] storage without one."""
    samples = []
    for dtype in (F32, F64):
        xr, hr, mr = data((2, 9, 4), dtype, target.dev)
        xt, ht, _ = data((2, 9, 4), dtype, target.dev, layout="bct")
        samples += [(torch.zeros(2, 9, dtype=dtype, device=target.dev), xr, hr, mr, 0.5),
                    (torch.zeros(2, 9, dtype=dtype, device=target.dev), xt, ht, None, 2.0)]
    return {"recon_error_accumulate_": samples}


OPCHECK = ("recon_error_accumulate_",)
