"""The Triton Philox kernel (kernels/philox.py, on tl.randn4x) in the interpreter, against the reference."""
from __future__ import annotations

import pytest
import torch

import genad_fast
from genad_fast import ops
from genad_fast.reference import philox as ref

pytestmark = pytest.mark.triton

# Triton's interpreter evaluates log/sqrt/sin/cos with numpy float32, the reference with torch: a few ulps apart.
TOL = dict(rtol=1e-5, atol=1e-6)

CASES = [  # (seed, offset, shape)
    (0, 0, (0,)),
    (0, 0, (1,)),
    (1, 0, (3,)),           # seed 1 is a constexpr after Triton's specialisation
    (7, 3, (4,)),
    (42, 10, (5,)),
    (3, 0, (1001,)),
    (2**40 + 1, 2**35 + 7, (1001,)),
    (5, 2**32 - 100, (7, 13, 11)),    # counters cross into the high word inside the tensor
    (2**63 - 1, 2**62, (4099,)),       # more than one program (BLOCK = 1024 counters)
    (123, 0, (2, 0, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed,offset,shape", CASES)
def test_triton_matches_reference(seed, offset, shape, dtype):
    got = ops.randn(shape, seed, offset, dtype=dtype, backend="triton")
    assert got.shape == torch.Size(shape) and got.dtype == dtype
    torch.testing.assert_close(got, ref.randn(shape, seed, offset, dtype=dtype), **TOL)


@pytest.mark.skipif(not genad_fast.build_info()["loaded"], reason="genad_fast._C is not built")
@pytest.mark.parametrize("seed,offset,n", [(9, 0, 5), (2**40 + 1, 2**35 + 7, 3001)])
def test_triton_matches_cpu_kernel(seed, offset, n):
    torch.testing.assert_close(ops.randn(n, seed, offset, backend="triton"),
                               ops.randn(n, seed, offset, backend="cpu"), **TOL)


def test_triton_known_first_values():
    # Computed from an independent numpy twin of tl.randn4x (tests/test_philox.py).
    got = ops.randn(8, 2**40 + 5, 2**33 + 1, backend="triton")
    expected = [-1.10599625, -0.00166211, 0.52748430, 0.33973834, -0.13825922, 0.19302921, -1.22758389, 0.93028575]
    torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=2e-7)


def test_triton_draws_continue_the_stream():
    m1, m2 = 300, 77
    a = ops.randn(4 * m1, 8, 5, backend="triton").view(4, m1)
    b = ops.randn(4 * m2, 8, 5 + ops.philox_counters(4 * m1), backend="triton").view(4, m2)
    whole = ops.randn(4 * (m1 + m2), 8, 5, backend="triton").view(4, m1 + m2)
    assert torch.equal(whole, torch.cat([a, b], dim=1))


@pytest.mark.parametrize("shape,dtype", [((0,), torch.float32), ((5,), torch.float32), ((7, 13), torch.float64)])
def test_opcheck_triton_op(shape, dtype):
    out = torch.empty(shape, dtype=dtype)
    torch.library.opcheck(torch.ops.genad_fast_triton.philox_normal_, (out, 3, 2**33 + 4))


def test_triton_op_rejects_bad_output():
    with pytest.raises(ValueError, match="contiguous float32/float64"):
        torch.ops.genad_fast_triton.philox_normal_(torch.empty(4, 6).t(), 0, 0)
    with pytest.raises(ValueError, match="contiguous float32/float64"):
        torch.ops.genad_fast_triton.philox_normal_(torch.empty(4, dtype=torch.int32), 0, 0)
