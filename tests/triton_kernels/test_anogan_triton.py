"""The Triton AnoGAN kernels (kernels/anogan.py) in the interpreter, against the eager reference and torch.optim.Adam."""
from __future__ import annotations

import pytest
import torch

from genad_fast import ops
from genad_fast.reference import anogan as ref

pytestmark = pytest.mark.triton

DTYPES = [torch.float32, torch.float64]
LOSS_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
ADAM_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
EXACT = dict(rtol=0, atol=0)


def _residual_inputs(b, p, f, dtype, seed=0, gap=0.0):
    g = torch.Generator().manual_seed(seed)

    def pair(k):
        a = torch.randn(b, k, generator=g, dtype=dtype)
        d = torch.randn(b, k, generator=g, dtype=dtype)
        return a, a - (d + gap * torch.where(d >= 0, 1.0, -1.0).to(dtype))

    return (*pair(p), *pair(f))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, p, f", [(0, 5, 3), (1, 1, 1), (7, 13, 5), (20, 70, 130), (4, 17, 0)])
@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_residual_matches_reference(dtype, b, p, f, lam):
    x, gx, fx, fgx = _residual_inputs(b, p, f, dtype)
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, lam, backend="triton")
    loss_ref, grad_gx_ref, grad_fgx_ref = ref.anogan_residual(x, gx, fx, fgx, lam)
    torch.testing.assert_close(loss, loss_ref, **LOSS_TOL[dtype])
    torch.testing.assert_close(grad_gx, grad_gx_ref, **EXACT)
    torch.testing.assert_close(grad_fgx, grad_fgx_ref, **EXACT)


def test_residual_float64_weights_are_not_rounded_to_float32():
    # λ = 0.3 is not a float32 number: a float64 kernel must use it exactly.
    x, gx, fx, fgx = _residual_inputs(3, 4, 5, torch.float64)
    _, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, 0.3, backend="triton")
    assert set(grad_gx.abs().unique().tolist()) == {0.7} and set(grad_fgx.abs().unique().tolist()) == {0.3}


def test_residual_column_slices():
    x, gx, fx, fgx = _residual_inputs(20, 50, 70, torch.float32, seed=2)
    sl = (x[:, 3:20], gx[:, 10:27], fx[:, :41], fgx[:, 29:])
    out = ops.anogan_residual(*sl, 0.1, backend="triton")
    torch.testing.assert_close(out, ref.anogan_residual(*(t.contiguous() for t in sl), 0.1), **LOSS_TOL[torch.float32])


def test_residual_nan_and_inf_propagate():
    x, gx, fx, fgx = _residual_inputs(4, 6, 70, torch.float32, gap=0.1)
    x[0, 2] = float("nan")
    fgx[1, 66] = float("nan")
    x[2, 1] = float("inf")
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, 0.0, backend="triton")
    assert torch.isnan(loss[0]) and torch.isnan(grad_gx[0, 2]) and torch.isfinite(grad_gx[0, :2]).all()
    assert torch.isnan(loss[1]) and torch.isnan(grad_fgx[1, 66]) and torch.isfinite(grad_fgx[1, :66]).all()
    assert torch.isposinf(loss[2]) and grad_gx[2, 1] == -1.0
    assert torch.isfinite(loss[3])


def test_residual_gradients_against_autograd_and_gradcheck():
    x, gx, fx, fgx = _residual_inputs(5, 9, 6, torch.float64, seed=3, gap=1e-2)
    _, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, 0.1, backend="triton")
    gx_, fgx_ = gx.clone().requires_grad_(True), fgx.clone().requires_grad_(True)
    loss = 0.9 * (x - gx_).abs().sum(1) + 0.1 * (fx - fgx_).abs().sum(1)
    torch.testing.assert_close((grad_gx, grad_fgx), torch.autograd.grad(loss.sum(), (gx_, fgx_)), **EXACT)
    inputs = [t.requires_grad_(True) for t in (x, gx, fx, fgx)]
    assert torch.autograd.gradcheck(lambda *a: ops.anogan_residual(*a, 0.1, backend="triton")[0], inputs)


