"""Spec of the Philox noise stream, ``randn(shape, seed, offset)`` (registered as ``philox_normal_``), DESIGN.md
"Noise": Philox4x32-10 keyed by the 64-bit seed, Box–Muller as Triton's ``tl.randn4x``; for n elements and
q = ceil(n / 4), element i takes normal i // q of ``randn4x(seed, offset + i % q)``.
Oracle: :func:`genad_fast.reference.philox.randn` (integer Philox in torch ops, on any device).
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.reference import philox as ref
from op_specs.compare import F32, F64, close, tol, ulp_distance
from op_specs.targets import LARGE, Target, cpu_backend, on_gpu, sized

OPS = ("randn",)
# The benchmark's diffusion shape on a GPU: thousands of blocks of counters.
BIG = on_gpu((4096, 64, 25), (256, 64, 25))
CASES = [  # (seed, offset, shape)
    (0, 0, (0,)),
    (0, 0, (1,)),
    (1, 0, (3,)),                          # seed 1 is a constexpr after Triton's specialisation
    (7, 3, (4,)),
    (42, 10, (5,)),
    (3, 0, (1001,)),
    (2**40 + 1, 2**35 + 7, (1001,)),       # seed and offset above 2^32: both key and counter words used
    (5, 2**32 - 100, (7, 13, 11)),         # counters cross into the high word inside the tensor
    (2**63 - 1, 0, (17,)),
    (2**63 - 1, 2**62, (4099,)),           # more than one program of the Triton kernel (BLOCK = 1024 counters)
    (123, 0, (2, 0, 3)),
    (123, 2**62, (2, 0, 3)),
    sized((9, 2**33 + 5, BIG), LARGE),
]
# First values of the stream, computed from an independent numpy twin of tl.randn4x (tests/test_philox.py).
KNOWN = [
    (0, 0, [0.04655153, -0.38836142, 0.66999519, -2.37303329, 0.27419773, 0.88505173, -1.09542656, 0.44528437]),
    (2**40 + 5, 2**33 + 1,
     [-1.10599625, -0.00166211, 0.52748430, 0.33973834, -0.13825922, 0.19302921, -1.22758389, 0.93028575]),
]

# The cross-backend contract for the stream: the same Philox words and layout on every backend; the normals may
# differ in the last ulps of float32 log/sqrt/sin/cos (SLEEF on the CPU, torch's in the oracle, CUDA's libm,
# Triton's libdevice, numpy in the interpreter). |z| <= sqrt(−2 ln 1e-7) < 5.7: a few float32 ulps.
TOL = tol(1e-5, 1e-6)
# |z| = r·|cos θ| with r = sqrt(−2 ln u1): each factor from functions accurate to a few ulps on every backend
# (SLEEF u10: 1 ulp; CUDA logf 1, sincosf 2, sqrtf 0.5; libdevice logf 1, sin/cos 2, sqrt.approx 1), so the
# product is within ~8 ulps of the exact one on each side; a wrong counter or layout is off by O(1).
MAX_ULPS = 32
# The known first values are printed to 8 decimals (a unit of the last one), and each backend's normals may differ
# from them in the last ulps of float32 (MAX_ULPS' reasons): 4 ulps relative (2^-23 each). An absolute 2e-7 did
# not hold on an H200: Triton's -2.37303329 came out 1 ulp (2.4e-7) away.
KNOWN_TOL = tol(4 * 2.0**-23, 1e-8)


def draw(target: Target, shape, seed, offset, dtype=F32):
    return ops.randn(shape, seed, offset, dtype=dtype, device=target.dev, backend=target.backend)


def cpu_stream(shape, seed, offset, dtype=F32):
    """The stream of the CPU kernel (eager where _C is not built): the reference every device is held to."""
    return ops.randn(shape, seed, offset, dtype=dtype, device="cpu", backend=cpu_backend())


def check_matches_reference(target: Target, seed, offset, shape, dtype):
    got = draw(target, shape, seed, offset, dtype)
    assert got.device.type == target.device and got.shape == torch.Size(shape) and got.dtype == dtype
    close(got, ref.randn(shape, seed, offset, dtype=dtype, device=target.dev), TOL)


def check_matches_cpu_kernel(target: Target, seed, offset, shape, dtype) -> dict:
    """The same numbers as the CPU kernel for the same (seed, offset, shape). Returns the measured figures: the
    largest difference in float32 ulps and the share of bitwise equal elements."""
    got = draw(target, shape, seed, offset, dtype).cpu()
    expected = cpu_stream(shape, seed, offset, dtype)
    close(got, expected, TOL)
    if not got.numel():
        return {}
    worst = float(ulp_distance(got.float(), expected.float()).max())
    assert worst <= MAX_ULPS, f"{worst:.1f} ulps from the CPU kernel's stream"
    return dict(max_ulps=worst, bitwise_equal_share=float((got == expected).double().mean()), elements=got.numel())


def check_known_first_values(target: Target, seed, offset, values):
    close(draw(target, 8, seed, offset).cpu(), torch.tensor(values), KNOWN_TOL)


def check_draws_continue_the_stream(target: Target):
    """Two draws with offset advanced by philox_counters equal one larger draw, counter by counter (bitwise)."""
    m1, m2, seed = target.pick(300, 1000, 100_003), target.pick(77, 337, 3_337), 8
    a = draw(target, 4 * m1, seed, 5).view(4, m1)
    b = draw(target, 4 * m2, seed, 5 + ops.philox_counters(4 * m1)).view(4, m2)
    whole = draw(target, 4 * (m1 + m2), seed, 5).view(4, m1 + m2)
    assert torch.equal(whole, torch.cat([a, b], dim=1))


def check_float64_is_float32_converted(target: Target):
    shape = (target.pick(301, 10007), 11)
    assert torch.equal(draw(target, shape, 5, 3, F64), draw(target, shape, 5, 3, F32).double())


def check_same_position_same_numbers(target: Target):
    """The same (seed, offset) repeats bitwise; another seed, offset or high key word gives other numbers."""
    a = draw(target, (513, 7), 11, 2**34)
    assert torch.equal(a, draw(target, (513, 7), 11, 2**34))
    for seed, offset in ((12, 2**34), (11, 2**34 + 1), (11 + 2**32, 2**34)):
        assert not torch.allclose(a, draw(target, (513, 7), seed, offset))


def opcheck_samples(target: Target) -> dict:
    """Empty, odd and (compiled kernels) multi-program outputs in both dtypes; seed and offset above 2^32."""
    outs = [((0,), F32), ((5,), F32), ((7, 13), F64)] + target.pick([], [((4099,), F32)])
    return {"philox_normal_": [(torch.empty(shape, dtype=dtype, device=target.dev), 3, 2**33 + 4)
                               for shape, dtype in outs]}


OPCHECK = ("philox_normal_",)
