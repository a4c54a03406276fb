"""Diffusion ops (add_noise, diffusion_step, recon_error_accumulate_) on the device against the eager reference on
the same device: the spec's checks (tests/op_specs/diffusion.py, recon_error.py) at the GPU runner's sizes —
explicit and in-kernel noise, 4096x64x25 (thousands of blocks) and odd shapes, strided and broadcast batches,
NaN/inf, the in-kernel noise as the noise op's output bit for bit and as the CPU kernel's for the same seed,
opcheck — and the refusals of aliased scores and zero channels."""
from __future__ import annotations

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from op_specs import diffusion as spec
from op_specs import recon_error as recon_spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, LARGE))
def test_explicit_noise_matches_eager(pair, dtype, shape):
    spec.check_explicit_noise_matches_reference(pair, dtype, shape)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, LARGE))
@pytest.mark.parametrize("seed,offset", spec.SEEDS)
def test_in_kernel_noise_matches_eager(pair, dtype, shape, seed, offset):
    spec.check_in_kernel_noise_matches_reference(pair, dtype, shape, seed, offset)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_in_kernel_noise_matches_the_cpu_kernel(pair, dtype):
    """The noise contract across devices, on the benchmark's shape."""
    diff = spec.check_matches_cpu_kernel(pair, dtype, gs.BIG)
    gs.record_max(f"diffusion_step[{pair}] vs cpu kernel {'x'.join(map(str, gs.BIG))}",
                  **{f"max_abs_diff_{str(dtype)[6:]}": diff})


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", upto(spec.STREAM_SHAPES, LARGE))
def test_in_kernel_noise_is_the_noise_op_bitwise(pair, dtype, shape):
    spec.check_in_kernel_noise_is_the_stream(pair, dtype, shape)


def test_noise_depends_on_position_only(pair):
    spec.check_noise_depends_on_position_only(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_strided_batches(pair, dtype, use_noise):
    spec.check_strided_batches(pair, dtype, use_noise)


def test_a_sample_broadcast_over_the_batch(pair):
    spec.check_a_sample_broadcast_over_the_batch(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_any_data_layout_equals_eager(pair, dtype, use_noise):
    spec.check_any_layout(pair, dtype, use_noise)


def test_coefficients_are_per_sample(pair):
    spec.check_coefficients_are_per_sample(pair)


def test_float_coefficients_are_cast_to_the_data_dtype(pair):
    spec.check_float_coefficients_are_cast(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_nan_and_inf_propagate(pair, dtype):
    spec.check_nan_and_inf_propagate(pair, dtype)


# ---- recon_error_accumulate_ -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", upto(recon_spec.SHAPES, LARGE))
@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
@pytest.mark.parametrize("masked", [False, True])
def test_recon_error_matches_eager(pair, dtype, shape, layout, masked):
    recon_spec.check_matches_reference(pair, dtype, shape, layout, masked)


def test_recon_error_accumulates_draws_and_masks(pair):
    recon_spec.check_accumulates_draws_and_masks(pair)


def test_recon_error_strided_operands(pair):
    recon_spec.check_strided_operands(pair)


@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
def test_recon_error_nan_and_inf_propagate(pair, layout):
    recon_spec.check_nan_and_inf_propagate(pair, layout)


# ---- opcheck, refusals -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", spec.OPCHECK + recon_spec.OPCHECK)
def test_opcheck(pair, name):
    run_opcheck(pair, recon_spec.opcheck_samples if name in recon_spec.OPCHECK else spec.opcheck_samples, [name])


def test_aliases_and_zero_channels(pair):
    # Issue #12: a channel slice of [B, W, C] windows is an input like any other; a score aliasing x and zero
    # channels are errors with one message on every device.
    # (The channel slice's values: test_any_data_layout_equals_eager.)
    xs = torch.arange(30.0, device=pair.dev).reshape(2, 5, 3)
    with pytest.raises(ValueError, match="score is written in place and overlaps x"):
        ops.recon_error_accumulate_(xs[:, :, 0], xs, torch.zeros_like(xs), backend=pair.backend)
    with pytest.raises(ValueError, match=r"x must have at least one channel \(C >= 1\)"):
        ops.recon_error_accumulate_(torch.zeros(2, 5, device=pair.dev), xs[:, :, :0], xs[:, :, :0],
                                    backend=pair.backend)
