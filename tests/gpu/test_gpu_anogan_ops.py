"""AnoGAN's fused ops (anogan_residual, masked_adam_) on the device against the eager reference on the same device:
values over odd and large shapes, column slices, NaN/inf, ties, the loss's autograd (gradcheck in float64),
inactive rows untouched, opcheck. Contracts and tolerances as tests/test_anogan_ops.py."""
from __future__ import annotations

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from genad_fast.reference import anogan as ref

LOSS_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
# Adam: the kernels follow torch's order of operations; float32 may still differ by an ulp per step (FMA).
ADAM_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
EXACT = dict(rtol=0, atol=0)


def _residual_inputs(lead, p, f, dtype, device, seed=0, gap=0.0):
    """x, gx [*lead, p] and fx, fgx [*lead, f]; gap > 0 keeps every |x − gx| and |fx − fgx| >= gap (no ties)."""
    g = torch.Generator().manual_seed(seed)

    def pair(k):
        a = torch.randn(*lead, k, generator=g, dtype=dtype)
        d = torch.randn(*lead, k, generator=g, dtype=dtype)
        d = d + gap * torch.where(d >= 0, 1.0, -1.0).to(dtype)
        return a.to(device), (a - d).to(device)

    x, gx = pair(p)
    fx, fgx = pair(f)
    return x, gx, fx, fgx


def _adam_state(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=dtype).to(device)
    return z, torch.zeros_like(z), torch.zeros_like(z), torch.zeros(shape[:-1], dtype=torch.int64, device=device)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("lead, p, f", [((0,), 5, 3), ((1,), 1, 1), ((7,), 13, 5), ((2, 3), 9, 40), ((4,), 17, 0),
                                        ((4096,), 64, 128), ((1000,), 1601, 37)])
@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_residual_matches_eager(pair, dtype, lead, p, f, lam):
    x, gx, fx, fgx = _residual_inputs(lead, p, f, dtype, pair.dev)
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, lam, backend=pair.backend)
    loss_ref, grad_gx_ref, grad_fgx_ref = ref.anogan_residual(x, gx, fx, fgx, lam)
    assert loss.shape == lead and grad_gx.shape == x.shape and grad_fgx.shape == fx.shape
    assert loss.dtype == grad_gx.dtype == grad_fgx.dtype == dtype and loss.device == x.device
    torch.testing.assert_close(loss, loss_ref, **LOSS_TOL[dtype])
    torch.testing.assert_close(grad_gx, grad_gx_ref, **EXACT)   # ±(1−λ) or 0: no rounding to differ in
    torch.testing.assert_close(grad_fgx, grad_fgx_ref, **EXACT)


def test_residual_column_slices(pair):
    x, gx, fx, fgx = _residual_inputs((3000,), 50, 70, torch.float32, pair.dev, seed=3)
    xs, gxs, fxs, fgxs = x[:, 3:20], gx[:, 10:27], fx[:, :41], fgx[:, 29:]
    assert not any(t.is_contiguous() for t in (xs, gxs, fxs, fgxs))
    out = ops.anogan_residual(xs, gxs, fxs, fgxs, 0.1, backend=pair.backend)
    expected = ref.anogan_residual(xs.contiguous(), gxs.contiguous(), fxs.contiguous(), fgxs.contiguous(), 0.1)
    torch.testing.assert_close(out, expected, **LOSS_TOL[torch.float32])


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("width", [6, 40])
def test_residual_nan_and_inf_propagate(pair, dtype, width):
    x, gx, fx, fgx = _residual_inputs((5,), width, width, dtype, pair.dev, gap=0.1)
    x[0, 2] = float("nan")                         # row 0: NaN loss, NaN gradient at (0, 2) only
    fgx[1, 3] = float("nan")                       # row 1: NaN loss (even with λ = 0: 0·NaN), NaN feature gradient
    x[2, 1] = float("inf")                         # row 2: inf loss, finite gradient −(1−λ)
    x[3, 0], gx[3, 0] = float("inf"), float("inf")  # row 3: inf − inf = NaN
    for lam in (0.0, 0.1):
        loss, grad_gx, grad_fgx = (t.cpu() for t in ops.anogan_residual(x, gx, fx, fgx, lam, backend=pair.backend))
        assert torch.isnan(loss[0]) and torch.isnan(grad_gx[0, 2])
        assert torch.isfinite(torch.cat([grad_gx[0, :2], grad_gx[0, 3:]])).all() and torch.isfinite(grad_fgx[0]).all()
        assert torch.isnan(loss[1]) and torch.isnan(grad_fgx[1, 3]) and torch.isfinite(grad_gx[1]).all()
        assert torch.isposinf(loss[2]) and grad_gx[2, 1] == -(1 - lam)
        assert torch.isnan(loss[3]) and torch.isnan(grad_gx[3, 0])
        assert torch.isfinite(loss[4]) and torch.isfinite(grad_gx[4]).all() and torch.isfinite(grad_fgx[4]).all()


