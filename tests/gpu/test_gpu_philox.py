"""The Philox noise stream on the device (DESIGN.md, "Noise"): the same numbers as the CPU kernel for the same
(seed, offset, shape) — the same Philox words, the same layout, and Box–Muller normals that may differ only in the
last ulps of float32 log/sqrt/sin/cos (SLEEF on the CPU, CUDA's libm, Triton's libdevice with sqrt.approx) —
exact properties within one backend (draws continue the stream bitwise, float64 = float32 converted, the diffusion
ops' in-kernel noise is this op's output bit for bit), and opcheck.

Measured per pair and recorded in the summary: the largest difference to the CPU stream in ulps and the share of
elements that are bitwise equal."""
from __future__ import annotations

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from genad_fast.reference import philox as ref

# The project's cross-backend contract for the stream (tests/test_philox.py, tests/triton_kernels).
TOL = dict(rtol=1e-5, atol=1e-6)
# |z| = r·|cos θ| with r = sqrt(−2 ln u1): each factor from functions accurate to a few ulps on every backend
# (SLEEF u10: 1 ulp; CUDA logf 1, sincosf 2, sqrtf 0.5; libdevice logf 1, sin/cos 2, sqrt.approx 1), so the
# product is within ~8 ulps of the exact one on each side; a wrong counter or layout is off by O(1).
MAX_ULPS = 32

CASES = [  # (seed, offset, shape)
    (0, 0, (1,)),
    (1, 0, (3,)),
    (7, 3, (4,)),
    (42, 10, (5,)),
    (3, 0, (1001,)),
    (2**40 + 1, 2**35 + 7, (1001,)),       # seed and offset above 2^32: both key and counter words used
    (5, 2**32 - 100, (7, 13, 11)),         # counters cross into the high word inside the tensor
    (2**63 - 1, 2**62, (4099,)),           # several blocks of counters
    (123, 2**62, (2, 0, 3)),
    (9, 2**33 + 5, gs.BIG),                # the benchmark's diffusion shape on a GPU: thousands of blocks
]


def _cpu_stream(shape, seed, offset, dtype=torch.float32):
    return ops.randn(shape, seed, offset, dtype=dtype, device="cpu", backend=gs.cpu_backend())


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("seed,offset,shape", CASES)
def test_stream_is_the_cpu_kernels(pair, seed, offset, shape, dtype):
    got = ops.randn(shape, seed, offset, dtype=dtype, device=pair.dev, backend=pair.backend)
    assert got.device.type == pair.device and got.shape == torch.Size(shape) and got.dtype == dtype
    expected = _cpu_stream(shape, seed, offset, dtype)
    got = got.cpu()
    torch.testing.assert_close(got, expected, **TOL)
    if got.numel():
        ulps = gs.ulp_distance(got.float(), expected.float())
        worst = float(ulps.max())
        gs.record_max(f"philox[{pair}] vs cpu stream", max_ulps=worst)
        if shape == gs.BIG and dtype == torch.float32:
            gs.record(f"philox[{pair}] vs cpu stream", bitwise_equal_share=float((got == expected).double().mean()),
                      elements=got.numel())
        assert worst <= MAX_ULPS, f"{worst:.1f} ulps from the CPU kernel's stream"


@pytest.mark.parametrize("seed,offset,values", [
    (0, 0, [0.04655153, -0.38836142, 0.66999519, -2.37303329, 0.27419773, 0.88505173, -1.09542656, 0.44528437]),
    (2**40 + 5, 2**33 + 1,
     [-1.10599625, -0.00166211, 0.52748430, 0.33973834, -0.13825922, 0.19302921, -1.22758389, 0.93028575]),
])
def test_known_first_values(pair, seed, offset, values):
    # Computed from an independent numpy twin of tl.randn4x (tests/test_philox.py).
    got = ops.randn(8, seed, offset, device=pair.dev, backend=pair.backend).cpu()
    torch.testing.assert_close(got, torch.tensor(values), rtol=0, atol=2e-7)


def test_eager_reference_on_the_device(pair):
    """The eager oracle (integer Philox in torch ops) runs on the device and agrees with the CPU kernel."""
    got = ref.randn((4099,), 2**40 + 1, 2**35 + 7, device=pair.dev).cpu()
    torch.testing.assert_close(got, _cpu_stream((4099,), 2**40 + 1, 2**35 + 7), **TOL)


def test_draws_continue_the_stream_bitwise(pair):
    m1, m2, seed = 100_003, 3_337, 8
    a = ops.randn(4 * m1, seed, 5, device=pair.dev, backend=pair.backend).view(4, m1)
    b = ops.randn(4 * m2, seed, 5 + ops.philox_counters(4 * m1), device=pair.dev, backend=pair.backend).view(4, m2)
    whole = ops.randn(4 * (m1 + m2), seed, 5, device=pair.dev, backend=pair.backend).view(4, m1 + m2)
    assert torch.equal(whole, torch.cat([a, b], dim=1))


def test_float64_is_float32_converted(pair):
    a = ops.randn((10007, 11), 5, 3, dtype=torch.float32, device=pair.dev, backend=pair.backend)
    b = ops.randn((10007, 11), 5, 3, dtype=torch.float64, device=pair.dev, backend=pair.backend)
    assert torch.equal(b, a.double())


def test_same_position_same_numbers(pair):
    a = ops.randn((513, 7), 11, 2**34, device=pair.dev, backend=pair.backend)
    assert torch.equal(a, ops.randn((513, 7), 11, 2**34, device=pair.dev, backend=pair.backend))
    assert not torch.allclose(a, ops.randn((513, 7), 12, 2**34, device=pair.dev, backend=pair.backend))


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (3, 5, 4), gs.BIG])
def test_diffusion_in_kernel_noise_is_this_stream_bitwise(pair, dtype, shape):
    """add_noise / diffusion_step draw exactly randn(x.shape, seed, offset) of the same backend."""
    seed, offset = 2**40 + 9, 2**32 - 70
    B = shape[0]
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(2)).to(pair.dev)
    zeros = torch.zeros(B, dtype=dtype, device=pair.dev)
    ones = torch.ones(B, dtype=dtype, device=pair.dev)
    z = ops.randn(shape, seed, offset, dtype=dtype, device=pair.dev, backend=pair.backend)
    assert torch.equal(ops.add_noise(x, zeros, ones, seed, offset, backend=pair.backend), z)
    assert torch.equal(ops.diffusion_step(x, x, zeros, zeros, ones, seed, offset, backend=pair.backend), z)


def test_opcheck(pair):
    ns = gs.need_ops(pair)
    for shape, dtype in [((0,), torch.float32), ((5,), torch.float32), ((7, 13), torch.float64),
                         ((4099,), torch.float32)]:
        out = torch.empty(shape, dtype=dtype, device=pair.dev)
        torch.library.opcheck(ns.philox_normal_, (out, 3, 2**33 + 4))
