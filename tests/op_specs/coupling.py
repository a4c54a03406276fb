"""Spec of the affine coupling ops (RealNVP / Glow): ``coupling_forward`` and ``coupling_inverse``, and
``coupling_backward``, the registered backward that is their autograd formula.

x [*, D], h [*, 2D] (first half the raw log-scale, second half the shift), clamp c >= 0:
s = c·tanh(s_raw/c) (c > 0) or s_raw (c = 0); forward y = x·exp(s) + t, logdet = Σ_j s_j; inverse
x = (y − t)·exp(−s), logdet = −Σ_j s_j. Oracle: :mod:`genad_fast.reference.coupling`.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.reference import coupling as ref
from op_specs.compare import EXACT, F32, F64, Tolerances, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, sized

OPS = ("coupling_forward", "coupling_inverse")
DIRECTIONS = {
    "forward": (ops.coupling_forward, ref.coupling_forward),
    "inverse": (ops.coupling_inverse, ref.coupling_inverse),
}
CLAMPS = (0.0, 2.0)
# (0, 5): empty; (1, 1); (7, 13), (40, 130): odd widths, several Triton programs; (3, 4, 6): a batch shape;
# (1000, 257): past any vector width, many CPU blocks; (4096, 64): many blocks of every GPU kernel.
SHAPES = [(0, 5), (1, 1), (7, 13), (3, 4, 6), (40, 130), sized((1000, 257), MEDIUM), sized((4096, 64), LARGE)]
# d = 5 and 19: the CPU kernel's scalar tail alone, and its vector loop plus the tail (each gradcheck element is
# two kernel calls: 3 x 19 costs the interpreter seconds).
GRADCHECK_SHAPES = [(4, 5), sized((3, 19), MEDIUM)]
LAYOUTS = ("column-stride-2", "reversed")

# y and logdet against the oracle. float32: exp and tanh from another libm (SLEEF on the CPU, CUDA's, Triton's
# libdevice), a few ulps of y, and logdet summed over D in another order: 2e-5. The interpreter evaluates them with
# numpy float32 in the oracle's order: 1e-5. float64: SLEEF's u10 functions on the CPU agree to 1e-12;
# libdevice's float64 exp/tanh (CUDA and Triton on the GPU) and numpy's (the interpreter) to 1e-10.
TOL = Tolerances({F32: tol(2e-5), F64: tol(1e-12)}, interpreter={F32: tol(1e-5), F64: tol(1e-10)},
                 cuda={F64: tol(1e-10)}, triton={F64: tol(1e-10)})
# The round trip inverse(forward(x)) in float64: two exp's of 1e-12 (CPU) or 1e-10 (libdevice) each; the two
# logdets are the same sum of the same s: equal up to the last bits.
ROUND_TRIP_TOL = Tolerances({F64: tol(1e-12)}, cuda={F64: tol(1e-10)}, triton={F64: tol(1e-10)})
LOGDET_SIGN_TOL = Tolerances({F64: tol(1e-14)}, cuda={F64: tol(1e-12)}, triton={F64: tol(1e-12)})
# Gradients against the oracle's autograd: float32 products of exp(s), tanh'(s_raw/c) and the output weights, and
# the logdet weight summed in another order: 1e-4 relative, 1e-5 absolute. float64 as TOL.
GRAD_TOL = Tolerances({F32: tol(1e-4, 1e-5), F64: tol(1e-12)}, cuda={F64: tol(1e-10)}, triton={F64: tol(1e-10)})
# CPU runner only: float64 over random shapes and scales (Hypothesis), as TOL's float64 entry for the cpu backend.
HYPOTHESIS_TOL = TOL("cpu", F64)
# CPU runner only: logdet of 40 float32 log-scales against the float64 oracle (the y part is an ulp budget).
FLOAT32_LOGDET_TOL = tol(1e-5, 1e-4)


def inputs(shape, dtype, device="cpu", seed=0, scale=1.0):
    """x [shape] and h [shape[:-1], 2·shape[-1]], standard normal (h times ``scale``), built on the CPU."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    h = scale * torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=dtype)
    return x.to(device), h.to(device)


def _run(target: Target, direction: str, x, h, clamp):
    return DIRECTIONS[direction][0](x, h, clamp, backend=target.backend)


def check_matches_reference(target: Target, direction, dtype, shape, clamp):
    x, h = inputs(shape, dtype, target.dev)
    y, logdet = _run(target, direction, x, h, clamp)
    y_ref, logdet_ref = DIRECTIONS[direction][1](x, h, clamp)
    assert y.device == x.device and y.shape == x.shape and logdet.shape == x.shape[:-1]
    assert y.dtype == dtype and logdet.dtype == dtype
    close(y, y_ref, TOL(target, dtype))
    close(logdet, logdet_ref, TOL(target, dtype))


