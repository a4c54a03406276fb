"""gated_tanh (WaveNet's gated activation unit σ(a)·tanh(b)) on the device against the eager reference on the same
device: the spec's checks (tests/op_specs/gated_tanh.py) at the GPU runner's sizes — float32, float64 and bfloat16,
1-D to 4-D inputs split along any dim, any layout, the backward (through autograd, the backward op's closed form,
gradcheck in float64, saturated units), NaN/inf, empty inputs, CUDA graphs, opcheck. The op has no Triton kernel,
which the triton pair checks is said, not hidden."""
from __future__ import annotations

import pytest

import gpu_support as gs
from op_specs import gated_tanh as spec
from op_specs.compare import F32, F64
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("scale", spec.SCALES)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape, dim", upto(spec.SHAPES, LARGE))
def test_matches_eager(pair, scale, dtype, shape, dim):
    spec.check_matches_reference(pair, dtype, shape, dim, scale)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("shape, dim", [((64, 128, 333), 1), ((4097, 66), -1), ((6, 4, 3), 0)])
def test_any_input_layout_equals_eager(pair, layout, dtype, shape, dim):
    gs.skip_unless_implemented(pair, spec)
    spec.check_any_input_layout(pair, layout, dtype, shape, dim)


def test_kernel_takes_any_strides(pair):
    gs.skip_unless_implemented(pair, spec)
    if pair.ops is None:
        pytest.skip("the eager backend is plain PyTorch: it has no registered op")
    spec.check_kernel_takes_any_strides(pair)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_backward_op_is_the_closed_form(pair, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_backward_op_formula(pair, dtype)


@pytest.mark.parametrize("shape, dim", [((7, 40, 33), 1), ((2, 1030), -1), ((256, 128, 500), 1)])
def test_bfloat16_is_rounded_once(pair, shape, dim):
    gs.skip_unless_implemented(pair, spec)
    spec.check_bfloat16_is_rounded_once(pair, shape, dim)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_finite_input_never_gives_nan(pair, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_finite_input_never_gives_nan(pair, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_saturated_units_keep_precise_gradients(pair, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_saturated_units_keep_their_gradients(pair, dtype)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_nan_and_inf_propagate(pair, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_nan_and_inf_propagate(pair, dtype)


def test_empty(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_empty(pair)


@pytest.mark.parametrize("shape, dim", spec.GRADCHECK_SHAPES)
def test_gradcheck_float64(pair, shape, dim):
    gs.skip_unless_implemented(pair, spec)
    spec.check_gradcheck(pair, shape, dim)


def test_is_the_denoisers_gated_unit(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_is_the_denoisers_gated_unit(pair)


def test_captured_in_a_cuda_graph(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_captured_in_a_cuda_graph(pair, lambda fn: gs.captured(fn, pair.dev))


def test_grad_on_another_device_is_refused(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_grad_on_another_device_is_refused(pair)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(pair, name):
    gs.skip_unless_implemented(pair, spec)
    run_opcheck(pair, spec.opcheck_samples, [name])
