"""The Triton Philox kernel (kernels/philox.py, on tl.randn4x) in the interpreter: the spec's checks
(tests/op_specs/philox.py) on the triton backend with CPU tensors, and the Triton op's own output check."""
from __future__ import annotations

import pytest
import torch

from op_specs import philox as spec
from op_specs.targets import DTYPES, HAS_CPU_OP, INTERPRETER, SMALL, run_opcheck, upto

pytestmark = pytest.mark.triton
T = INTERPRETER


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,offset,shape", upto(spec.CASES, SMALL))
def test_triton_matches_reference(seed, offset, shape, dtype):
    spec.check_matches_reference(T, seed, offset, shape, dtype)


@pytest.mark.skipif(not HAS_CPU_OP, reason="genad_fast._C is not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,offset,shape", [(9, 0, (5,)), (2**40 + 1, 2**35 + 7, (3001,))])
def test_triton_matches_cpu_kernel(seed, offset, shape, dtype):
    spec.check_matches_cpu_kernel(T, seed, offset, shape, dtype)


@pytest.mark.parametrize("seed,offset,values", spec.KNOWN)
def test_triton_known_first_values(seed, offset, values):
    spec.check_known_first_values(T, seed, offset, values)


def test_triton_draws_continue_the_stream():
    spec.check_draws_continue_the_stream(T)


def test_float64_is_float32_converted():
    spec.check_float64_is_float32_converted(T)


def test_same_position_same_numbers():
    spec.check_same_position_same_numbers(T)


def test_opcheck_triton_op():
    run_opcheck(T, spec.opcheck_samples)


def test_triton_op_rejects_bad_output():
    with pytest.raises(ValueError, match="contiguous float32/float64"):
        torch.ops.genad_fast_triton.philox_normal_(torch.empty(4, 6).t(), 0, 0)
    with pytest.raises(ValueError, match="contiguous float32/float64"):
        torch.ops.genad_fast_triton.philox_normal_(torch.empty(4, dtype=torch.int32), 0, 0)
