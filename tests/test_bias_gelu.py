"""genad_fast.ops.bias_gelu (the exact GELU of a product plus its bias, GELU(z + bias), and its backward) on CPU
tensors: the spec's checks (tests/op_specs/bias_gelu.py) on the cpu backend, and what only the CPU runner checks: the
eager backend, torch.compile, bad input (the Python layer's errors and the C++ ops'), thread counts, double
backward."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import bias_gelu as ref
from op_specs import bias_gelu as spec
from op_specs.compare import EXACT, F32, F64, close
from op_specs.targets import MEDIUM, Target, run_opcheck, upto

CPU = Target("cpu", "cpu")
_inputs = spec.inputs


# ---- the spec's checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", spec.SCALES)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, MEDIUM))
def test_cpu_kernel_equals_reference(scale, dtype, shape):
    spec.check_matches_reference(CPU, dtype, shape, scale)


@pytest.mark.parametrize("bias_layout", spec.BIAS_LAYOUTS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape", [(37, 21), (5, 1), (130, 70)])
def test_any_input_layout_equals_the_reference(layout, bias_layout, dtype, shape):
    spec.check_any_input_layout(CPU, layout, bias_layout, dtype, shape)


def test_the_cpu_kernels_take_any_strides_without_the_python_layer():
    spec.check_kernel_takes_any_strides(CPU)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_backward_op_is_the_closed_form(dtype):
    spec.check_backward_op_formula(CPU, dtype)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_finite_input_never_gives_nan(dtype):
    spec.check_finite_input_never_gives_nan(CPU, dtype)


def test_tails_keep_their_precision():
    spec.check_tails_keep_their_precision(CPU)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_saturated_units_are_their_limits(dtype):
    spec.check_saturated_units_are_their_limits(CPU, dtype)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_nan_and_inf_propagate(dtype):
    spec.check_nan_and_inf_propagate(CPU, dtype)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_plus_inf_gives_plus_inf(dtype):
    spec.check_plus_inf_gives_plus_inf(CPU, dtype)


def test_empty():
    spec.check_empty(CPU)


@pytest.mark.parametrize("shape", spec.GRADCHECK_SHAPES)
def test_gradcheck_float64(shape):
    spec.check_gradcheck(CPU, shape)


def test_is_a_linear_then_gelu():
    spec.check_is_a_linear_then_gelu(CPU)


@pytest.mark.parametrize("bias_layout", spec.BIAS_LAYOUTS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_kept_pair_gives_the_same_bits(dtype, layout, bias_layout):
    spec.check_kept_pair_gives_the_same_bits(CPU, dtype, layout, bias_layout)


@pytest.mark.parametrize("scale", spec.SCALES)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, MEDIUM))
def test_kept_pair_matches_reference(scale, dtype, shape):
    spec.check_kept_pair_matches_reference(CPU, dtype, shape, scale)


def test_kept_pair_refuses_what_does_not_match():
    spec.check_kept_pair_refuses_what_does_not_match(CPU)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(CPU, spec.opcheck_samples, [name])


# ---- the CPU runner's own checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_eager_backend_is_the_reference(dtype):
    z, bias = _inputs((9, 21), dtype, scale=3.0)
    close(ops.bias_gelu(z, bias, backend="eager"), ref.bias_gelu(z, bias), EXACT)
    close(ops.bias_gelu(z, bias, backend="eager"), torch.nn.functional.gelu(z + bias), EXACT)
    zg = z.clone().requires_grad_(True)
    assert ops.bias_gelu(zg, bias, backend="eager").grad_fn.name() == "GeluBackward0"   # the composite's autograd
    assert "BiasGelu" in ops.bias_gelu(zg, bias, backend="cpu").grad_fn.name()   # the C++ autograd kernel's node


def test_eager_backend_output_is_contiguous():
    """The contract (genad_fast/ops/gelu.py): the output is contiguous whatever z's layout, on every backend (the
    eager z + bias keeps a transposed z's memory order, so the wrapper makes it contiguous)."""
    z, bias = _inputs((19, 14), F32)
    zt = z.t().contiguous().t()
    assert not (zt + bias).is_contiguous()   # what the wrapper has to fix
    assert ops.bias_gelu(zt, bias, backend="cpu").is_contiguous()
    assert ops.bias_gelu(zt, bias, backend="eager").is_contiguous()


