"""Affine coupling (coupling_forward / coupling_inverse / coupling_backward) on the device against the eager
reference on the same device: the spec's checks (tests/op_specs/coupling.py) at the GPU runner's sizes — values
up to 4096 x 64, strides and layouts, NaN/inf, gradients (gradcheck in float64), opcheck."""
from __future__ import annotations

import pytest

import gpu_support as gs
from op_specs import coupling as spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, LARGE))
@pytest.mark.parametrize("clamp", spec.CLAMPS)
def test_matches_eager(pair, direction, dtype, shape, clamp):
    spec.check_matches_reference(pair, direction, dtype, shape, clamp)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_column_slices(pair, direction, dtype):
    spec.check_column_slices(pair, direction, dtype)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
def test_any_input_layout_equals_eager(pair, direction, layout):
    spec.check_any_layout(pair, direction, layout)


@pytest.mark.parametrize("clamp", [0.0, 3.0])
def test_inverse_undoes_forward(pair, clamp):
    spec.check_inverse_undoes_forward(pair, clamp)


@pytest.mark.parametrize("d", [6, 40])
def test_nan_and_inf_propagate(pair, d):
    spec.check_nan_and_inf_propagate(pair, d)


def test_infinite_log_scale_follows_the_formula(pair):
    spec.check_infinite_log_scale(pair)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("clamp", spec.CLAMPS)
@pytest.mark.parametrize("shape", upto(spec.GRADCHECK_SHAPES, LARGE))
def test_gradcheck_float64(pair, direction, clamp, shape):
    spec.check_gradcheck(pair, direction, clamp, shape)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("clamp", [2.0, 0.3])
def test_gradients_match_eager_autograd(pair, direction, dtype, clamp):
    spec.check_gradients_match_reference(pair, direction, dtype, clamp)


@pytest.mark.parametrize("direction", spec.DIRECTIONS)
def test_broadcast_gradients(pair, direction):
    spec.check_broadcast_gradients(pair, direction)


def test_output_gradient_only(pair):
    spec.check_output_gradient_only(pair)


def test_logdet_only_gradient(pair):
    spec.check_logdet_only_gradient(pair)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(pair, name):
    run_opcheck(pair, spec.opcheck_samples, [name])
