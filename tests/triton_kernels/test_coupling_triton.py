"""The Triton coupling kernels (kernels/coupling.py) in the interpreter: the spec's checks
(tests/op_specs/coupling.py) on the triton backend with CPU tensors, at the interpreter's (small) sizes."""
from __future__ import annotations

import pytest

from op_specs import coupling as spec
from op_specs.targets import DTYPES, INTERPRETER, SMALL, run_opcheck, upto

pytestmark = pytest.mark.triton
T = INTERPRETER


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, SMALL))
@pytest.mark.parametrize("clamp", spec.CLAMPS)
def test_matches_reference(direction, dtype, shape, clamp):
    spec.check_matches_reference(T, direction, dtype, shape, clamp)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_column_slices(direction, dtype):
    spec.check_column_slices(T, direction, dtype)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
def test_any_input_layout_equals_the_reference(direction, layout):
    spec.check_any_layout(T, direction, layout)


@pytest.mark.parametrize("clamp", [0.0, 3.0])
def test_inverse_undoes_forward(clamp):
    spec.check_inverse_undoes_forward(T, clamp)


@pytest.mark.parametrize("d", [6, 40])
def test_nan_and_inf_propagate(d):
    spec.check_nan_and_inf_propagate(T, d)


def test_infinite_log_scale_follows_the_formula():
    spec.check_infinite_log_scale(T)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("clamp", spec.CLAMPS)
@pytest.mark.parametrize("shape", upto(spec.GRADCHECK_SHAPES, SMALL))
def test_backward_gradcheck_float64(direction, clamp, shape):
    spec.check_gradcheck(T, direction, clamp, shape)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clamp", [2.0, 0.3])
def test_backward_matches_reference_autograd(direction, dtype, clamp):
    spec.check_gradients_match_reference(T, direction, dtype, clamp)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
def test_broadcast_gradients(direction):
    spec.check_broadcast_gradients(T, direction)


def test_output_gradient_only():
    spec.check_output_gradient_only(T)


def test_logdet_only_gradient():
    spec.check_logdet_only_gradient(T)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck_triton_ops(name):
    run_opcheck(T, spec.opcheck_samples, [name])