def test_compiles_without_graph_breaks():
    """A Linear then bias_gelu, compiled with fullgraph=True (any graph break raises): the compiled forward and the
    gradients of x, W and bias are the uncompiled ones bit for bit."""
    z, bias = _inputs((6, 9), F32, scale=2.0)
    w = _inputs((9, 5), F32, seed=3)[0]

    def f(x, w, b):
        return ops.bias_gelu(x @ w.t(), b, backend="cpu") * 2

    torch._dynamo.reset()
    x = _inputs((6, 5), F32, seed=4)[0]
    leaves = [[t.clone().requires_grad_(True) for t in (x, w, bias)] for _ in range(2)]
    got = torch.compile(f, fullgraph=True)(*leaves[0])
    want = f(*leaves[1])
    close(got, want, EXACT)
    got.sum().backward()
    want.sum().backward()
    for a, b in zip(*leaves):
        close(a.grad, b.grad, EXACT)


_Z, _B = _inputs((4, 3), F32)


@pytest.mark.parametrize("z, bias, match, exc", [
    (torch.zeros(3), _B, r"z must be a 2-D tensor, got \[3\]", ValueError),
    (torch.zeros(2, 4, 3), _B, r"z must be a 2-D tensor, got \[2, 4, 3\]", ValueError),
    ([[1.0, 2.0, 3.0]], _B, r"z must be a 2-D tensor, got list", ValueError),
    (_Z, torch.zeros(1, 3), r"bias must be a 1-D tensor, got \[1, 3\]", ValueError),
    (_Z, torch.tensor(1.0), r"bias must be a 1-D tensor, got \[\]", ValueError),
    (_Z, [0.0, 0.0, 0.0], r"bias must be a 1-D tensor, got list", ValueError),
    (_Z, torch.zeros(4), r"bias must have shape \[3\] \(one entry per column of z\), got \[4\]", ValueError),
    (_Z.t(), _B, r"bias must have shape \[4\] \(one entry per column of z\), got \[3\]", ValueError),
    (_Z, _B.double(), r"bias must have z's dtype float32, got float64", TypeError),
    (_Z.double(), _B, r"bias must have z's dtype float64, got float32", TypeError),
    (_Z, _B.long(), r"bias must have z's dtype float32, got int64", TypeError),
    (_Z.long(), _B.long(), r"z must have dtype float32, float64; got int64", TypeError),
    (_Z.int(), _B, r"z must have dtype float32, float64; got int32", TypeError),
    (_Z.half(), _B.half(), r"z must have dtype float32, float64; got float16", TypeError),
    (_Z.bfloat16(), _B.bfloat16(), r"z must have dtype float32, float64; got bfloat16", TypeError),
    (_Z.bool(), _B.bool(), r"z must have dtype float32, float64; got bool", TypeError),
    (_Z, torch.zeros(3, device="meta"), r"bias is on meta, z on cpu: pass tensors on one device", ValueError),
])
def test_bad_input_names_the_problem(z, bias, match, exc):
    with pytest.raises(exc, match=match):
        ops.bias_gelu(z, bias, backend="cpu")
    with pytest.raises(exc, match=match):   # the same checks whatever the backend: the Python layer makes them
        ops.bias_gelu(z, bias, backend="eager")
    with pytest.raises(exc, match=match):   # before it looks for a kernel
        ops.bias_gelu(z, bias, backend="triton")


def test_the_cpu_backend_refuses_tensors_on_another_device():
    with pytest.raises(BackendUnavailableError, match="backend 'cpu' runs on CPU tensors, got meta tensors"):
        ops.bias_gelu(torch.zeros(4, 3, device="meta"), torch.zeros(3, device="meta"), backend="cpu")


def test_the_cpu_kernels_reject_what_the_wrapper_would():
    # every contract text, exactly: tests/test_op_contract_errors.py
    g = torch.ops.genad_fast
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: z must be 2-D, got shape \[3\]"):
        g.bias_gelu(torch.zeros(3), _B)
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: z must be float32 or float64, got int32"):
        g.bias_gelu(_Z.int(), _B.int())
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: z must be float32 or float64, got float16"):
        g.bias_gelu(_Z.half(), _B.half())
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: bias must have z's dtype float32, got float64"):
        g.bias_gelu(_Z, _B.double())
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: bias must have shape \[3\], got \[4\]"):
        g.bias_gelu(_Z, torch.zeros(4))
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu: bias must have shape \[3\], got \[1, 3\]"):
        g.bias_gelu(_Z, torch.zeros(1, 3))
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu_backward: grad must have shape \[4, 3\], "
                                           r"got \[3, 4\]"):
        g.bias_gelu_backward(torch.zeros(3, 4), _Z, _B)
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu_backward: grad must have z's dtype float32, "
                                           r"got float64"):
        g.bias_gelu_backward(_Z.double(), _Z, _B)
    with pytest.raises(RuntimeError, match=r"genad_fast::bias_gelu_backward: bias must have shape \[3\], got \[2\]"):
        g.bias_gelu_backward(_Z, _Z, torch.zeros(2))


def test_no_triton_backend():
    with pytest.raises(BackendUnavailableError, match=r"bias_gelu has no 'triton' implementation "
                                                      r"\(it has: eager, cpu, cuda\)"):
        ops.bias_gelu(_Z, _B, backend="triton")


