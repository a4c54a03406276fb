"""The Philox noise stream on the device (DESIGN.md, "Noise"): the spec's checks (tests/op_specs/philox.py) —
the oracle's numbers and the CPU kernel's for the same (seed, offset, shape), within the last ulps of float32
log/sqrt/sin/cos; exact properties within one backend (draws continue the stream bitwise, float64 = float32
converted); opcheck — and the eager oracle run on the device. (The diffusion ops' in-kernel noise is this stream
bit for bit: test_gpu_diffusion_ops.py.)

Measured per pair and recorded in the summary: the largest difference to the CPU stream in ulps and the share of
elements that are bitwise equal."""
from __future__ import annotations

import pytest

import gpu_support as gs
from genad_fast.reference import philox as ref
from op_specs import philox as spec
from op_specs.compare import close
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("seed,offset,shape", upto(spec.CASES, LARGE))
def test_stream_is_the_cpu_kernels(pair, seed, offset, shape, dtype):
    figures = spec.check_matches_cpu_kernel(pair, seed, offset, shape, dtype)
    if figures:
        gs.record_max(f"philox[{pair}] vs cpu stream", max_ulps=figures["max_ulps"])
    if figures and shape == spec.BIG and dtype == gs.DTYPES[0]:
        gs.record(f"philox[{pair}] vs cpu stream", bitwise_equal_share=figures["bitwise_equal_share"],
                  elements=figures["elements"])


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("seed,offset,shape", upto(spec.CASES, LARGE))
def test_stream_matches_the_oracle_on_the_device(pair, seed, offset, shape, dtype):
    spec.check_matches_reference(pair, seed, offset, shape, dtype)


@pytest.mark.parametrize("seed,offset,values", spec.KNOWN)
def test_known_first_values(pair, seed, offset, values):
    spec.check_known_first_values(pair, seed, offset, values)


def test_eager_reference_on_the_device(pair):
    """The eager oracle (integer Philox in torch ops) runs on the device and agrees with the CPU kernel."""
    got = ref.randn((4099,), 2**40 + 1, 2**35 + 7, device=pair.dev).cpu()
    close(got, spec.cpu_stream((4099,), 2**40 + 1, 2**35 + 7), spec.TOL)


def test_draws_continue_the_stream_bitwise(pair):
    spec.check_draws_continue_the_stream(pair)


def test_float64_is_float32_converted(pair):
    spec.check_float64_is_float32_converted(pair)


def test_same_position_same_numbers(pair):
    spec.check_same_position_same_numbers(pair)


def test_opcheck(pair):
    run_opcheck(pair, spec.opcheck_samples)