def test_residual_ties_give_zero_gradient(pair):
    x = torch.randn(3, 37, device=pair.dev)
    fx = torch.randn(3, 19, device=pair.dev)
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, x.clone(), fx, fx.clone(), 0.1, backend=pair.backend)
    assert (loss == 0).all() and (grad_gx == 0).all() and (grad_fgx == 0).all()


@pytest.mark.parametrize("width", [5, 40])
def test_residual_loss_gradcheck_float64(pair, width):
    x, gx, fx, fgx = _residual_inputs((3,), width, width + 3, torch.float64, pair.dev, gap=0.05)
    inputs = [t.clone().requires_grad_(True) for t in (x, gx, fx, fgx)]
    assert torch.autograd.gradcheck(lambda *t: ops.anogan_residual(*t, 0.3, backend=pair.backend)[0], inputs)


def _run_adam(pair_backend, device, shape, dtype, iterations, seed=0, **hyper):
    z, m, v, step = _adam_state(shape, dtype, device, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(iterations):
        grad = torch.randn(shape, generator=g, dtype=dtype).to(device)
        active = (torch.rand(shape[:-1], generator=g) < 0.6).to(device)
        ops.masked_adam_(z, grad, m, v, step, active, backend=pair_backend, **hyper)
    return z, m, v, step


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (7, 13), (40, 67), (2, 3, 9), (5, 0), (4096, 32)])
@pytest.mark.parametrize("beta1", [0.9, 0.3])  # 0.3: torch's lerp takes its other branch (weight >= 0.5)
def test_masked_adam_matches_eager(pair, dtype, shape, beta1):
    hyper = dict(lr=0.02, beta1=beta1, beta2=0.99, eps=1e-6)
    got = _run_adam(pair.backend, pair.dev, shape, dtype, 6, **hyper)
    expected = _run_adam("eager", pair.dev, shape, dtype, 6, **hyper)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **ADAM_TOL[dtype])


def test_masked_adam_refuses_overlapping_state(pair):
    # Issue #12: one check before the backend is chosen, so every device refuses with the same message. (Bad
    # step counts are a device-side assertion on a GPU, which would end the CUDA context: not tested here.)
    z, m = torch.zeros(4, 5, device=pair.dev), torch.zeros(4, 5, device=pair.dev)
    step, active = torch.zeros(4, dtype=torch.int64, device=pair.dev), torch.ones(4, dtype=torch.bool, device=pair.dev)
    with pytest.raises(ValueError, match="z is written in place but several of its elements share"):
        ops.masked_adam_(z[:1].expand(4, 5), z, m, m.clone(), step, active, backend=pair.backend)
    with pytest.raises(ValueError, match="m is written in place and overlaps v"):
        ops.masked_adam_(z, z.clone(), m, m, step, active, backend=pair.backend)