@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape", [(3000, 37),    # 47 blocks of 64 rows; 2·16 + 5 lanes
                                   (70001, 3),    # over 1024 blocks: 69 rows a block, the last one short
                                   (9, 20000)])   # few long rows: the forward splits between rows only
def test_thread_counts_agree(dtype, shape):
    # rows are split over the threads once a call holds more than 2^14 elements: 1 and 2 threads give the same
    # bits, the bias gradient included (its blocks depend on M only), equal to the reference
    z, bias = _inputs(shape, dtype, seed=5, scale=3.0)
    z[shape[0] // 2, 1] = float("nan")
    g = spec.grads_like(shape, dtype)
    saved = torch.get_num_threads()
    outs, grads = [], []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(ops.bias_gelu(z, bias, backend="cpu"))
            grads.append(torch.ops.genad_fast.bias_gelu_backward(g, z, bias))
    finally:
        torch.set_num_threads(saved)
    close(outs[0], outs[1], spec.THREADS_TOL, equal_nan=True)
    for a, b in zip(*grads):
        close(a, b, spec.THREADS_TOL, equal_nan=True)
    close(outs[1], ref.bias_gelu(z, bias), spec.FWD_TOL(CPU, dtype), equal_nan=True)
    want_z, want_b = spec.oracle_grads(z, bias, g)
    close(grads[1][0], want_z, spec.GRAD_TOL(CPU, dtype), equal_nan=True)
    spec.check_bias_grad(CPU, grads[1][1], want_b, z, bias, g)
    assert int(outs[1].isnan().sum()) == 1 and int(grads[1][1].isnan().sum()) == 1


def test_gradient_only_for_what_requires_it():
    """z alone, bias alone, or neither requiring grad: the gradients asked for are the reference's, the others
    stay None; with neither, the output has no graph."""
    z, bias = _inputs((33, 18), F64, scale=2.0)
    g = spec.grads_like((33, 18), F64)
    want_z, want_b = spec.oracle_grads(z, bias, g)
    zg = z.clone().requires_grad_(True)
    ops.bias_gelu(zg, bias, backend="cpu").backward(g)
    close(zg.grad, want_z, spec.GRAD_TOL(CPU, F64))
    bg = bias.clone().requires_grad_(True)
    ops.bias_gelu(z, bg, backend="cpu").backward(g)
    spec.check_bias_grad(CPU, bg.grad, want_b, z, bias, g)
    assert not ops.bias_gelu(z, bias, backend="cpu").requires_grad


def test_no_grad_and_inference_mode():
    z, bias = _inputs((3, 8), F32)
    zg = z.requires_grad_(True)
    with torch.no_grad():
        out = ops.bias_gelu(zg, bias, backend="cpu")
    assert not out.requires_grad
    with torch.inference_mode():
        out2 = ops.bias_gelu(zg, bias, backend="cpu")
    close(out, out2, EXACT)
    close(out, ref.bias_gelu(z.detach(), bias), spec.FWD_TOL(CPU, F32))


@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")
def test_double_backward_is_refused_on_the_kernel_and_works_eagerly():
    """torch.autograd.grad(..., create_graph=True) then a second grad (e.g. a gradient penalty): the eager composite
    differentiates twice; the compiled backward has no derivative of its own, so it refuses with a message that
    names the way out, never a silently missing second derivative."""
    z, bias = _inputs((3, 5), F64, scale=1.5)
    ze, be = z.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    gz, gb = torch.autograd.grad(ops.bias_gelu(ze, be, backend="eager").sum(), (ze, be), create_graph=True)
    (ggz,) = torch.autograd.grad((gz * gz).sum() + gb.sum(), ze)
    # d/dz of Σ GELU'(u)² + Σ GELU'(u) = (2·GELU'(u) + 1)·GELU''(u), GELU''(u) = φ(u)·(2 - u²)
    u = z + bias
    phi = torch.exp(-0.5 * u * u) / (2 * torch.pi) ** 0.5
    close(ggz, (2 * spec.gelu_prime_f64(u) + 1) * phi * (2 - u * u), spec.GRAD_TOL(CPU, F64))
    zc, bc = z.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="bias_gelu's compiled backward is not differentiable.*backend='eager'"):
        torch.autograd.grad(ops.bias_gelu(zc, bc, backend="cpu").sum(), (zc, bc), create_graph=True)
    g1z, g1b = torch.autograd.grad(ops.bias_gelu(zc, bc, backend="cpu").sum(), (zc, bc))   # a first one still works
    close(g1z, gz.detach(), spec.GRAD_TOL(CPU, F64))
    close(g1b, gb.detach(), spec.GRAD_TOL(CPU, F64))
