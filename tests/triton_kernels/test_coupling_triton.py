"""The Triton coupling kernels (kernels/coupling.py) in the interpreter, against the eager reference."""
from __future__ import annotations

import pytest
import torch

from genad_fast import ops
from genad_fast.reference import coupling as ref

pytestmark = pytest.mark.triton

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}
DIRECTIONS = {"forward": (ops.coupling_forward, ref.coupling_forward),
              "inverse": (ops.coupling_inverse, ref.coupling_inverse)}


def _inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype),
            torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=dtype))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 13), (40, 130)])
@pytest.mark.parametrize("clamp", [0.0, 2.0])
def test_matches_reference(direction, dtype, shape, clamp):
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs(shape, dtype)
    y, logdet = op(x, h, clamp, backend="triton")
    y_ref, logdet_ref = oracle(x, h, clamp)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(logdet, logdet_ref, **TOL[dtype])


def test_column_slices():
    big_x, big_h = _inputs((20, 30), torch.float32)
    x, h = big_x[:, 4:14], big_h[:, 10:30]
    y, logdet = ops.coupling_forward(x, h, 1.0, backend="triton")
    y_ref, logdet_ref = ref.coupling_forward(x, h, 1.0)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    torch.testing.assert_close(logdet, logdet_ref, **TOL[torch.float32])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("clamp", [0.0, 2.0])
def test_backward_gradcheck_float64(direction, clamp):
    op, _ = DIRECTIONS[direction]
    x, h = _inputs((5, 4), torch.float64)
    x.requires_grad_(True)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: op(a, b, clamp, backend="triton"), (x, h))


def test_nan_propagates():
    x, h = _inputs((3, 5), torch.float32)
    x[1, 2] = float("nan")
    h[2, 0] = float("nan")
    y, logdet = ops.coupling_forward(x, h, 2.0, backend="triton")
    assert torch.isnan(y[1, 2]) and torch.isfinite(logdet[1])
    assert torch.isnan(y[2, 0]) and torch.isnan(logdet[2])
    assert torch.isfinite(y[0]).all()


def test_opcheck_triton_ops():
    x, h = _inputs((6, 3), torch.float32)
    torch.library.opcheck(torch.ops.genad_fast_triton.coupling_forward, (x, h, 1.0))
    torch.library.opcheck(torch.ops.genad_fast_triton.coupling_inverse, (x, h, 0.0))
    torch.library.opcheck(torch.ops.genad_fast_triton.coupling_backward,
                          (torch.randn(6, 3), torch.randn(6), x, h, 1.0, False))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_backward_matches_reference_autograd(direction):
    # Dense weights (a plain grad_out) and y.sum() + logdet.sum() (expanded grads, column stride 0),
    # float64 with a clamp that float32 cannot hold (0.3 goes to the kernel through a tensor).
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs((9, 21), torch.float64)
    w, wl = torch.randn(9, 21, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    for loss in (lambda y, ld: (y * w).sum() + (ld * wl).sum(), lambda y, ld: y.sum() + ld.sum()):
        grads = []
        for fn in (lambda a, b: op(a, b, 0.3, backend="triton"), lambda a, b: oracle(a, b, 0.3)):
            a, b = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
            loss(*fn(a, b)).backward()
            grads.append((a.grad, b.grad))
        torch.testing.assert_close(grads[0], grads[1], **TOL[torch.float64])
