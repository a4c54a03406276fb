"""genad_fast.ops.gated_tanh (WaveNet's gated activation unit σ(a)·tanh(b), and its backward) on CPU tensors: the
spec's checks (tests/op_specs/gated_tanh.py) on the cpu backend, and what only the CPU runner checks: the eager
backend, torch.compile, bad input (the Python layer's errors and the C++ ops'), thread counts, double backward."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import gated as ref
from op_specs import gated_tanh as spec
from op_specs.compare import BF16, EXACT, F32, F64, close
from op_specs.targets import MEDIUM, Target, run_opcheck, upto

CPU = Target("cpu", "cpu")
_inputs = spec.inputs


# ---- the spec's checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", spec.SCALES)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape, dim", upto(spec.SHAPES, MEDIUM))
def test_cpu_kernel_equals_reference(scale, dtype, shape, dim):
    spec.check_matches_reference(CPU, dtype, shape, dim, scale)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape, dim", [((5, 14, 19), 1), ((5, 14, 19), -2), ((9, 34), -1), ((6, 4, 3), 0),
                                        ((30,), 0)])
def test_any_input_layout_equals_the_reference(layout, dtype, shape, dim):
    spec.check_any_input_layout(CPU, layout, dtype, shape, dim)


def test_the_cpu_kernels_take_any_strides_without_the_python_layer():
    spec.check_kernel_takes_any_strides(CPU)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_backward_op_is_the_closed_form(dtype):
    spec.check_backward_op_formula(CPU, dtype)


@pytest.mark.parametrize("shape, dim", [((7, 40, 33), 1), ((2, 1030), -1)])   # spans over the 512-element chunks
def test_bfloat16_is_rounded_once(shape, dim):
    spec.check_bfloat16_is_rounded_once(CPU, shape, dim)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_finite_input_never_gives_nan(dtype):
    spec.check_finite_input_never_gives_nan(CPU, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_saturated_units_keep_precise_gradients(dtype):
    spec.check_saturated_units_keep_their_gradients(CPU, dtype)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_nan_and_inf_propagate(dtype):
    spec.check_nan_and_inf_propagate(CPU, dtype)


def test_empty():
    spec.check_empty(CPU)


@pytest.mark.parametrize("shape, dim", spec.GRADCHECK_SHAPES)
def test_gradcheck_float64(shape, dim):
    spec.check_gradcheck(CPU, shape, dim)


def test_is_the_denoisers_gated_unit():
    spec.check_is_the_denoisers_gated_unit(CPU)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(CPU, spec.opcheck_samples, [name])


# ---- the CPU runner's own checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_eager_backend_is_the_reference(dtype):
    x = _inputs((4, 10, 7), dtype, scale=3.0)
    for dim in (1, -2, 0):
        close(ops.gated_tanh(x, dim, backend="eager"), ref.gated_tanh(x, dim), EXACT)
    xg = x.clone().requires_grad_(True)
    out = ops.gated_tanh(xg, 1, backend="eager")
    assert out.grad_fn is not None and "genad_fast" not in type(out.grad_fn).__name__   # the composite's autograd


def test_eager_backend_output_is_contiguous():
    """The contract (genad_fast/ops/gated.py): the output is contiguous whatever x's layout, on every backend
    (the eager composite keeps x's memory order, so the wrapper makes it contiguous)."""
    x = _inputs((5, 19, 14), F32).transpose(1, 2)
    assert ops.gated_tanh(x, 1, backend="cpu").is_contiguous()
    assert ops.gated_tanh(x, 1, backend="eager").is_contiguous()


def test_compiles_without_graph_breaks():
    x = _inputs((3, 8, 5), F32, scale=2.0)

    def f(t):
        return ops.gated_tanh(t, 1, backend="cpu") * 2

    torch._dynamo.reset()
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = torch.compile(f, fullgraph=True)(xa)
    want = f(xb)
    close(got, want, EXACT)
    got.sum().backward()
    want.sum().backward()
    close(xa.grad, xb.grad, EXACT)


def test_a_numpy_integer_dim_is_an_int():
    x = _inputs((3, 8), F32)
    assert torch.equal(ops.gated_tanh(x, np.int64(1), backend="cpu"), ops.gated_tanh(x, 1, backend="cpu"))


_X = _inputs((4, 6), F32)


@pytest.mark.parametrize("x, dim, match, exc", [
    (torch.randn(3, 5), 1, r"x must have an even size along dim 1 \(its two halves are the gate and the filter\), "
                           r"got shape \[3, 5\]", ValueError),
    (torch.randn(3, 5), -1, r"x must have an even size along dim -1 .*got shape \[3, 5\]", ValueError),
    (torch.randn(7), 0, r"x must have an even size along dim 0 .*got shape \[7\]", ValueError),
    (_X, 2, r"dim must be in \[-2, 2\) for x of shape \[4, 6\], got 2", ValueError),
    (_X, -3, r"dim must be in \[-2, 2\) for x of shape \[4, 6\], got -3", ValueError),
    (_X, 1.0, r"dim must be an int, got 1.0", TypeError),
    (_X, True, r"dim must be an int, got True", TypeError),
    (_X, None, r"dim must be an int, got None", TypeError),
    (_X.long(), 1, r"x must have dtype float32, float64, bfloat16; got int64", TypeError),
    (_X.half(), 1, r"x must have dtype float32, float64, bfloat16; got float16", TypeError),
    (_X.bool(), 1, r"x must have dtype float32, float64, bfloat16; got bool", TypeError),
    (torch.tensor(1.0), 0, r"x must be a tensor with at least one dimension, got a scalar", ValueError),
    ([[1.0, 2.0]], 1, r"x must be a tensor with at least one dimension, got list", ValueError),
])
def test_bad_input_names_the_problem(x, dim, match, exc):
    with pytest.raises(exc, match=match):
        ops.gated_tanh(x, dim, backend="cpu")
    with pytest.raises(exc, match=match):   # the same checks whatever the backend: the Python layer makes them
        ops.gated_tanh(x, dim, backend="eager")


def test_the_cpu_kernels_reject_what_the_wrapper_would():
    # every contract text, exactly: tests/test_op_contract_errors.py
    g = torch.ops.genad_fast
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh: x must have an even size along dim 1 "
                                           r"\(its two halves are the gate and the filter\), got shape \[3, 5\]"):
        g.gated_tanh(torch.randn(3, 5), 1)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh: dim must be in \[-2, 2\) for x of shape "
                                           r"\[4, 6\], got -3"):
        g.gated_tanh(_X, -3)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh: x must be float32, float64 or bfloat16, "
                                           r"got int32"):
        g.gated_tanh(_X.int(), 1)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh: x must have at least one dimension, "
                                           r"got a scalar"):
        g.gated_tanh(torch.tensor(2.0), 0)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh_backward: grad must have shape \[4, 3\], "
                                           r"got \[4, 6\]"):
        g.gated_tanh_backward(_X, _X, 1)                        # x's shape, not the output's
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh_backward: grad must have shape \[2, 6\], "
                                           r"got \[4, 3\]"):
        g.gated_tanh_backward(torch.randn(4, 3), _X, 0)          # the output's shape for another dim
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh_backward: grad must have x's dtype float32, "
                                           r"got float64"):
        g.gated_tanh_backward(torch.randn(4, 3, dtype=F64), _X, 1)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh_backward: grad must have x's dtype bfloat16, "
                                           r"got float32"):
        g.gated_tanh_backward(torch.randn(4, 3), _X.to(BF16), 1)
    with pytest.raises(RuntimeError, match=r"genad_fast::gated_tanh_backward: x must have an even size along "
                                           r"dim 1"):
        g.gated_tanh_backward(torch.randn(3, 2), torch.randn(3, 5), 1)


