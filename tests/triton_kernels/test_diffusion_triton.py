"""The Triton diffusion kernels (kernels/diffusion.py, on tl.randn4x) in the interpreter, against the reference."""
from __future__ import annotations

import pytest
import torch

import genad_fast
from genad_fast import ops
from genad_fast.reference import diffusion as ref

pytestmark = pytest.mark.triton

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-13, atol=1e-13)}
# Triton's interpreter evaluates log/sqrt/sin/cos with numpy float32, the reference with torch: a few ulps of z.
NOISE_TOL = dict(rtol=1e-5, atol=4e-6)
SHAPES = [(0, 5), (1, 1), (4, 1), (7, 13), (3, 5, 4), (2, 2100)]  # the last: more than one program


def _data(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, eps, noise = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))
    a, b, c = (torch.rand(shape[0], generator=g, dtype=dtype) * 2 - 0.5 for _ in range(3))
    return x, eps, noise, a, b, c


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed,offset", [(0, 0), (1, 1), (2**40 + 1, 2**32 - 5)])
def test_in_kernel_noise_matches_reference(dtype, shape, seed, offset):
    x, eps, _, a, b, c = _data(shape, dtype)
    out = ops.diffusion_step(x, eps, a, b, c, seed, offset, backend="triton")
    assert out.shape == x.shape and out.dtype == dtype
    torch.testing.assert_close(out, ref.diffusion_step(x, eps, a, b, c, seed, offset), **NOISE_TOL)
    torch.testing.assert_close(ops.add_noise(x, a, b, seed, offset, backend="triton"),
                               ref.add_noise(x, a, b, seed, offset), **NOISE_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_explicit_noise_matches_reference(dtype, shape):
    x, eps, noise, a, b, c = _data(shape, dtype, seed=1)
    torch.testing.assert_close(ops.diffusion_step(x, eps, a, b, c, 0, 0, noise, backend="triton"),
                               ref.diffusion_step(x, eps, a, b, c, 0, 0, noise), **TOL[dtype])
    torch.testing.assert_close(ops.add_noise(x, a, b, 0, 0, noise, backend="triton"),
                               ref.add_noise(x, a, b, 0, 0, noise), **TOL[dtype])


def test_in_kernel_noise_is_the_triton_noise_op():
    x, eps, _, a, b, c = _data((5, 301), torch.float32)
    zeros, ones = torch.zeros(5), torch.ones(5)
    z = ops.randn((5, 301), 77, 2**33 + 3, backend="triton")
    assert torch.equal(ops.diffusion_step(x, eps, zeros, zeros, ones, 77, 2**33 + 3, backend="triton"), z)


@pytest.mark.parametrize("use_noise", [False, True])
def test_strided_and_broadcast_batches(use_noise):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 40, generator=g)[1::2, 5:30]          # row stride 80
    eps = torch.randn(1, 25, generator=g).expand(6, 25)        # one sample broadcast (row stride 0)
    noise = torch.randn(6, 31, generator=g)[:, 6:] if use_noise else None
    a, b, c = (torch.rand(12, generator=g)[::2] for _ in range(3))
    tol = TOL[torch.float32] if use_noise else NOISE_TOL
    nz = None if noise is None else noise.contiguous()
    out = ops.diffusion_step(x, eps, a, b, c, 4, 9, noise, backend="triton")
    expected = ref.diffusion_step(x.contiguous(), eps.contiguous(), a.contiguous(), b.contiguous(), c.contiguous(),
                                  4, 9, nz)
    torch.testing.assert_close(out, expected, **tol)


def test_nan_and_inf_propagate():
    x, eps, noise, a, b, c = _data((4, 37), torch.float32)
    x[0, 3] = float("nan")
    eps[1, 30] = float("inf")
    a[3] = float("nan")
    out = ops.diffusion_step(x, eps, a, b, c, 0, 0, noise, backend="triton")
    torch.testing.assert_close(out, ref.diffusion_step(x, eps, a, b, c, 0, 0, noise), equal_nan=True,
                               **TOL[torch.float32])
    assert out[0, 3].isnan() and out[1, 30].isinf() and out[3].isnan().all()


