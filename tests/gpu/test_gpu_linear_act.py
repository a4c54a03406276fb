"""linear_act on the device against the eager reference on the same device: the spec's checks
(tests/op_specs/linear_act.py) at the GPU runner's sizes — forward and gated backward layers, float32 and bfloat16
products, strided rows and any layout, NaN/inf, empty inputs, opcheck. The op has no Triton kernel, which the
triton pair checks is said, not hidden."""
from __future__ import annotations

import pytest

import gpu_support as gs
from op_specs import linear_act as spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("option", spec.OPTIONS)
@pytest.mark.parametrize("x_dtype, w_dtype, out_dtype", spec.DTYPES)
@pytest.mark.parametrize("m, k, n", upto(spec.SHAPES, LARGE))
def test_matches_eager(pair, option, x_dtype, w_dtype, out_dtype, m, k, n):
    spec.check_matches_reference(pair, option, x_dtype, w_dtype, out_dtype, m, k, n)


def test_is_an_mlp_layer_and_its_backward(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_is_an_mlp_layer_and_its_backward(pair)


def test_strided_rows(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_strided_rows(pair)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("x_dtype, w_dtype", [(gs.DTYPES[0], gs.DTYPES[0]), (spec.BF16, spec.BF16)])
def test_any_input_layout_equals_eager(pair, layout, x_dtype, w_dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_any_input_layout(pair, layout, x_dtype, w_dtype, 300, 48, 24)


def test_any_weight_and_bias_layout_equals_eager(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_any_weight_and_bias_layout(pair)


def test_kernel_copes_with_overlapping_rows(pair):
    gs.skip_unless_implemented(pair, spec)
    if pair.ops is None:
        pytest.skip("the eager backend is plain PyTorch: it has no registered op")
    spec.check_kernel_copes_with_overlapping_rows(pair)


def test_nan_and_inf_propagate(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_nan_and_inf_propagate(pair)


def test_empty_inputs(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_empty_inputs(pair)


def test_opcheck(pair):
    gs.skip_unless_implemented(pair, spec)
    run_opcheck(pair, spec.opcheck_samples)