def test_masked_adam_column_slices(pair):
    B, L = 1200, 21
    g = torch.Generator().manual_seed(9)
    state = torch.randn(B, 3 * L, generator=g).to(pair.dev)
    state[:, L:] = 0
    steps = torch.zeros(B, 2, dtype=torch.int64, device=pair.dev)
    grads = torch.randn(4, B, L + 5, generator=g).to(pair.dev)
    masks = (torch.rand(4, B, generator=g) < 0.5).to(pair.dev)
    expected = [state[:, :L].clone(), torch.zeros(B, L, device=pair.dev), torch.zeros(B, L, device=pair.dev),
                torch.zeros(B, dtype=torch.int64, device=pair.dev)]
    for grad, active in zip(grads, masks):
        ops.masked_adam_(state[:, :L], grad[:, 2:L + 2], state[:, L:2 * L], state[:, 2 * L:], steps[:, 1], active,
                         lr=0.1, backend=pair.backend)
        ref.masked_adam_(*expected[:1], grad[:, 2:L + 2].contiguous(), *expected[1:], active, lr=0.1)
    for got, want in zip((state[:, :L], state[:, L:2 * L], state[:, 2 * L:], steps[:, 1]), expected):
        torch.testing.assert_close(got, want, **ADAM_TOL[torch.float32])
    assert (steps[:, 0] == 0).all()


def test_masked_adam_leaves_inactive_rows_untouched(pair):
    z, m, v, step = _adam_state((6, 35), torch.float32, pair.dev)
    m += 0.5
    v += 0.25
    step += torch.arange(6, device=pair.dev)
    before = [t.clone() for t in (z, m, v, step)]
    grad = torch.randn(6, 35, device=pair.dev)
    grad[1] = float("nan")       # an inactive row's NaN gradient must not leak into anything
    active = torch.tensor([True, False, True, False, False, True], device=pair.dev)
    ops.masked_adam_(z, grad, m, v, step, active, lr=0.1, backend=pair.backend)
    for now, then in zip((z, m, v, step), before):
        assert torch.equal(now[~active], then[~active])
        assert not torch.equal(now[active], then[active])
    assert torch.equal(step, before[3] + active.long())


@pytest.mark.parametrize("width", [6, 40])
def test_masked_adam_nan_propagates(pair, width):
    z, m, v, step = _adam_state((3, width), torch.float64, pair.dev)
    grad = torch.randn(3, width, dtype=torch.float64, device=pair.dev)
    grad[0, 2] = float("nan")
    grad[1, 1] = float("inf")                 # m = inf, v = inf: the update is inf/inf = NaN
    ops.masked_adam_(z, grad, m, v, step, torch.ones(3, dtype=torch.bool, device=pair.dev), backend=pair.backend)
    z, m, v = z.cpu(), m.cpu(), v.cpu()
    assert torch.isnan(z[0, 2]) and torch.isnan(m[0, 2]) and torch.isnan(v[0, 2])
    assert torch.isfinite(torch.cat([z[0, :2], z[0, 3:]])).all()
    assert torch.isnan(z[1, 1]) and torch.isposinf(m[1, 1]) and torch.isposinf(v[1, 1])
    assert torch.isfinite(z[2]).all()


def test_opcheck(pair):
    ns = gs.need_ops(pair)
    x, gx, fx, fgx = _residual_inputs((6,), 9, 12, torch.float32, pair.dev, gap=1e-3)
    torch.library.opcheck(ns.anogan_residual, (x, gx, fx, fgx, 0.1))
    grads = [t.clone().requires_grad_(True) for t in (x, gx, fx, fgx)]
    torch.library.opcheck(ns.anogan_residual, (*grads, 0.25))
    torch.library.opcheck(ns.anogan_residual, (x[:, 1:5], gx[:, :4], fx[:, :0], fgx[:, :0], 1.0))
    z, m, v, step = _adam_state((9, 7), torch.float32, pair.dev)
    m += 0.1
    v += 0.2
    step += 3
    active = torch.tensor([True, False] * 4 + [True], device=pair.dev)
    torch.library.opcheck(ns.masked_adam_, (z, torch.randn(9, 7, device=pair.dev), m, v, step, active,
                                            1e-2, 0.9, 0.999, 1e-8))
    torch.library.opcheck(ns.masked_adam_, (z[:, 2:], torch.randn(9, 5, device=pair.dev), m[:, :5], v[:, 1:6],
                                            step, active, 0.1, 0.5, 0.9, 0.0))
