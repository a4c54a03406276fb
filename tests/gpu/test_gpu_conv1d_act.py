"""conv1d_act on the device against the eager reference on the same device: the spec's checks
(tests/op_specs/conv1d_act.py) at the GPU runner's sizes — encoder and decoder stages (bias, LeakyReLU, pooling,
nearest upsampling), float32 and float64, any layout of x, weight and bias, NaN/inf, empty batches, opcheck. The op
has no Triton kernel, which the triton pair checks is said, not hidden."""
from __future__ import annotations

import pytest

import gpu_support as gs
from op_specs import conv1d_act as spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("option", spec.OPTIONS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("k", spec.KERNEL_SIZES)
@pytest.mark.parametrize("n, c_in, c_out, l_in", upto(spec.SHAPES, LARGE))
def test_matches_eager(pair, option, dtype, k, n, c_in, c_out, l_in):
    spec.check_matches_reference(pair, option, dtype, k, n, c_in, c_out, l_in)


@pytest.mark.parametrize("l_in, length", [(5, 11), (7, 16), (16, 5), (3, 1000), (1000, 2999)])
def test_upsampling_picks_atens_timestamps(pair, l_in, length):
    gs.skip_unless_implemented(pair, spec)
    spec.check_upsampling_picks_atens_timestamps(pair, gs.DTYPES[0], l_in, length)


def test_is_an_encoder_and_decoder_stage(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_is_an_encoder_and_decoder_stage(pair)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_any_input_layout_equals_eager(pair, layout, dtype):
    gs.skip_unless_implemented(pair, spec)
    spec.check_any_input_layout(pair, layout, dtype, 300, 32, 33, 64, 5)


def test_any_weight_and_bias_layout_equals_eager(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_any_weight_and_bias_layout(pair)


def test_kernel_takes_any_strides(pair):
    gs.skip_unless_implemented(pair, spec)
    if pair.ops is None:
        pytest.skip("the eager backend is plain PyTorch: it has no registered op")
    spec.check_kernel_takes_any_strides(pair)


def test_nan_and_inf_propagate(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_nan_and_inf_propagate(pair)


def test_empty_batch(pair):
    gs.skip_unless_implemented(pair, spec)
    spec.check_empty_batch(pair)


def test_opcheck(pair):
    gs.skip_unless_implemented(pair, spec)
    run_opcheck(pair, spec.opcheck_samples)
