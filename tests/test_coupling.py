"""Fused affine coupling (genad_fast.ops.coupling_forward / coupling_inverse) against the eager reference."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genad_fast
from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import coupling as ref

BACKENDS = ["eager", "cpu"]
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
SHAPES = [(0, 5), (1, 1), (7, 13), (1000, 257), (3, 4, 6)]
DIRECTIONS = {
    "forward": (ops.coupling_forward, ref.coupling_forward),
    "inverse": (ops.coupling_inverse, ref.coupling_inverse),
}


def _inputs(shape, dtype, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    h = scale * torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=dtype)
    return x, h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("clamp", [0.0, 2.0])
def test_matches_reference(backend, direction, dtype, shape, clamp):
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs(shape, dtype)
    y, logdet = op(x, h, clamp, backend=backend)
    y_ref, logdet_ref = oracle(x, h, clamp)
    assert y.shape == x.shape and logdet.shape == x.shape[:-1] and y.dtype == dtype and logdet.dtype == dtype
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(logdet, logdet_ref, **TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_column_slices_are_read_in_place(backend, direction):
    op, oracle = DIRECTIONS[direction]
    big_x, big_h = _inputs((50, 40), torch.float32)
    x, h = big_x[:, 3:20], torch.cat([big_h, big_h], 1)[:, 5:39]  # row strides 40 and 80
    assert not x.is_contiguous() and not h.is_contiguous()
    y, logdet = op(x, h, 1.5, backend=backend)
    y_ref, logdet_ref = oracle(x.contiguous(), h.contiguous(), 1.5)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    torch.testing.assert_close(logdet, logdet_ref, **TOL[torch.float32])


def test_cpu_kernel_does_not_copy_strided_inputs(monkeypatch):
    # A hidden .contiguous() in the op layer would show up as a call to Tensor.contiguous on the slice.
    big_x, big_h = _inputs((64, 32), torch.float32)  # h: [64, 64]
    x, h = big_x[:, :16], big_h[:, :32]
    calls = []
    original = torch.Tensor.contiguous
    monkeypatch.setattr(torch.Tensor, "contiguous", lambda self, *a, **k: calls.append(self.shape) or original(self))
    ops.coupling_forward(x, h, 1.0, backend="cpu")
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clamp", [0.0, 3.0])
def test_inverse_undoes_forward(backend, clamp):
    x, h = _inputs((33, 9), torch.float64)
    y, ld_f = ops.coupling_forward(x, h, clamp, backend=backend)
    x_back, ld_i = ops.coupling_inverse(y, h, clamp, backend=backend)
    torch.testing.assert_close(x_back, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld_f, -ld_i, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("d", [6, 40])  # 40: the CPU kernel's vector loop as well as its scalar tail
def test_nan_and_inf_propagate(backend, d):
    x, h = _inputs((4, d), torch.float32)
    x[0, 2] = float("nan")           # only y[0, 2] is NaN
    h[1, 3] = float("nan")           # s_raw NaN: y[1, 3] and logdet[1]
    h[2, d + 1] = float("inf")       # shift inf: y[2, 1] = inf, logdet finite
    y, logdet = ops.coupling_forward(x, h, 0.0, backend=backend)
    assert torch.isnan(y[0, 2]) and torch.isfinite(torch.cat([y[0, :2], y[0, 3:]])).all()
    assert torch.isnan(y[1, 3]) and torch.isnan(logdet[1])
    assert torch.isposinf(y[2, 1]) and torch.isfinite(logdet[2])
    assert torch.isfinite(logdet[0]) and torch.isfinite(y[3]).all()
    _, logdet_c = ops.coupling_forward(x, h, 2.0, backend=backend)
    assert torch.isnan(logdet_c[1]) and torch.isfinite(logdet_c[[0, 2, 3]]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_log_scale_follows_the_formula(backend):
    # s_raw = ±inf: with a clamp s = ±clamp (tanh saturates); without one exp(s) is inf or 0.
    x = torch.ones(2, 40)
    h = torch.zeros(2, 80)
    h[0, :40] = float("inf")
    h[1, :40] = -float("inf")
    y, logdet = ops.coupling_forward(x, h, 2.0, backend=backend)
    torch.testing.assert_close(y[0], torch.full((40,), torch.e ** 2))
    torch.testing.assert_close(y[1], torch.full((40,), torch.e ** -2))
    torch.testing.assert_close(logdet, torch.tensor([80.0, -80.0]))
    y, logdet = ops.coupling_forward(x, h, 0.0, backend=backend)
    assert torch.isposinf(y[0]).all() and (y[1] == 0).all()
    assert torch.isposinf(logdet[0]) and torch.isneginf(logdet[1])


@pytest.mark.parametrize("clamp", [0.0, 1.0, 2.0])
def test_float32_error_budget_against_float64(clamp):
    # The CPU kernel's own vectorised float32 tanh (not SLEEF's) may be at most 2x further from a
    # float64 oracle than eager float32 is (plus half an ulp), over the whole range of log-scales.
    u = torch.cat([torch.linspace(-30, 30, 200_000), torch.logspace(-30, 1.5, 20_000),
                   -torch.logspace(-30, 1.5, 20_000)]).reshape(-1, 40)
    x, h = torch.ones_like(u), torch.cat([u, torch.zeros_like(u)], 1)  # y = exp(s)
    y, logdet = ops.coupling_forward(x, h, clamp, backend="cpu")
    y_eager, _ = ref.coupling_forward(x, h, clamp)
    y64, logdet64 = ref.coupling_forward(x.double(), h.double(), clamp)
    ulp = torch.finfo(torch.float32).eps * y64.abs().clamp_min(torch.finfo(torch.float32).tiny)
    fused_ulps = ((y.double() - y64).abs() / ulp).max().item()
    eager_ulps = ((y_eager.double() - y64).abs() / ulp).max().item()
    assert fused_ulps <= 2 * eager_ulps + 0.5, (fused_ulps, eager_ulps)
    torch.testing.assert_close(logdet.double(), logdet64, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("clamp", [0.0, 2.0])
@pytest.mark.parametrize("d", [5, 19])  # 19: vector loop and scalar tail of the CPU kernel
def test_gradcheck_float64(backend, direction, clamp, d):
    op, _ = DIRECTIONS[direction]
    x, h = _inputs((4, d), torch.float64)
    x.requires_grad_(True)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: op(a, b, clamp, backend=backend), (x, h))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradients_match_reference_autograd(direction):
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs((200, 31), torch.float32)
    weights = torch.randn(200, 31), torch.randn(200)
    grads = []
    for fn in (lambda a, b: op(a, b, 2.0, backend="cpu"), lambda a, b: oracle(a, b, 2.0)):
        a, b = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
        y, ld = fn(a, b)
        ((y * weights[0]).sum() + (ld * weights[1]).sum()).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_broadcast_gradients_are_read_in_place(direction):
    # (y.sum() + logdet.sum()).backward() hands the backward expanded gradients (strides (0, 0) and (0,)):
    # the kernel reads them as they are, and they must give what the materialised ones give.
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs((50, 37), torch.float64)
    grads = []
    for fn in (lambda a, b: op(a, b, 2.0, backend="cpu"), lambda a, b: oracle(a, b, 2.0)):
        a, b = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
        y, ld = fn(a, b)
        (y.sum() + 3 * ld.sum()).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    g, gl = torch.tensor(0.5, dtype=torch.float64).expand(50, 37), torch.tensor(2.0, dtype=torch.float64).expand(50)
    inverse = direction == "inverse"
    expanded = torch.ops.genad_fast.coupling_backward(g, gl, x, h, 2.0, inverse)
    dense = torch.ops.genad_fast.coupling_backward(g.contiguous(), gl.contiguous(), x, h, 2.0, inverse)
    torch.testing.assert_close(expanded, dense, rtol=0, atol=0)


def test_output_gradient_only():
    x, h = _inputs((5, 20), torch.float64)
    h.requires_grad_(True)
    y, _ = ops.coupling_forward(x, h, 2.0, backend="cpu")
    y.sum().backward()
    h_ref = h.detach().clone().requires_grad_(True)
    ref.coupling_forward(x, h_ref, 2.0)[0].sum().backward()
    torch.testing.assert_close(h.grad, h_ref.grad)


def test_logdet_only_gradient():
    x, h = _inputs((5, 4), torch.float64)
    h.requires_grad_(True)
    _, logdet = ops.coupling_forward(x, h, 2.0, backend="cpu")
    logdet.sum().backward()
    expected = 1 - torch.tanh(h[:, :4].detach() / 2) ** 2
    torch.testing.assert_close(h.grad[:, :4], expected)
    assert (h.grad[:, 4:] == 0).all()


@pytest.mark.parametrize("clamp", [0.0, 1.0])
def test_opcheck(clamp):
    x, h = _inputs((9, 7), torch.float32)
    x.requires_grad_(True)
    h.requires_grad_(True)
    for name in ("coupling_forward", "coupling_inverse"):
        torch.library.opcheck(getattr(torch.ops.genad_fast, name), (x, h, clamp))
    g, gl = torch.randn(9, 7), torch.randn(9)
    for inverse in (False, True):
        torch.library.opcheck(torch.ops.genad_fast.coupling_backward,
                              (g, gl, x.detach(), h.detach(), clamp, inverse))
        torch.library.opcheck(torch.ops.genad_fast.coupling_backward,
                              (g[:1].expand(9, 7), gl[:1].expand(9), x.detach(), h.detach(), clamp, inverse))


def test_torch_compile_fullgraph():
    x, h = _inputs((64, 8), torch.float32)

    def flow_step(a, b):
        y, ld = ops.coupling_forward(a, b, 2.0, backend="cpu")
        return y.sum(1) + ld

    compiled = torch.compile(flow_step, fullgraph=True)
    torch.testing.assert_close(compiled(x, h), flow_step(x, h))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 70), clamp=st.sampled_from([0.0, 0.5, 4.0]),
       scale=st.floats(0.0, 5.0), seed=st.integers(0, 2**16), inverse=st.booleans())
def test_hypothesis_shapes_and_values(n, d, clamp, scale, seed, inverse):
    op, oracle = DIRECTIONS["inverse" if inverse else "forward"]
    x, h = _inputs((n, d), torch.float64, seed=seed, scale=scale)
    y, ld = op(x, h, clamp, backend="cpu")
    y_ref, ld_ref = oracle(x, h, clamp)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, h_shape, dtype, clamp, error, match", [
    ((4, 3), (4, 5), torch.float32, 0.0, ValueError, "2·D = 6 wide"),
    ((4, 3), (5, 6), torch.float32, 0.0, ValueError, "leading"),
    ((4, 3), (4, 2, 6), torch.float32, 0.0, ValueError, "same rank"),
    ((4, 3), (4, 6), torch.int64, 0.0, TypeError, "dtype"),
    ((4, 3), (4, 6), torch.float32, -1.0, ValueError, "clamp must be"),
    ((4, 3), (4, 6), torch.float32, float("nan"), ValueError, "clamp must be"),
])
def test_bad_input_is_a_clear_error(x_shape, h_shape, dtype, clamp, error, match):
    x = torch.zeros(x_shape, dtype=dtype)
    h = torch.zeros(h_shape, dtype=dtype)
    for backend in BACKENDS:
        with pytest.raises(error, match=match):
            ops.coupling_forward(x, h, clamp, backend=backend)


def _same_values_other_layout(t, layout):
    """t's values in another memory layout: a column stride of 2, or dimensions stored in reverse order."""
    if layout == "column-stride-2":
        return torch.stack([t, t], -1)[..., 0]
    return t.permute(*reversed(range(t.dim()))).contiguous().permute(*reversed(range(t.dim())))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", ["column-stride-2", "reversed"])