def _run_adam(backend, b, l_, dtype, iterations, **hyper):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(b, l_, generator=g, dtype=dtype)
    m, v, step = torch.zeros_like(z), torch.zeros_like(z), torch.zeros(b, dtype=torch.int64)
    for _ in range(iterations):
        grad = torch.randn(b, l_, generator=g, dtype=dtype)
        ops.masked_adam_(z, grad, m, v, step, torch.rand(b, generator=g) < 0.6, backend=backend, **hyper)
    return z, m, v, step


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, l_", [(0, 4), (1, 1), (7, 13), (20, 70)])
@pytest.mark.parametrize("beta1", [0.9, 0.3])
def test_masked_adam_matches_reference(dtype, b, l_, beta1):
    hyper = dict(lr=0.03, beta1=beta1, beta2=0.99, eps=1e-7)
    got = _run_adam("triton", b, l_, dtype, 5, **hyper)
    expected = _run_adam("eager", b, l_, dtype, 5, **hyper)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, **ADAM_TOL[dtype])


def test_masked_adam_matches_torch_adam_row_by_row():
    B, L = 6, 11
    g = torch.Generator().manual_seed(5)
    z = torch.randn(B, L, generator=g, dtype=torch.float64)
    m, v, step = torch.zeros_like(z), torch.zeros_like(z), torch.zeros(B, dtype=torch.int64)
    params = [torch.nn.Parameter(z[i].clone()) for i in range(B)]
    optims = [torch.optim.Adam([p], lr=0.1) for p in params]
    for _ in range(6):
        grad = torch.randn(B, L, generator=g, dtype=torch.float64)
        active = torch.rand(B, generator=g) < 0.5
        ops.masked_adam_(z, grad, m, v, step, active, lr=0.1, backend="triton")
        for i in torch.nonzero(active).flatten().tolist():
            params[i].grad = grad[i].clone()
            optims[i].step()
    torch.testing.assert_close(z, torch.stack([p.detach() for p in params]), **ADAM_TOL[torch.float64])


def test_masked_adam_slices_and_inactive_rows():
    B, L = 9, 10
    g = torch.Generator().manual_seed(8)
    state = torch.randn(B, 3 * L, generator=g)
    state[:, L:] = 0
    steps = torch.zeros(B, 2, dtype=torch.int64)
    expected = [state[:, :L].clone(), torch.zeros(B, L), torch.zeros(B, L), torch.zeros(B, dtype=torch.int64)]
    for _ in range(3):
        grad = torch.randn(B, L + 4, generator=g)
        grad[0] = float("nan")                      # row 0 is never active: its NaN must not leak
        active = torch.rand(B, generator=g) < 0.5
        active[0] = False
        ops.masked_adam_(state[:, :L], grad[:, 1:L + 1], state[:, L:2 * L], state[:, 2 * L:], steps[:, 1], active,
                         lr=0.1, backend="triton")
        ref.masked_adam_(expected[0], grad[:, 1:L + 1].contiguous(), *expected[1:], active, lr=0.1)
    for got, want in zip((state[:, :L], state[:, L:2 * L], state[:, 2 * L:], steps[:, 1]), expected):
        torch.testing.assert_close(got, want, **ADAM_TOL[torch.float32])
    assert (steps[:, 0] == 0).all() and steps[0, 1] == 0 and torch.isfinite(state[0]).all()


def test_opcheck_triton_ops():
    x, gx, fx, fgx = _residual_inputs(6, 5, 3, torch.float32, gap=1e-3)
    torch.library.opcheck(torch.ops.genad_fast_triton.anogan_residual, (x, gx, fx, fgx, 0.1))
    z, m, v = torch.randn(6, 5), torch.rand(6, 5), torch.rand(6, 5)
    step, active = torch.arange(6), torch.tensor([True, False, True, True, False, True])
    torch.library.opcheck(torch.ops.genad_fast_triton.masked_adam_,
                          (z, torch.randn(6, 5), m, v, step, active, 0.01, 0.9, 0.999, 1e-8))
