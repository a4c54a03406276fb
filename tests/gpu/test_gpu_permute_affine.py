"""permute_affine (ActNorm, a fixed permutation and a coupling's split, read from two halves) on the device against
the eager reference on the same device: the spec's checks (tests/op_specs/permute_affine.py) at the GPU runner's
sizes — float32 and float64, one row to millions of elements, empty halves and outputs, any row stride of the halves
and any stride of bias, log_scale and perm, all four gradients (through autograd, an unused output, broadcast and
transposed output gradients, the backward op's closed form, gradcheck in float64), NaN/±inf, empty inputs, the flow's
modules, CUDA graphs, the device contract, opcheck. The op has no Triton kernel, which the triton pair checks is
said, not hidden. (The permutation itself is checked by the CPU kernel only: on CUDA its range is a device-side
assert, which would end the process, and its having no repeats is the caller's contract.)"""
from __future__ import annotations

import pytest

import gpu_support as gs
from op_specs import permute_affine as spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("scale", spec.SCALES)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("case", upto(spec.SHAPES, LARGE), ids=str)
def test_matches_eager(pair, scale, dtype, case):
    spec.check_matches_reference(pair, dtype, case, scale)


@pytest.mark.parametrize("param_layout", spec.PARAM_LAYOUTS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("case", [(4097, 70, 60, 65), (37, 9, 8, 5), (65, 0, 7, 7)], ids=str)
def test_any_input_layout_equals_eager(pair, layout, param_layout, dtype, case):
    gs.skip_unless_implemented(pair, spec)
    spec.check_any_input_layout(pair, layout, param_layout, dtype, case)


def test_kernel_takes_any_strides(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_kernel_takes_any_strides(pair)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_backward_op_is_the_closed_form(pair, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_backward_op_formula(pair, dtype)


@pytest.mark.parametrize("unused", ["a", "b"])
def test_an_unused_output_has_zero_gradient(pair, unused):
    gs.skip_unless_implemented(pair, spec)
    spec.check_one_output_unused(pair, unused)


def test_a_broadcast_gradient(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_broadcast_gradient(pair)


def test_a_transposed_gradient(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_transposed_gradient(pair)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_nan_and_inf_propagate(pair, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_nan_and_inf_propagate(pair, dtype)


def test_empty(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_empty(pair)


@pytest.mark.parametrize("case", spec.GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(pair, case):
    gs.skip_unless_implemented(pair, spec)
    spec.check_gradcheck(pair, case)


def test_is_actnorm_then_permutation(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_is_actnorm_then_permutation(pair)


def test_captured_in_a_cuda_graph(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_captured_in_a_cuda_graph(pair, lambda fn: gs.captured(fn, pair.dev))


def test_other_device_is_refused(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_other_device_is_refused(pair)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(pair, name):
    gs.skip_unless_implemented(pair, spec)
    run_opcheck(pair, spec.opcheck_samples, [name])
