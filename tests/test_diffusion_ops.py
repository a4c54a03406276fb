"""Diffusion ops (add_noise, diffusion_step, recon_error_accumulate_) on every runnable backend vs the reference."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import diffusion as ref

BACKENDS = ["eager", "cpu"]
# The noise is float32 normals in both dtypes (a few ulps of log/sin/cos apart across backends).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-5, atol=1e-6)}


def _data(B, M, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, M, generator=g, dtype=dtype), torch.randn(B, M, generator=g, dtype=dtype),
            *(torch.rand(B, generator=g, dtype=dtype) for _ in range(3)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B, M", [(0, 5), (1, 1), (7, 13), (64, 333)])
@pytest.mark.parametrize("seed, offset", [(0, 0), (2**40 + 3, 2**33 + 1)])
def test_in_kernel_noise_matches_reference(backend, dtype, B, M, seed, offset):
    x, eps, a, b, c = _data(B, M, dtype)
    torch.testing.assert_close(ops.diffusion_step(x, eps, a, b, c, seed, offset, backend=backend),
                               ref.diffusion_step(x, eps, a, b, c, seed, offset), **TOL[dtype])
    torch.testing.assert_close(ops.add_noise(x, a, b, seed, offset, backend=backend),
                               ref.add_noise(x, a, b, seed, offset), **TOL[dtype])


def test_noise_is_the_philox_stream_of_the_whole_tensor():
    x, eps, a, b, c = _data(9, 17, torch.float32)
    zero, one = torch.zeros(9), torch.ones(9)
    z = ops.add_noise(x, zero, one, 5, 11, backend="cpu")
    torch.testing.assert_close(z, ops.randn((9, 17), 5, 11), **TOL[torch.float32])


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_noise_and_strided_batches(backend):
    big, eps, a, b, c = _data(20, 30, torch.float32)
    x = big[::2, 3:20]                      # row stride 60, unit last stride
    e = eps[::2, 3:20]
    noise = torch.randn(10, 17)
    a, b, c = a[:10], b[:10], c[:10]
    torch.testing.assert_close(ops.diffusion_step(x, e, a, b, c, 1, 0, noise=noise, backend=backend),
                               a[:, None] * x + b[:, None] * e + c[:, None] * noise)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_to_its_element_only(backend):
    x, eps, a, b, c = _data(4, 6, torch.float32)
    x[1, 2] = float("nan")
    out = ops.diffusion_step(x, eps, a, b, c, 3, 0, backend=backend)
    assert torch.isnan(out[1, 2]) and torch.isnan(out).sum() == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_recon_error_accumulates(backend, with_mask):
    g = torch.Generator().manual_seed(1)
    x, x_hat = torch.randn(3, 50, 7, generator=g), torch.randn(3, 50, 7, generator=g)
    mask = (torch.rand(3, 50, 7, generator=g) > 0.5).float() if with_mask else None
    score = torch.ones(3, 50)
    for _ in range(2):
        ops.recon_error_accumulate_(score, x, x_hat, mask, 0.25, backend=backend)
    err = (x - x_hat) ** 2 * (mask if with_mask else 1)
    torch.testing.assert_close(score, 1 + 0.5 * err.mean(-1))


def test_thread_count_does_not_change_the_noise():
    x, eps, a, b, c = _data(33, 1001, torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.diffusion_step(x, eps, a, b, c, 9, 4, backend="cpu")
        torch.set_num_threads(2)
        two = ops.diffusion_step(x, eps, a, b, c, 9, 4, backend="cpu")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_opcheck():
    x, eps, a, b, c = _data(5, 8, torch.float32)
    torch.library.opcheck(torch.ops.genad_fast.add_noise, (x, a, b, 3, 0, None))
    torch.library.opcheck(torch.ops.genad_fast.diffusion_step, (x, eps, a, b, c, 3, 0, None))
    torch.library.opcheck(torch.ops.genad_fast.diffusion_step, (x, eps, a, b, c, 3, 0, torch.randn(5, 8)))
    torch.library.opcheck(torch.ops.genad_fast.recon_error_accumulate_,
                          (torch.zeros(2, 4), torch.randn(2, 4, 3), torch.randn(2, 4, 3), None, 1.0))


def test_torch_compile_fullgraph():
    x, eps, a, b, c = _data(6, 10, torch.float32)
    f = torch.compile(lambda *t: ops.diffusion_step(*t, 3, 0, backend="cpu"), fullgraph=True)
    torch.testing.assert_close(f(x, eps, a, b, c), ref.diffusion_step(x, eps, a, b, c, 3, 0), **TOL[torch.float32])


@pytest.mark.parametrize("call, error, match", [
    (lambda x, e, a, b, c: ops.diffusion_step(x, e, a[:3], b, c, 0), ValueError, "one coefficient per sample"),
    (lambda x, e, a, b, c: ops.diffusion_step(x, e[:, :3], a, b, c, 0), ValueError, "eps must have"),
    (lambda x, e, a, b, c: ops.diffusion_step(x.long(), e, a, b, c, 0), TypeError, "dtype"),
    (lambda x, e, a, b, c: ops.diffusion_step(x, e, a, b, c, -1), ValueError, "seed"),
    (lambda x, e, a, b, c: ops.add_noise(x, a, b, 0, noise=torch.zeros(2, 2)), ValueError, "noise must have"),
    (lambda x, e, a, b, c: ops.add_noise(x[0], a, b, 0), ValueError, "2-D"),
    (lambda x, e, a, b, c: ops.add_noise(x, a, b, 0, backend="triton"), BackendUnavailableError, "triton"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(*_data(5, 4, torch.float32))
