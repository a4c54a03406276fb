"""genad_fast.ops.conv1d_act (one stage of a small 1-D convolutional encoder or decoder: nearest upsampling, conv,
LeakyReLU, max pooling) on CPU tensors: the spec's checks (tests/op_specs/conv1d_act.py) on the cpu backend, and
what only the CPU runner checks: the eager backend, torch.compile, bad input, thread counts."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import conv as ref
from op_specs import conv1d_act as spec
from op_specs.compare import EXACT, close
from op_specs.targets import MEDIUM, Target, run_opcheck, upto

F32, F64 = torch.float32, torch.float64
CPU = Target("cpu", "cpu")
_inputs = spec.inputs


# ---- the spec's checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", spec.OPTIONS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("k", spec.KERNEL_SIZES)
@pytest.mark.parametrize("n, c_in, c_out, l_in", upto(spec.SHAPES, MEDIUM))
def test_cpu_kernel_equals_reference(option, dtype, k, n, c_in, c_out, l_in):
    spec.check_matches_reference(CPU, option, dtype, k, n, c_in, c_out, l_in)


@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("l_in, length", [(5, 11), (7, 16), (16, 5), (33, 100), (1, 7), (64, 1), (3, 1000),
                                           (1000, 2999)])
def test_upsampling_picks_atens_timestamps(dtype, l_in, length):
    spec.check_upsampling_picks_atens_timestamps(CPU, dtype, l_in, length)


def test_is_an_encoder_and_decoder_stage():
    spec.check_is_an_encoder_and_decoder_stage(CPU)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("n, c_in, c_out, l_in, k", [(17, 8, 13, 33, 5), (1, 1, 1, 1, 3), (3, 64, 70, 64, 4),
                                                     (5, 3, 9, 2, 1)])
def test_any_input_layout_equals_the_reference(layout, dtype, n, c_in, c_out, l_in, k):
    spec.check_any_input_layout(CPU, layout, dtype, n, c_in, c_out, l_in, k)


def test_any_weight_and_bias_layout_equals_the_reference():
    spec.check_any_weight_and_bias_layout(CPU)


def test_the_cpu_kernel_takes_any_strides_without_the_python_layer():
    spec.check_kernel_takes_any_strides(CPU)


def test_nan_and_inf_propagate():
    spec.check_nan_and_inf_propagate(CPU)


def test_empty_batch():
    spec.check_empty_batch(CPU)


def test_opcheck():
    run_opcheck(CPU, spec.opcheck_samples)


# ---- the CPU runner's own checks -----------------------------------------------------------------------------

def test_eager_backend_is_the_reference():
    x, w, bias = _inputs(6, 5, 7, 19, 4, F32)
    for kwargs in (dict(), dict(length=40, slope=0.1, pool=True), dict(length=13, slope=0.0)):
        got = ops.conv1d_act(x, w, bias, backend="eager", **kwargs)
        want = ref.conv1d_act(x, w, bias, kwargs.get("length"), kwargs.get("slope"), kwargs.get("pool", False))
        close(got, want, EXACT)


def test_compiles_without_graph_breaks():
    x, w, bias = _inputs(4, 3, 5, 16, 3, F32)

    def f(x):
        return ops.conv1d_act(x, w, bias, length=32, slope=0.1, pool=True, backend="cpu") * 2

    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(got, f(x))


_X, _W, _B = _inputs(2, 3, 4, 8, 3, F32)


@pytest.mark.parametrize("bad, match, exc", [
    (dict(x=torch.randn(3, 8)), r"x must be a 3-D tensor", ValueError),
    (dict(x=[[[1.0]]]), r"x must be a 3-D tensor, got list", ValueError),
    (dict(w=torch.randn(4, 3)), r"weight must be a 3-D tensor", ValueError),
    (dict(x=torch.zeros(2, 3, 8, dtype=torch.int64)), r"x must have dtype float32, float64; got int64", TypeError),
    (dict(x=torch.zeros(2, 3, 8, dtype=torch.float16)), r"x must have dtype float32, float64; got float16",
     TypeError),
    (dict(w=torch.randn(4, 3, 3, dtype=F64)), r"weight must have x's dtype float32, got float64", TypeError),
    (dict(w=torch.zeros(4, 3, 3, dtype=torch.int32)), r"weight must have x's dtype float32, got int32", TypeError),
    (dict(b=torch.randn(4, dtype=F64)), r"bias must have x's dtype float32, got float64", TypeError),
    (dict(w=torch.randn(4, 5, 3)), r"weight must have shape \[4, 3, 3\] \(weight \[C_out, C_in = 3, k >= 1\]\), "
                                   r"got \[4, 5, 3\]", ValueError),
    (dict(w=torch.randn(4, 3, 0)), r"weight must have at least one output channel and one tap, got shape \[4, 3, 0\]",
     ValueError),
    (dict(w=torch.randn(0, 3, 3), b=None),
     r"weight must have at least one output channel and one tap, got shape \[0, 3, 3\]", ValueError),
    (dict(b=torch.randn(3)), r"bias must have shape \[4\]", ValueError),
    (dict(b=torch.randn(4, 1)), r"bias must have shape \[4\]", ValueError),
    (dict(x=torch.randn(2, 0, 8), w=torch.randn(4, 0, 3)), r"x must have at least one channel and one timestamp",
     ValueError),
    (dict(x=torch.randn(2, 3, 0)), r"x must have at least one channel and one timestamp, got shape \(2, 3, 0\)",
     ValueError),
    (dict(length=0), r"length must be an int >= 1 \(the input's length after upsampling\), got 0", ValueError),
    (dict(length=-4), r"length must be an int >= 1 .*got -4", ValueError),
    (dict(length=True), r"length must be an int >= 1 .*got True", ValueError),
    (dict(length=16.0), r"length must be an int >= 1 .*got 16.0", ValueError),
    (dict(w=_W.to("meta")), r"weight is on meta, x on cpu: pass tensors on one device", ValueError),
    (dict(b=_B.to("meta")), r"bias is on meta, x on cpu: pass tensors on one device", ValueError),
])
def test_bad_input_names_the_problem(bad, match, exc):
    args = dict(x=_X, w=_W, b=_B, length=None)
    args.update(bad)
    with pytest.raises(exc, match=match):
        ops.conv1d_act(args["x"], args["w"], args["b"], length=args["length"], slope=0.1, pool=True, backend="cpu")


def test_a_numpy_integer_length_is_an_int():
    import numpy as np
    want = ops.conv1d_act(_X, _W, _B, length=16, slope=0.1, backend="cpu")
    assert torch.equal(ops.conv1d_act(_X, _W, _B, length=np.int64(16), slope=0.1, backend="cpu"), want)


def test_the_cpu_kernel_rejects_what_the_wrapper_would():
    # every contract text, exactly: tests/test_op_contract_errors.py
    with pytest.raises(RuntimeError, match=r"genad_fast::conv1d_act: weight must have shape \[4, 3, 3\]"):
        torch.ops.genad_fast.conv1d_act(_X, torch.randn(4, 5, 3), None, 8, None, False)
    with pytest.raises(RuntimeError, match=r"genad_fast::conv1d_act: bias must have shape \[4\]"):
        torch.ops.genad_fast.conv1d_act(_X, _W, torch.randn(2), 8, None, False)
    with pytest.raises(RuntimeError, match=r"genad_fast::conv1d_act: length must be >= 1"):
        torch.ops.genad_fast.conv1d_act(_X, _W, None, 0, None, False)
    with pytest.raises(RuntimeError, match=r"genad_fast::conv1d_act: x must be float32 or float64, got int64"):
        torch.ops.genad_fast.conv1d_act(_X.long(), _W, None, 8, None, False)


@pytest.mark.parametrize("which", ["x", "weight", "bias"])
def test_no_autograd_says_so(which):
    args = dict(x=_X.clone(), weight=_W.clone(), bias=_B.clone())
    args[which].requires_grad_(True)
    with pytest.raises(RuntimeError, match="conv1d_act has no autograd formula"):
        ops.conv1d_act(**args, slope=0.1, backend="cpu")
    with torch.no_grad():
        assert ops.conv1d_act(**args, slope=0.1, backend="cpu").shape == (2, 4, 8)
    with torch.inference_mode():
        assert ops.conv1d_act(**args, length=16, pool=True, backend="cpu").shape == (2, 4, 8)


def test_no_triton_backend():
    with pytest.raises(BackendUnavailableError, match="conv1d_act has no 'triton' implementation"):
        ops.conv1d_act(_X, _W, _B, backend="triton")


@pytest.mark.parametrize("n, c_in, c_out, l_in, k", [(300, 16, 33, 64, 5),   # 4 × 2-vector register blocks
                                                     (2000, 8, 13, 5, 3)])   # 8 × 1-vector blocks (L_c <= a vector)
def test_thread_counts_agree(n, c_in, c_out, l_in, k):
    # samples are split over the threads once a call holds enough work: 1 and 2 threads give the same numbers
    x, w, bias = _inputs(n, c_in, c_out, l_in, k, F32)
    x[7, 2, 3] = float("nan")
    saved = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(ops.conv1d_act(x.transpose(1, 2).contiguous().transpose(1, 2), w, bias, length=2 * l_in + 1,
                                       slope=0.1, pool=True, backend="cpu"))
    finally:
        torch.set_num_threads(saved)
    close(outs[0], outs[1], spec.THREADS_TOL, equal_nan=True)
    close(outs[0], ref.conv1d_act(x, w, bias, 2 * l_in + 1, 0.1, True), spec.tolerance(CPU, F32, c_in, k),
          equal_nan=True)
