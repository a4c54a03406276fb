"""The Triton diffusion kernels (kernels/diffusion.py, on tl.randn4x) in the interpreter: the spec's checks
(tests/op_specs/diffusion.py, recon_error.py) on the triton backend with CPU tensors, at the interpreter's sizes,
and the Triton ops' own input checks."""
from __future__ import annotations

import pytest
import torch

from op_specs import diffusion as spec
from op_specs import recon_error as recon_spec
from op_specs.targets import DTYPES, HAS_CPU_OP, INTERPRETER, SMALL, run_opcheck, upto

pytestmark = pytest.mark.triton
T = INTERPRETER
NUMPY_NAN = "ignore:invalid value encountered:RuntimeWarning"  # the interpreter's numpy computes 0·inf on purpose


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, SMALL))
@pytest.mark.parametrize("seed,offset", spec.SEEDS)
def test_in_kernel_noise_matches_reference(dtype, shape, seed, offset):
    spec.check_in_kernel_noise_matches_reference(T, dtype, shape, seed, offset)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, SMALL))
def test_explicit_noise_matches_reference(dtype, shape):
    spec.check_explicit_noise_matches_reference(T, dtype, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.STREAM_SHAPES, SMALL))
def test_in_kernel_noise_is_the_triton_noise_op(dtype, shape):
    spec.check_in_kernel_noise_is_the_stream(T, dtype, shape)


@pytest.mark.skipif(not HAS_CPU_OP, reason="genad_fast._C is not built")
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_matches_cpu_kernel(dtype):
    spec.check_matches_cpu_kernel(T, dtype, (9, 333))


def test_noise_depends_on_position_only():
    spec.check_noise_depends_on_position_only(T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_strided_and_broadcast_batches(dtype, use_noise):
    spec.check_strided_batches(T, dtype, use_noise)


def test_a_sample_broadcast_over_the_batch():
    spec.check_a_sample_broadcast_over_the_batch(T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_any_data_layout_equals_the_reference(dtype, use_noise):
    spec.check_any_layout(T, dtype, use_noise)


def test_coefficients_are_per_sample():
    spec.check_coefficients_are_per_sample(T)


def test_float_coefficients_are_cast_to_the_data_dtype():
    spec.check_float_coefficients_are_cast(T)


@pytest.mark.filterwarnings(NUMPY_NAN)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(dtype):
    spec.check_nan_and_inf_propagate(T, dtype)


# ---- recon_error_accumulate_ -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(recon_spec.SHAPES, SMALL))
@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
@pytest.mark.parametrize("masked", [False, True])
def test_recon_error_matches_reference(dtype, shape, layout, masked):
    recon_spec.check_matches_reference(T, dtype, shape, layout, masked)


def test_recon_error_accumulates_draws_and_masks():
    recon_spec.check_accumulates_draws_and_masks(T)


def test_recon_error_strided_operands():
    recon_spec.check_strided_operands(T)


@pytest.mark.filterwarnings(NUMPY_NAN)
@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
def test_recon_error_nan_and_inf_propagate(layout):
    recon_spec.check_nan_and_inf_propagate(T, layout)


# ---- the custom ops -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", spec.OPCHECK + recon_spec.OPCHECK)
def test_opcheck_triton_ops(name):
    run_opcheck(T, recon_spec.opcheck_samples if name in recon_spec.OPCHECK else spec.opcheck_samples, [name])


def test_triton_ops_check_their_inputs():
    x, eps, _, a, b, c = spec.data((4, 6), torch.float32)
    with pytest.raises(ValueError, match=r"a must be a vector of one coefficient per sample, shape \[4\]"):
        torch.ops.genad_fast_triton.diffusion_step(x, eps, a[:3], b, c, 0, 0, None)
    with pytest.raises(ValueError, match="data must have unit stride on its last dimension"):
        torch.ops.genad_fast_triton.add_noise(x.t(), a, b, 0, 0, None)
    with pytest.raises(ValueError, match="seed must be in"):
        torch.ops.genad_fast_triton.add_noise(x, a, b, -1, 0, None)
    with pytest.raises(ValueError, match=r"score must have shape \[1, 4\], got \[4\]"):
        torch.ops.genad_fast_triton.recon_error_accumulate_(torch.zeros(4), x[None], x[None], None, 1.0)
