"""Affine coupling (coupling_forward / coupling_inverse / coupling_backward) on the device against the eager
reference on the same device: values, strides, NaN/inf, gradients (gradcheck in float64), opcheck.
Contracts and tolerances as tests/test_coupling.py; float64 at 1e-10 as the Triton tests (exp/tanh of libdevice)."""
from __future__ import annotations

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from genad_fast.reference import coupling as ref

TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}
# (4096, 64): many blocks of every kernel; (1000, 257): odd width past any vector width; (3, 4, 6): batch shape.
SHAPES = [(0, 5), (1, 1), (7, 13), (3, 4, 6), (1000, 257), (4096, 64)]
DIRECTIONS = {
    "forward": (ops.coupling_forward, ref.coupling_forward),
    "inverse": (ops.coupling_inverse, ref.coupling_inverse),
}


def _inputs(shape, dtype, device, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    h = scale * torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=dtype)
    return x.to(device), h.to(device)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("clamp", [0.0, 2.0])
def test_matches_eager(pair, direction, dtype, shape, clamp):
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs(shape, dtype, pair.dev)
    y, logdet = op(x, h, clamp, backend=pair.backend)
    y_ref, logdet_ref = oracle(x, h, clamp)
    assert y.device == x.device and y.shape == x.shape and logdet.shape == x.shape[:-1]
    assert y.dtype == dtype and logdet.dtype == dtype
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(logdet, logdet_ref, **TOL[dtype])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_column_slices(pair, direction, dtype):
    op, oracle = DIRECTIONS[direction]
    big_x, big_h = _inputs((300, 40), dtype, pair.dev)
    x, h = big_x[:, 3:20], torch.cat([big_h, big_h], 1)[:, 5:39]  # row strides 40 and 80
    assert not x.is_contiguous() and not h.is_contiguous()
    y, logdet = op(x, h, 1.5, backend=pair.backend)
    y_ref, logdet_ref = oracle(x.contiguous(), h.contiguous(), 1.5)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(logdet, logdet_ref, **TOL[dtype])


@pytest.mark.parametrize("clamp", [0.0, 3.0])
def test_inverse_undoes_forward(pair, clamp):
    x, h = _inputs((4099, 9), torch.float64, pair.dev)
    y, ld_f = ops.coupling_forward(x, h, clamp, backend=pair.backend)
    x_back, ld_i = ops.coupling_inverse(y, h, clamp, backend=pair.backend)
    torch.testing.assert_close(x_back, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld_f, -ld_i, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [6, 40])
def test_nan_and_inf_propagate(pair, d):
    x, h = _inputs((4, d), torch.float32, pair.dev)
    x[0, 2] = float("nan")           # only y[0, 2] is NaN
    h[1, 3] = float("nan")           # s_raw NaN: y[1, 3] and logdet[1]
    h[2, d + 1] = float("inf")       # shift inf: y[2, 1] = inf, logdet finite
    y, logdet = ops.coupling_forward(x, h, 0.0, backend=pair.backend)
    y, logdet = y.cpu(), logdet.cpu()
    assert torch.isnan(y[0, 2]) and torch.isfinite(torch.cat([y[0, :2], y[0, 3:]])).all()
    assert torch.isnan(y[1, 3]) and torch.isnan(logdet[1])
    assert torch.isposinf(y[2, 1]) and torch.isfinite(logdet[2])
    assert torch.isfinite(logdet[0]) and torch.isfinite(y[3]).all()
    _, logdet_c = ops.coupling_forward(x, h, 2.0, backend=pair.backend)
    logdet_c = logdet_c.cpu()
    assert torch.isnan(logdet_c[1]) and torch.isfinite(logdet_c[[0, 2, 3]]).all()
    y_inv, logdet_inv = ops.coupling_inverse(x, h, 0.0, backend=pair.backend)
    y_ref, logdet_ref = ref.coupling_inverse(x, h, 0.0)
    torch.testing.assert_close(y_inv, y_ref, equal_nan=True, **TOL[torch.float32])
    torch.testing.assert_close(logdet_inv, logdet_ref, equal_nan=True, **TOL[torch.float32])


def test_infinite_log_scale_follows_the_formula(pair):
    x = torch.ones(2, 40, device=pair.dev)
    h = torch.zeros(2, 80, device=pair.dev)
    h[0, :40] = float("inf")
    h[1, :40] = -float("inf")
    y, logdet = ops.coupling_forward(x, h, 2.0, backend=pair.backend)
    torch.testing.assert_close(y[0].cpu(), torch.full((40,), torch.e ** 2))
    torch.testing.assert_close(y[1].cpu(), torch.full((40,), torch.e ** -2))
    torch.testing.assert_close(logdet.cpu(), torch.tensor([80.0, -80.0]))
    y, logdet = ops.coupling_forward(x, h, 0.0, backend=pair.backend)
    assert torch.isposinf(y[0]).all() and (y[1] == 0).all()
    assert torch.isposinf(logdet[0]) and torch.isneginf(logdet[1])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("clamp", [0.0, 2.0])
@pytest.mark.parametrize("shape", [(4, 5), (3, 19)])
def test_gradcheck_float64(pair, direction, clamp, shape):
    op, _ = DIRECTIONS[direction]
    x, h = _inputs(shape, torch.float64, pair.dev)
    x.requires_grad_(True)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: op(a, b, clamp, backend=pair.backend), (x, h))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_gradients_match_eager_autograd(pair, direction, dtype):
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs((2000, 31), dtype, pair.dev)
    g = torch.Generator().manual_seed(1)
    wy, wl = torch.randn(2000, 31, generator=g, dtype=dtype).to(pair.dev), \
        torch.randn(2000, generator=g, dtype=dtype).to(pair.dev)
    grads = []
    for fn in (lambda a, b: op(a, b, 2.0, backend=pair.backend), lambda a, b: oracle(a, b, 2.0)):
        a, b = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
        y, ld = fn(a, b)
        ((y * wy).sum() + (ld * wl).sum()).backward()
        grads.append((a.grad, b.grad))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(grads[0][0], grads[1][0], **tol)
    torch.testing.assert_close(grads[0][1], grads[1][1], **tol)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_broadcast_gradients(pair, direction):
    # (y.sum() + 3 logdet.sum()).backward() hands the backward expanded gradients (stride 0), read in place.
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs((50, 37), torch.float64, pair.dev)
    grads = []
    for fn in (lambda a, b: op(a, b, 2.0, backend=pair.backend), lambda a, b: oracle(a, b, 2.0)):
        a, b = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
        y, ld = fn(a, b)
        (y.sum() + 3 * ld.sum()).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1], **TOL[torch.float64])


@pytest.mark.parametrize("clamp", [0.0, 1.0])
def test_opcheck(pair, clamp):
    ns = gs.need_ops(pair)
    x, h = _inputs((9, 7), torch.float32, pair.dev)
    x.requires_grad_(True)
    h.requires_grad_(True)
    for name in ("coupling_forward", "coupling_inverse"):
        torch.library.opcheck(getattr(ns, name), (x, h, clamp))
    g, gl = torch.randn(9, 7, device=pair.dev), torch.randn(9, device=pair.dev)
    for inverse in (False, True):
        torch.library.opcheck(ns.coupling_backward, (g, gl, x.detach(), h.detach(), clamp, inverse))
        torch.library.opcheck(ns.coupling_backward,
                              (g[:1].expand(9, 7), gl[:1].expand(9), x.detach(), h.detach(), clamp, inverse))