def check_column_slices(target: Target, direction, dtype):
    """Column slices of bigger matrices (row strides 40 and 80) are read in place."""
    big_x, big_h = inputs((target.pick(20, 50, 300), 40), dtype, target.dev)
    x, h = big_x[:, 3:20], torch.cat([big_h, big_h], 1)[:, 5:39]
    assert not x.is_contiguous() and not h.is_contiguous()
    y, logdet = _run(target, direction, x, h, 1.5)
    y_ref, logdet_ref = DIRECTIONS[direction][1](x.contiguous(), h.contiguous(), 1.5)
    close(y, y_ref, TOL(target, dtype))
    close(logdet, logdet_ref, TOL(target, dtype))


def _other_layout(t, layout):
    """t's values in another memory layout: a column stride of 2, or dimensions stored in reverse order."""
    if layout == "column-stride-2":
        return torch.stack([t, t], -1)[..., 0]
    return t.permute(*reversed(range(t.dim()))).contiguous().permute(*reversed(range(t.dim())))


def check_any_layout(target: Target, direction, layout):
    """Issue #12: inputs of any layout are accepted (a view where the kernel can read it, else one copy); a
    broadcast row (row stride 0) is read in place."""
    x, h = inputs((3, 7, 5), F64, target.dev)
    xs, hs = _other_layout(x, layout), _other_layout(h, layout)
    assert xs.stride(-1) != 1
    for a, b in ((xs, hs), (x[:1, :1].expand(3, 7, 5), hs)):
        got = _run(target, direction, a, b, 1.5)
        want = DIRECTIONS[direction][1](a.contiguous(), b.contiguous(), 1.5)
        for g, w in zip(got, want):
            close(g, w, TOL(target, F64))


def check_inverse_undoes_forward(target: Target, clamp):
    x, h = inputs((target.pick(33, 33, 4099), 9), F64, target.dev)
    y, ld_f = _run(target, "forward", x, h, clamp)
    x_back, ld_i = _run(target, "inverse", y, h, clamp)
    close(x_back, x, ROUND_TRIP_TOL(target, F64))
    close(ld_f, -ld_i, LOGDET_SIGN_TOL(target, F64))


def check_nan_and_inf_propagate(target: Target, d):
    """d = 40: the CPU kernel's vector loop as well as its scalar tail."""
    x, h = inputs((4, d), F32, target.dev)
    x[0, 2] = float("nan")           # only y[0, 2] is NaN
    h[1, 3] = float("nan")           # s_raw NaN: y[1, 3] and logdet[1]
    h[2, d + 1] = float("inf")       # shift inf: y[2, 1] = inf, logdet finite
    y, logdet = (t.cpu() for t in _run(target, "forward", x, h, 0.0))
    assert torch.isnan(y[0, 2]) and torch.isfinite(torch.cat([y[0, :2], y[0, 3:]])).all()
    assert torch.isnan(y[1, 3]) and torch.isnan(logdet[1])
    assert torch.isposinf(y[2, 1]) and torch.isfinite(logdet[2])
    assert torch.isfinite(logdet[0]) and torch.isfinite(y[3]).all()
    y_c, logdet_c = (t.cpu() for t in _run(target, "forward", x, h, 2.0))
    assert torch.isnan(y_c[1, 3]) and torch.isnan(logdet_c[1]) and torch.isfinite(logdet_c[[0, 2, 3]]).all()
    y_inv, logdet_inv = _run(target, "inverse", x, h, 0.0)
    y_ref, logdet_ref = ref.coupling_inverse(x, h, 0.0)
    close(y_inv, y_ref, TOL(target, F32), equal_nan=True)
    close(logdet_inv, logdet_ref, TOL(target, F32), equal_nan=True)


def check_infinite_log_scale(target: Target):
    """s_raw = ±inf: with a clamp s = ±clamp (tanh saturates); without one exp(s) is inf or 0."""
    x = torch.ones(2, 40, device=target.dev)
    h = torch.zeros(2, 80, device=target.dev)
    h[0, :40] = float("inf")
    h[1, :40] = -float("inf")
    y, logdet = (t.cpu() for t in _run(target, "forward", x, h, 2.0))
    torch.testing.assert_close(y[0], torch.full((40,), torch.e ** 2))  # torch's float32 defaults: a few ulps
    torch.testing.assert_close(y[1], torch.full((40,), torch.e ** -2))
    torch.testing.assert_close(logdet, torch.tensor([80.0, -80.0]))
    y, logdet = (t.cpu() for t in _run(target, "forward", x, h, 0.0))
    assert torch.isposinf(y[0]).all() and (y[1] == 0).all()
    assert torch.isposinf(logdet[0]) and torch.isneginf(logdet[1])


