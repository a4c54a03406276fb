"""The Triton diffusion kernels (kernels/diffusion.py, on tl.randn4x) in the interpreter: the spec's checks
(tests/op_specs/diffusion.py, recon_error.py) on the triton backend with CPU tensors, at the interpreter's sizes,
and the Triton ops' own input checks."""
from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from genad_fast.kernels.diffusion import MAX_ELEMENTS, _quotient
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



@triton.jit
def _quotient_kernel(i_ptr, d_ptr, out_ptr, n, BLOCK: tl.constexpr):
    k = tl.arange(0, BLOCK)
    live = k < n
    i = tl.load(i_ptr + k, mask=live, other=0)
    d = tl.load(d_ptr + k, mask=live, other=1)
    tl.store(out_ptr + k, _quotient(i, d, 1.0 / d.to(tl.float64)), mask=live)


def test_row_quotient_is_exact_without_an_integer_division():
    """kernels/diffusion.py finds each element's row as i // M from a float64 estimate and one correction step:
    exact for every i below 2^51, here at the estimate's hardest points (one below, at and one above a multiple of
    M, near 2^51, M up to 2^50), among them multiples where the estimate alone is one low (49 // 49 would be 0)."""
    top = MAX_ELEMENTS - 1
    pairs = [(1949010588488920, 29726), (114594118265380, 32077), (1896075962462925, 251275)]  # estimate one low
    for d in (1, 2, 3, 7, 25, 49, 64, 1000, 29726, 2**20 + 1, 2**31 - 1, 2**40 + 3, 2**50 - 1, 2**50 + 1):
        for k in (0, 1, 2, 1000, top // d - 1, top // d):
            for i in (k * d - 1, k * d, k * d + 1):
                if 0 <= i <= top:
                    pairs.append((i, d))
        pairs.append((top, d))
    i = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
    d = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
    out = torch.empty_like(i)
    _quotient_kernel[(1,)](i, d, out, len(pairs), BLOCK=triton.next_power_of_2(len(pairs)))
    assert torch.equal(out, i // d), [(a, b, int(q)) for a, b, q in zip(i.tolist(), d.tolist(), out) if a // b != q]


def test_data_beyond_the_row_quotients_range_is_refused():
    """2^51 elements (a broadcast view, nothing allocated) is where _quotient's exactness ends: the op says so
    rather than misplace rows."""
    from genad_fast.kernels.diffusion import combine

    x = torch.zeros(1, 4).expand(2**49, 4)
    coef = torch.zeros(1).expand(2**49)
    with pytest.raises(ValueError, match="fewer than 2\\^51 elements, got 2251799813685248"):
        combine(x, None, coef, None, coef, 0, 0, None)
