"""Fused affine coupling (genad_fast.ops.coupling_forward / coupling_inverse) against the eager reference, on CPU
tensors: the spec's checks (tests/op_specs/coupling.py) on the eager and cpu backends, and what only the CPU
runner checks (no hidden copies, the CPU kernel's float32 error budget, torch.compile, Hypothesis, bad input)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genad_fast
from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import coupling as ref
from op_specs import coupling as spec
from op_specs.compare import close
from op_specs.targets import CPU_TARGETS, MEDIUM, Target, run_opcheck, upto

BACKENDS = ["eager", "cpu"]
CPU = Target("cpu", "cpu")
DIRECTIONS = spec.DIRECTIONS
_inputs = spec.inputs


# ---- the spec's checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", upto(spec.SHAPES, MEDIUM))
@pytest.mark.parametrize("clamp", spec.CLAMPS)
def test_matches_reference(target, direction, dtype, shape, clamp):
    spec.check_matches_reference(target, direction, dtype, shape, clamp)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_column_slices_are_read_in_place(target, direction, dtype):
    spec.check_column_slices(target, direction, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
def test_any_input_layout_equals_the_reference(target, direction, layout):
    spec.check_any_layout(target, direction, layout)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("clamp", [0.0, 3.0])
def test_inverse_undoes_forward(target, clamp):
    spec.check_inverse_undoes_forward(target, clamp)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("d", [6, 40])
def test_nan_and_inf_propagate(target, d):
    spec.check_nan_and_inf_propagate(target, d)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_infinite_log_scale_follows_the_formula(target):
    spec.check_infinite_log_scale(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("clamp", spec.CLAMPS)
@pytest.mark.parametrize("shape", upto(spec.GRADCHECK_SHAPES, MEDIUM))
def test_gradcheck_float64(target, direction, clamp, shape):
    spec.check_gradcheck(target, direction, clamp, shape)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [2.0, 0.3])
def test_gradients_match_reference_autograd(target, direction, dtype, clamp):
    spec.check_gradients_match_reference(target, direction, dtype, clamp)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_broadcast_gradients_are_read_in_place(target, direction):
    spec.check_broadcast_gradients(target, direction)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_output_gradient_only(target):
    spec.check_output_gradient_only(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_logdet_only_gradient(target):
    spec.check_logdet_only_gradient(target)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(CPU, spec.opcheck_samples, [name])


# ---- the CPU runner's own checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_autograd_node_is_cpp_and_refuses_a_second_derivative(direction):
    """The CPU op's autograd node is C++ (csrc/autograd.cpp), its gradients those of the eager composite; a second
    derivative (create_graph=True, e.g. a gradient penalty) is refused by name, never silently missing, while the
    eager composite differentiates twice."""
    fn = ops.coupling_inverse if direction == "inverse" else ops.coupling_forward
    x0, h0 = _inputs((9, 5), torch.float64)
    inputs, grads = {}, {}
    for backend in ("eager", "cpu"):
        inputs[backend] = (x0.clone().requires_grad_(True), h0.clone().requires_grad_(True))
        y, logdet = fn(*inputs[backend], 1.5, backend=backend)
        if backend == "cpu":  # under the public op's views: one C++ node for both outputs, not a Python formula's
            node = y.grad_fn.next_functions[0][0]
            assert node is logdet.grad_fn.next_functions[0][0] and "genad::autograd" in node.name()
        grads[backend] = torch.autograd.grad((y * y).sum() + logdet.sum(), inputs[backend],
                                             create_graph=backend == "eager")
    for got, want in zip(grads["cpu"], grads["eager"]):
        close(got, want, spec.GRAD_TOL(CPU, torch.float64))
    (second,) = torch.autograd.grad(grads["eager"][0].sum(), inputs["eager"][0])
    assert second.abs().sum() > 0
    y, logdet = fn(*inputs["cpu"], 1.5, backend="cpu")
    with pytest.raises(RuntimeError, match="not differentiable.*backend='eager'"):
        torch.autograd.grad((y * y).sum() + logdet.sum(), inputs["cpu"][0], create_graph=True)


def test_cpu_kernel_does_not_copy_strided_inputs(monkeypatch):
    # A hidden .contiguous() in the op layer would show up as a call to Tensor.contiguous on the slice.
    big_x, big_h = _inputs((64, 32), torch.float32)  # h: [64, 64]
    x, h = big_x[:, :16], big_h[:, :32]
    calls = []
    original = torch.Tensor.contiguous
    monkeypatch.setattr(torch.Tensor, "contiguous", lambda self, *a, **k: calls.append(self.shape) or original(self))
    ops.coupling_forward(x, h, 1.0, backend="cpu")
    assert calls == []


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
    close(logdet.double(), logdet64, spec.FLOAT32_LOGDET_TOL)


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
    close(y, y_ref, spec.HYPOTHESIS_TOL)
    close(ld, ld_ref, spec.HYPOTHESIS_TOL)


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