def test_no_triton_backend():
    with pytest.raises(BackendUnavailableError, match=r"gated_tanh has no 'triton' implementation "
                                                      r"\(it has: eager, cpu, cuda\)"):
        ops.gated_tanh(_X, 1, backend="triton")


@pytest.mark.parametrize("shape, dim", [((1, 140000), 1),     # one row split in the middle by the threads
                                        ((30000, 6), -1),     # 90 000 rows of 3: the split falls between rows
                                        ((9, 62, 130), 1)])   # rows of 31 · 130 = 4030: splits inside a row
def test_thread_counts_agree(shape, dim):
    # elements are split over the threads once a call holds more than 2^15 outputs: 1 and 2 threads give the same
    # numbers, equal to the reference, forward and backward
    x = _inputs(shape, F32, seed=5, scale=4.0)
    x.view(-1)[12345] = float("nan")
    g = spec.grads_like(spec.out_shape(shape, dim), F32)
    assert g.numel() > 2 ** 15
    saved = torch.get_num_threads()
    outs, grads = [], []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(ops.gated_tanh(x, dim, backend="cpu"))
            grads.append(torch.ops.genad_fast.gated_tanh_backward(g, x, dim))
    finally:
        torch.set_num_threads(saved)
    close(outs[0], outs[1], spec.THREADS_TOL, equal_nan=True)
    close(grads[0], grads[1], spec.THREADS_TOL, equal_nan=True)
    close(outs[1], ref.gated_tanh(x, dim), spec.FWD_TOL(CPU, F32), equal_nan=True)
    close(grads[1], spec.oracle_grad(x, dim, g), spec.BWD_TOL(CPU, F32), equal_nan=True)
    assert int(outs[1].isnan().sum()) == 1


def test_no_grad_and_inference_mode():
    x = _inputs((3, 8, 4), F32).requires_grad_(True)
    with torch.no_grad():
        out = ops.gated_tanh(x, 1, backend="cpu")
    assert not out.requires_grad
    with torch.inference_mode():
        out2 = ops.gated_tanh(x, 1, backend="cpu")
    close(out, out2, EXACT)
    close(out, ref.gated_tanh(x.detach(), 1), spec.FWD_TOL(CPU, F32))


@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")
def test_double_backward_is_refused_on_the_kernel_and_works_eagerly():
    """torch.autograd.grad(..., create_graph=True) then a second grad (e.g. a gradient penalty): the eager composite
    differentiates twice; the compiled backward has no derivative of its own, so it refuses with a message that
    names the way out, never a silently missing second derivative."""
    x = _inputs((3, 4, 5), F64, scale=1.5)
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(ops.gated_tanh(xg, 1, backend="eager").sum(), xg, create_graph=True)
    (ggx,) = torch.autograd.grad((gx * gx).sum(), xg)
    assert ggx is not None and bool(ggx.abs().max() > 0)
    xc = x.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="not differentiable.*backend='eager'"):
        torch.autograd.grad(ops.gated_tanh(xc, 1, backend="cpu").sum(), xc, create_graph=True)
    (g1,) = torch.autograd.grad(ops.gated_tanh(xc, 1, backend="cpu").sum(), xc)  # a first derivative still works
    close(g1, gx.detach(), spec.BWD_TOL(CPU, F64))