def check_gradcheck(target: Target, direction, clamp, shape):
    x, h = inputs(shape, F64, target.dev)
    x.requires_grad_(True)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: _run(target, direction, a, b, clamp), (x, h))


def _grads(fn, x, h, loss):
    a, b = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
    loss(*fn(a, b)).backward()
    return a.grad, b.grad


def check_gradients_match_reference(target: Target, direction, dtype, clamp):
    """Dense output weights; clamp 0.3 is not a float32 number (it reaches a float64 kernel unrounded)."""
    rows = target.pick(9, 200, 2000)
    x, h = inputs((rows, 31), dtype, target.dev)
    g = torch.Generator().manual_seed(1)
    wy = torch.randn(rows, 31, generator=g, dtype=dtype).to(target.dev)
    wl = torch.randn(rows, generator=g, dtype=dtype).to(target.dev)

    def loss(y, ld):
        return (y * wy).sum() + (ld * wl).sum()

    got = _grads(lambda a, b: _run(target, direction, a, b, clamp), x, h, loss)
    want = _grads(lambda a, b: DIRECTIONS[direction][1](a, b, clamp), x, h, loss)
    close(got[0], want[0], GRAD_TOL(target, dtype))
    close(got[1], want[1], GRAD_TOL(target, dtype))


def check_broadcast_gradients(target: Target, direction):
    """(y.sum() + 3·logdet.sum()).backward() hands the backward expanded gradients (strides (0, 0) and (0,)):
    the kernel reads them as they are, and they give what the materialised ones give."""
    x, h = inputs((50, 37), F64, target.dev)

    def loss(y, ld):
        return y.sum() + 3 * ld.sum()

    got = _grads(lambda a, b: _run(target, direction, a, b, 2.0), x, h, loss)
    want = _grads(lambda a, b: DIRECTIONS[direction][1](a, b, 2.0), x, h, loss)
    close(got, want, GRAD_TOL(target, F64))
    if target.ops is None:
        return
    g = torch.tensor(0.5, dtype=F64, device=target.dev).expand(50, 37)
    gl = torch.tensor(2.0, dtype=F64, device=target.dev).expand(50)
    inverse = direction == "inverse"
    expanded = target.ops.coupling_backward(g, gl, x, h, 2.0, inverse)
    dense = target.ops.coupling_backward(g.contiguous(), gl.contiguous(), x, h, 2.0, inverse)
    close(expanded, dense, EXACT)


def check_output_gradient_only(target: Target):
    """Only y takes part in the loss: the backward gets no logdet gradient."""
    x, h = inputs((5, 20), F64, target.dev)
    h.requires_grad_(True)
    _run(target, "forward", x, h, 2.0)[0].sum().backward()
    h_ref = h.detach().clone().requires_grad_(True)
    ref.coupling_forward(x, h_ref, 2.0)[0].sum().backward()
    close(h.grad, h_ref.grad, GRAD_TOL(target, F64))


def check_logdet_only_gradient(target: Target):
    """Only logdet takes part: d logdet / d s_raw = 1 − tanh(s_raw/c)², and nothing reaches the shift."""
    x, h = inputs((5, 4), F64, target.dev)
    h.requires_grad_(True)
    _run(target, "forward", x, h, 2.0)[1].sum().backward()
    expected = 1 - torch.tanh(h[:, :4].detach() / 2) ** 2
    close(h.grad[:, :4], expected, GRAD_TOL(target, F64))
    assert (h.grad[:, 4:] == 0).all()


def opcheck_samples(target: Target) -> dict:
    """Registered op name -> argument tuples for ``torch.library.opcheck``: inputs that require grad (the autograd
    registration), both clamps, dense and expanded (stride 0) output gradients."""
    device = target.dev
    x, h = inputs((9, 7), F32, device)
    x.requires_grad_(True)
    h.requires_grad_(True)
    g = torch.Generator().manual_seed(2)
    gy, gl = torch.randn(9, 7, generator=g).to(device), torch.randn(9, generator=g).to(device)
    xd, hd = x.detach(), h.detach()
    return {
        "coupling_forward": [(x, h, clamp) for clamp in (0.0, 1.0)],
        "coupling_inverse": [(x, h, clamp) for clamp in (0.0, 1.0)],
        "coupling_backward": [args for clamp in (0.0, 1.0) for inverse in (False, True)
                              for args in ((gy, gl, xd, hd, clamp, inverse),
                                           (gy[:1].expand(9, 7), gl[:1].expand(9), xd, hd, clamp, inverse))],
    }


OPCHECK = ("coupling_forward", "coupling_inverse", "coupling_backward")