@pytest.mark.skipif(not genad_fast.build_info()["loaded"], reason="genad_fast._C is not built")
def test_triton_matches_cpu_kernel():
    x, eps, _, a, b, c = _data((9, 333), torch.float32)
    torch.testing.assert_close(ops.diffusion_step(x, eps, a, b, c, 2**40 + 1, 2**35 + 7, backend="triton"),
                               ops.diffusion_step(x, eps, a, b, c, 2**40 + 1, 2**35 + 7, backend="cpu"), **NOISE_TOL)


# ---- recon_error_accumulate_ -------------------------------------------------------------------------------

def _recon(shape, dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T, C = shape
    if layout == "bct":
        make = lambda: torch.randn(B, C, T, generator=g, dtype=dtype).transpose(1, 2)  # noqa: E731
    else:
        make = lambda: torch.randn(B, T, C, generator=g, dtype=dtype)  # noqa: E731
    return make(), make(), (make() > 0).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 3, 2), (1, 1, 1), (2, 7, 13), (3, 50, 40)])  # C = 0: an error
@pytest.mark.parametrize("layout", ["btc", "bct"])
@pytest.mark.parametrize("masked", [False, True])
def test_recon_error_matches_reference(dtype, shape, layout, masked):
    x, x_hat, mask = _recon(shape, dtype, layout)
    mask = mask if masked else None
    start = torch.randn(shape[:2], dtype=dtype)
    score, expected = start.clone(), start.clone()
    assert ops.recon_error_accumulate_(score, x, x_hat, mask, 1 / 3, backend="triton") is score
    ref.recon_error_accumulate_(expected, x, x_hat, mask, 1 / 3)
    torch.testing.assert_close(score, expected, equal_nan=True, **TOL[dtype])


def test_recon_error_strided_score_and_nan():
    x, x_hat, mask = _recon((3, 30, 4), torch.float32, "btc")
    x[1, 4, 2] = float("nan")
    big = torch.zeros(30, 7)
    score = big[:, 2:5].t()  # [3, 30], time stride 7
    expected = torch.zeros(3, 30)
    ops.recon_error_accumulate_(score, x, x_hat, mask, 2.0, backend="triton")
    ref.recon_error_accumulate_(expected, x, x_hat, mask, 2.0)
    torch.testing.assert_close(score, expected, equal_nan=True, **TOL[torch.float32])
    assert score[1, 4].isnan() and score.isnan().sum() == 1
    assert big[:, :2].eq(0).all() and big[:, 5:].eq(0).all()


# ---- the custom ops -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_triton_ops(dtype):
    x, eps, noise, a, b, c = _data((5, 12), dtype)
    torch.library.opcheck(torch.ops.genad_fast_triton.diffusion_step, (x, eps, a, b, c, 3, 2**33, None))
    torch.library.opcheck(torch.ops.genad_fast_triton.diffusion_step, (x, eps, a, b, c, 3, 0, noise))
    torch.library.opcheck(torch.ops.genad_fast_triton.add_noise, (x, a, b, 5, 1, None))
    xr, hr, mr = _recon((2, 9, 4), dtype, "bct")
    torch.library.opcheck(torch.ops.genad_fast_triton.recon_error_accumulate_,
                          (torch.zeros(2, 9, dtype=dtype), xr, hr, mr, 0.5))


def test_triton_ops_check_their_inputs():
    x, eps, _, a, b, c = _data((4, 6), torch.float32)
    with pytest.raises(ValueError, match=r"a must be a vector \[4\]"):
        torch.ops.genad_fast_triton.diffusion_step(x, eps, a[:3], b, c, 0, 0, None)
    with pytest.raises(ValueError, match="unit last stride"):
        torch.ops.genad_fast_triton.add_noise(x.t(), a, b, 0, 0, None)
    with pytest.raises(ValueError, match="seed and offset"):
        torch.ops.genad_fast_triton.add_noise(x, a, b, -1, 0, None)
    with pytest.raises(ValueError, match=r"score must be \[B, T\]"):
        torch.ops.genad_fast_triton.recon_error_accumulate_(torch.zeros(4), x[None], x[None], None, 1.0)
