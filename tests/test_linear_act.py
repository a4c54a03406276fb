"""genad_fast.ops.linear_act (one MLP layer, forward or backward, epilogue and prologue fused) on CPU tensors: the
spec's checks (tests/op_specs/linear_act.py) on the cpu backend, with MKL's bfloat16 product and without it, and
what only the CPU runner checks: the eager backend, torch.compile, bad input, thread counts."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.ops import linear as linear_mod
from genad_fast.reference import linear as ref
from op_specs import linear_act as spec
from op_specs.compare import EXACT, close
from op_specs.targets import MEDIUM, Target, run_opcheck, upto

F32, BF16 = torch.float32, torch.bfloat16
CPU = Target("cpu", "cpu")
_inputs = spec.inputs


@pytest.fixture(params=[True, False], ids=["mkl-bf16", "mm-bf16"])
def mkl(request):
    if request.param and not linear_mod.has_mkl_bf16():
        pytest.skip("this torch does not export MKL's cblas_gemm_bf16bf16f32")
    linear_mod.set_mkl_bf16(request.param)
    yield request.param
    linear_mod.set_mkl_bf16(True)


# ---- the spec's checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", spec.OPTIONS)
@pytest.mark.parametrize("x_dtype, w_dtype, out_dtype", spec.DTYPES)
@pytest.mark.parametrize("m, k, n", upto(spec.SHAPES, MEDIUM))
def test_cpu_kernel_equals_reference(mkl, option, x_dtype, w_dtype, out_dtype, m, k, n):
    spec.check_matches_reference(CPU, option, x_dtype, w_dtype, out_dtype, m, k, n)


def test_reference_is_an_mlp_layer_and_its_backward():
    spec.check_is_an_mlp_layer_and_its_backward(CPU)


def test_strided_rows_are_read_in_place():
    spec.check_strided_rows(CPU)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("x_dtype, w_dtype", [(BF16, BF16), (F32, F32), (F32, BF16)])
@pytest.mark.parametrize("m, k, n", [(300, 48, 24), (1, 8, 5), (70, 3, 4)])
def test_any_input_layout_equals_the_reference(mkl, layout, x_dtype, w_dtype, m, k, n):
    spec.check_any_input_layout(CPU, layout, x_dtype, w_dtype, m, k, n)


def test_any_weight_and_bias_layout_equals_the_reference():
    spec.check_any_weight_and_bias_layout(CPU)


def test_the_cpu_kernel_copes_with_overlapping_rows_without_the_python_layer():
    spec.check_kernel_copes_with_overlapping_rows(CPU)


def test_nan_and_inf_propagate():
    spec.check_nan_and_inf_propagate(CPU)


def test_empty_inputs():
    spec.check_empty_inputs(CPU)


def test_opcheck():
    run_opcheck(CPU, spec.opcheck_samples)


# ---- the CPU runner's own checks -----------------------------------------------------------------------------

def test_eager_backend_is_the_reference():
    x, w, bias, gate, addend = _inputs(50, 16, 8, BF16, BF16)
    got = ops.linear_act(x, w, bias, gate=gate, gate_slope=0.1, addend=addend, slope=0.2, backend="eager")
    close(got, ref.linear_act(x, w, bias, gate, 0.1, addend, 0.2), EXACT)


def test_compiles_without_graph_breaks():
    x, w, bias, _, _ = _inputs(64, 8, 4, F32, BF16)

    def f(x):
        return ops.linear_act(x, w, bias, slope=0.2, out_dtype=F32, backend="cpu") * 2

    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(got, f(x))


@pytest.mark.parametrize("bad, match, exc", [
    (dict(x=torch.randn(3)), r"x must be a 2-D tensor", ValueError),
    (dict(w=torch.randn(4)), r"weight must be a 2-D tensor", ValueError),
    (dict(w=torch.randn(4, 6)), r"weight must have shape \[4, 5\]", ValueError),
    (dict(x=torch.randn(3, 5, dtype=torch.float64)), r"x must have dtype float32, bfloat16; got float64", TypeError),
    (dict(w=torch.randn(4, 5).half()), r"weight must have dtype float32, bfloat16; got float16", TypeError),
    (dict(bias=torch.randn(3)), r"bias must have shape \[4\]", ValueError),
    (dict(gate=torch.randn(3, 4)), r"gate must have shape \[3, 5\]", ValueError),
    (dict(out_dtype=torch.float16), r"out_dtype must be float32 or bfloat16", TypeError),
])
def test_bad_input_names_the_problem(bad, match, exc):
    args = dict(x=torch.randn(3, 5), w=torch.randn(4, 5), bias=None, gate=None, addend=None, out_dtype=None)
    args.update(bad)
    with pytest.raises(exc, match=match):
        ops.linear_act(args["x"], args["w"], args["bias"], gate=args["gate"], addend=args["addend"],
                       out_dtype=args["out_dtype"], backend="cpu")


def test_the_cpu_kernel_rejects_what_the_wrapper_would():
    with pytest.raises(RuntimeError, match="weight must have shape"):
        torch.ops.genad_fast.linear_act(torch.randn(3, 5), torch.randn(4, 6), None, None, 0.0, None, None, None)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        torch.ops.genad_fast.linear_act(torch.randn(3, 5), torch.randn(4, 5), torch.randn(2), None, 0.0, None, None,
                                        None)


def test_no_autograd_says_so():
    w = torch.randn(4, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        ops.linear_act(torch.randn(3, 5), w, backend="cpu")
    with torch.no_grad():
        assert ops.linear_act(torch.randn(3, 5), w, backend="cpu").shape == (3, 4)


def test_no_triton_backend():
    with pytest.raises(BackendUnavailableError, match="no 'triton' implementation"):
        ops.linear_act(torch.randn(3, 5), torch.randn(4, 5), backend="triton")


def test_thread_counts_agree():
    # rows are split into one block per thread: 1 and 2 threads must give the same numbers
    x, w, bias, gate, addend = _inputs(777, 40, 24, BF16, BF16)
    saved = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(ops.linear_act(x, w, bias, gate=gate, gate_slope=0.2, addend=addend, slope=0.1,
                                       out_dtype=F32, backend="cpu"))
    finally:
        torch.set_num_threads(saved)
    close(outs[0], outs[1], spec.THREADS_TOL)

