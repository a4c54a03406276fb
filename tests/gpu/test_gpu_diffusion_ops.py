"""Diffusion ops (add_noise, diffusion_step, recon_error_accumulate_) on the device against the eager reference on
the same device: explicit and in-kernel noise, 4096x64x25 (thousands of blocks) and odd shapes, strided and
broadcast batches, NaN/inf, the CPU kernel's result for the same seed, opcheck.
Contracts and tolerances as tests/test_diffusion_ops.py."""
from __future__ import annotations

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from genad_fast.reference import diffusion as ref

# In-kernel noise: the float32 normals of two backends may differ in their last bits (test_gpu_philox.py).
NOISE_TOL = dict(rtol=1e-5, atol=4e-6)
# Sums over C = 25 channels in float32, in another order than torch's reduction: C·eps relative at worst.
RECON_TOL = {torch.float32: dict(rtol=5e-6, atol=5e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
SHAPES = [(0, 5), (1, 1), (7, 13), (5, 0), (3, 5, 4), (2, 1001), gs.BIG]
SEEDS = [(7, 3), (2**40 + 1, 2**32 - 5)]  # the last crosses into the counter's high word


def _data(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype)
    noise = torch.randn(shape, generator=g, dtype=dtype)
    B = shape[0]
    a, b, c = (torch.rand(B, generator=g, dtype=dtype) * 2 - 0.5 for _ in range(3))
    return [t.to(device) for t in (x, eps, noise, a, b, c)]


def _col(v, like):
    return v.view(-1, *([1] * (like.dim() - 1)))


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_explicit_noise_matches_eager(pair, dtype, shape):
    x, eps, noise, a, b, c = _data(shape, dtype, pair.dev, seed=1)
    out = ops.diffusion_step(x, eps, a, b, c, 3, 0, noise, backend=pair.backend)
    assert out.device == x.device and out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    scale = (_col(a, x) * x).abs() + (_col(b, x) * eps).abs() + (_col(c, x) * noise).abs()
    gs.assert_terms_close(out, ref.diffusion_step(x, eps, a, b, c, 3, 0, noise), scale)
    out = ops.add_noise(x, a, b, 3, 0, noise=noise, backend=pair.backend)
    scale = (_col(a, x) * x).abs() + (_col(b, x) * noise).abs()
    gs.assert_terms_close(out, ref.add_noise(x, a, b, 3, 0, noise), scale)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed,offset", SEEDS)
def test_in_kernel_noise_matches_eager(pair, dtype, shape, seed, offset):
    x, eps, _, a, b, c = _data(shape, dtype, pair.dev)
    out = ops.diffusion_step(x, eps, a, b, c, seed, offset, backend=pair.backend)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    torch.testing.assert_close(out, ref.diffusion_step(x, eps, a, b, c, seed, offset), **NOISE_TOL)
    out = ops.add_noise(x, a, b, seed, offset, backend=pair.backend)
    torch.testing.assert_close(out, ref.add_noise(x, a, b, seed, offset), **NOISE_TOL)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_in_kernel_noise_matches_the_cpu_kernel(pair, dtype):
    """The same step on the CPU (C++ kernel, or eager without it) for the same seed: the noise contract across
    devices, on the benchmark's shape."""
    shape = gs.BIG
    x, eps, _, a, b, c = _data(shape, dtype, pair.dev, seed=4)
    out = ops.diffusion_step(x, eps, a, b, c, 2**41 + 3, 17, backend=pair.backend).cpu()
    cpu = [t.cpu() for t in (x, eps, a, b, c)]
    expected = ops.diffusion_step(*cpu, 2**41 + 3, 17, backend=gs.cpu_backend())
    torch.testing.assert_close(out, expected, **NOISE_TOL)
    gs.record_max(f"diffusion_step[{pair}] vs cpu kernel {'x'.join(map(str, shape))}", **{
        f"max_abs_diff_{str(dtype)[6:]}": float((out - expected).abs().max())})


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_strided_batches(pair, dtype, use_noise):
    g = torch.Generator().manual_seed(3)
    big = torch.randn(600, 40, dtype=dtype, generator=g).to(pair.dev)
    x = big[1::2, 5:30]                                                   # row stride 80, 25 contiguous elements
    eps = torch.randn(300, 3, 25, dtype=dtype, generator=g).to(pair.dev)[:, 1]   # row stride 75
    noise = torch.randn(300, 31, dtype=dtype, generator=g).to(pair.dev)[:, 6:] if use_noise else None
    a, b, c = (torch.rand(600, dtype=dtype, generator=g).to(pair.dev)[::2] for _ in range(3))
    assert not x.is_contiguous() and not eps.is_contiguous() and not a.is_contiguous()
    nz = None if noise is None else noise.contiguous()
    tol = NOISE_TOL if noise is None else dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else \
        dict(rtol=1e-13, atol=1e-13)
    out = ops.diffusion_step(x, eps, a, b, c, 11, 2, noise, backend=pair.backend)
    torch.testing.assert_close(out, ref.diffusion_step(x.contiguous(), eps.contiguous(), a.contiguous(),
                                                       b.contiguous(), c.contiguous(), 11, 2, nz), **tol)
    out = ops.add_noise(x, a, b, 11, 2, noise, backend=pair.backend)
    torch.testing.assert_close(out, ref.add_noise(x.contiguous(), a.contiguous(), b.contiguous(), 11, 2, nz), **tol)


def test_a_sample_broadcast_over_the_batch(pair):
    """K draws of one series: x0 expanded over the batch (row stride 0), as DiffusionDetector noises it."""
    x = torch.randn(1, 25, 4096).to(pair.dev).expand(4, 25, 4096)
    a, b = torch.full((4,), 0.8, device=pair.dev), torch.full((4,), 0.6, device=pair.dev)
    out = ops.add_noise(x, a, b, 9, 4, backend=pair.backend)
    torch.testing.assert_close(out, ref.add_noise(x.contiguous(), a, b, 9, 4), **NOISE_TOL)
    assert not torch.allclose(out[0], out[1])  # each draw has its own noise


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_nan_and_inf_propagate(pair, dtype):
    x, eps, noise, a, b, c = _data((4, 37), dtype, pair.dev)
    x[0, 3] = float("nan")
    eps[1, 30] = float("inf")
    noise[2, 0] = float("-inf")
    a[3] = float("nan")
    c[2] = 0.0  # 0 · inf = NaN, as in the oracle
    out = ops.diffusion_step(x, eps, a, b, c, 0, 0, noise, backend=pair.backend)
    expected = ref.diffusion_step(x, eps, a, b, c, 0, 0, noise)
    scale = (_col(a, x) * x).abs() + (_col(b, x) * eps).abs() + (_col(c, x) * noise).abs()
    gs.assert_terms_close(out, expected, scale)
    out = out.cpu()
    assert out[0, 3].isnan() and out[1, 30].isinf() and out[2, 0].isnan() and out[3].isnan().all()
    assert out[:3].isfinite().sum() == 3 * 37 - 3
    out = ops.add_noise(x, a, b, 4, 0, backend=pair.backend).cpu()
    assert out[0, 3].isnan() and out[3].isnan().all() and out[1:3].isfinite().all()


# ---- recon_error_accumulate_ -----------------------------------------------------------------------------------

def _recon_data(shape, dtype, device, seed=0, layout="btc"):
    """x, x_hat, mask of logical shape [B, T, C]; layout 'bct' stores them as [B, C, T] (time contiguous)."""
    g = torch.Generator().manual_seed(seed)
    B, T, C = shape
    if layout == "bct":
        make = lambda: torch.randn(B, C, T, generator=g, dtype=dtype).to(device).transpose(1, 2)  # noqa: E731
    else:
        make = lambda: torch.randn(B, T, C, generator=g, dtype=dtype).to(device)  # noqa: E731
    x, x_hat = make(), make()
    mask = (make() > 0).to(dtype)
    return x, x_hat, mask


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", [(0, 4, 3), (1, 1, 1), (2, 7, 13), (3, 50, 25), gs.BIG])  # C = 0: an error
@pytest.mark.parametrize("layout", ["btc", "bct"])
@pytest.mark.parametrize("masked", [False, True])
def test_recon_error_matches_eager(pair, dtype, shape, layout, masked):
    x, x_hat, mask = _recon_data(shape, dtype, pair.dev, layout=layout)
    mask = mask if masked else None
    start = torch.randn(shape[:2], dtype=dtype).to(pair.dev)
    score, expected = start.clone(), start.clone()
    out = ops.recon_error_accumulate_(score, x, x_hat, mask, 1 / 3, backend=pair.backend)
    assert out is score
    ref.recon_error_accumulate_(expected, x, x_hat, mask, 1 / 3)
    torch.testing.assert_close(score, expected, equal_nan=True, **RECON_TOL[dtype])


def test_recon_error_accumulates_draws_and_masks(pair):
    x = torch.randn(1, 4000, 5, dtype=torch.float64).to(pair.dev)
    draws = [torch.randn(1, 4000, 5, dtype=torch.float64).to(pair.dev) for _ in range(3)]
    m = (torch.rand(1, 4000, 5) > 0.5).double().to(pair.dev)
    score = torch.zeros(1, 4000, dtype=torch.float64, device=pair.dev)
    for x_hat in draws:
        for mask in (m, 1 - m):
            ops.recon_error_accumulate_(score, x, x_hat, mask, 1 / 3, backend=pair.backend)
    expected = sum(((x - x_hat) ** 2).mean(-1) for x_hat in draws) / 3
    torch.testing.assert_close(score, expected, rtol=1e-12, atol=1e-12)


def test_recon_error_strided_operands(pair):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 1, 3000, 8, generator=g).to(pair.dev)[:, 0, :, ::2]      # channel stride 2
    x_hat = torch.randn(1, 3000, 4, generator=g).to(pair.dev).expand(3, 3000, 4)  # broadcast over the batch
    mask = torch.rand(4, 3000, 3, generator=g).to(pair.dev).permute(2, 1, 0)     # [3, 3000, 4], channel stride 9000
    big = torch.zeros(3000, 7, device=pair.dev)
    score = big[:, 2:5].t()                                                       # [3, 3000], time stride 7
    expected = torch.zeros(3, 3000, device=pair.dev)
    ops.recon_error_accumulate_(score, x, x_hat, mask, 2.0, backend=pair.backend)
    ref.recon_error_accumulate_(expected, x.contiguous(), x_hat.contiguous(), mask.contiguous(), 2.0)
    torch.testing.assert_close(score, expected, **RECON_TOL[torch.float32])
    assert big[:, :2].eq(0).all() and big[:, 5:].eq(0).all()  # nothing written outside the view


@pytest.mark.parametrize("layout", ["btc", "bct"])
def test_recon_error_nan_and_inf_propagate(pair, layout):
    x, x_hat, mask = _recon_data((2, 20, 6), torch.float32, pair.dev, layout=layout)
    x[0, 3, 1] = float("nan")
    x_hat[1, 7, 2] = float("inf")
    mask[1, 7, 2] = 0.0  # masked out, still reported: 0 · inf = NaN, as in the oracle
    x_hat[1, 9, 0] = float("inf")
    mask[1, 9, 0] = 1.0
    score, expected = torch.zeros(2, 20, device=pair.dev), torch.zeros(2, 20, device=pair.dev)
    ops.recon_error_accumulate_(score, x, x_hat, mask, 1.0, backend=pair.backend)
    ref.recon_error_accumulate_(expected, x, x_hat, mask, 1.0)
    torch.testing.assert_close(score, expected, equal_nan=True, **RECON_TOL[torch.float32])
    score = score.cpu()
    assert score[0, 3].isnan() and score[1, 7].isnan() and score[1, 9].isinf()
    assert score.isfinite().sum() == 40 - 3


# ---- opcheck ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_opcheck(pair, dtype):
    ns = gs.need_ops(pair)
    x, eps, noise, a, b, c = _data((5, 12), dtype, pair.dev)
    strided = torch.randn(5, 20, dtype=dtype).to(pair.dev)[:, 4:16]
    for args in [(x, eps, a, b, c, 3, 2**33, None), (x, eps, a, b, c, 3, 0, noise), (strided, eps, a, b, c, 1, 0, None),
                 (x[:0], eps[:0], a[:0], b[:0], c[:0], 0, 0, None)]:
        n = args[0].shape[0]
        torch.library.opcheck(ns.diffusion_step, args)
        torch.library.opcheck(ns.add_noise, (args[0], a[:n], b[:n], *args[5:]))
    xr, hr, mr = _recon_data((2, 9, 4), dtype, pair.dev)
    xt, ht, _ = _recon_data((2, 9, 4), dtype, pair.dev, layout="bct")
    for args in [(torch.zeros(2, 9, dtype=dtype, device=pair.dev), xr, hr, mr, 0.5),
                 (torch.zeros(2, 9, dtype=dtype, device=pair.dev), xt, ht, None, 2.0)]:
        torch.library.opcheck(ns.recon_error_accumulate_, args)


def test_layouts_aliases_and_zero_channels(pair):
    # Issue #12: a channel slice of [B, W, C] windows is an input like any other; a score aliasing x and zero
    # channels are errors with one message on every device.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 6, 5, dtype=torch.float64, generator=g).to(pair.dev)[:, :, :3]
    eps, noise = torch.randn_like(x), torch.randn_like(x)
    a, b, c = (torch.rand(4, dtype=torch.float64, generator=g).to(pair.dev) for _ in range(3))
    out = ops.diffusion_step(x, eps, a, b, c, 3, 1, noise, backend=pair.backend)
    torch.testing.assert_close(out, ref.diffusion_step(x.contiguous(), eps, a, b, c, 3, 1, noise),
                               rtol=1e-12, atol=1e-12)
    xs = torch.arange(30.0, device=pair.dev).reshape(2, 5, 3)
    with pytest.raises(ValueError, match="score is written in place and overlaps x"):
        ops.recon_error_accumulate_(xs[:, :, 0], xs, torch.zeros_like(xs), backend=pair.backend)
    with pytest.raises(ValueError, match=r"x must have at least one channel \(C >= 1\)"):
        ops.recon_error_accumulate_(torch.zeros(2, 5, device=pair.dev), xs[:, :, :0], xs[:, :, :0],
                                    backend=pair.backend)