def test_any_input_layout_equals_the_reference(backend, direction, layout):
    # Issue #12: inputs of any layout are accepted, as PyTorch ops accept them (a view where the kernel can read
    # it, else one copy); a non-unit last stride used to be an error. A broadcast row (row stride 0) is read
    # in place.
    op, oracle = DIRECTIONS[direction]
    x, h = _inputs((3, 7, 5), torch.float64)
    xs, hs = _same_values_other_layout(x, layout), _same_values_other_layout(h, layout)
    assert xs.stride(-1) != 1
    for a, b in ((xs, hs), (x[:1, :1].expand(3, 7, 5), hs)):
        got = op(a, b, 1.5, backend=backend)
        want = oracle(a.contiguous(), b.contiguous(), 1.5)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, **TOL[torch.float64])


def test_mixed_dtypes_and_scalar_are_errors():
    with pytest.raises(TypeError, match="share a dtype"):
        ops.coupling_forward(torch.zeros(2, 3), torch.zeros(2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="rank"):
        ops.coupling_forward(torch.tensor(1.0), torch.zeros(2))


def test_kernel_checks_hold_without_the_python_layer():
    with pytest.raises(RuntimeError, match="2·D"):
        torch.ops.genad_fast.coupling_forward(torch.zeros(2, 3), torch.zeros(2, 5), 0.0)


def test_explicit_backend_that_cannot_run_says_why():
    x, h = _inputs((3, 2), torch.float32)
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        ops.coupling_forward(x, h, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        ops.coupling_forward(x, h, backend="fast")


def test_environment_variable_picks_the_backend(monkeypatch):
    x, h = _inputs((3, 2), torch.float32)
    monkeypatch.setenv("GENAD_FAST_BACKEND", "cuda")
    with pytest.raises(BackendUnavailableError):
        ops.coupling_forward(x, h)
    monkeypatch.setenv("GENAD_FAST_BACKEND", "eager")
    ops.coupling_forward(x, h)  # runs


def test_backends_report_is_complete():
    names = [b.name for b in genad_fast.backends()]
    assert names == ["eager", "cpu", "cuda", "triton"]
    assert all(b.reason for b in genad_fast.backends())
