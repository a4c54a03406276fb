"""Philox noise (DESIGN.md, "Noise"): reference vs an independent numpy Philox; the spec's checks
(tests/op_specs/philox.py) on the eager and cpu backends; thread-count invariance, moments, torch.compile, the
shared C++ header, and input errors."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import philox as ref
from op_specs import philox as spec
from op_specs.compare import close
from op_specs.targets import CPU_TARGETS, HAS_CPU_OP, MEDIUM, Target, needs_cpu_op, run_opcheck, upto

REPO = Path(__file__).resolve().parents[1]
TOL = spec.TOL


# ---- an independent Philox4x32-10 in numpy (Random123 order: bump the key before rounds 2..10) ----------

_M = np.uint64(0xFFFFFFFF)


def _philox_np(ctr, key):
    c = [np.asarray(x, dtype=np.uint64) for x in ctr]
    k0, k1 = (np.uint64(k) for k in key)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & _M
            k1 = (k1 + np.uint64(0xBB67AE85)) & _M
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _M, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _M]
    return c


def _randn4x_np(seed: int, ctr: np.ndarray) -> list[np.ndarray]:
    """Triton's tl.randn4x(seed, ctr) written from triton/language/random.py, in numpy float32."""
    ctr = np.asarray(ctr, dtype=np.uint64)
    zero = np.zeros_like(ctr)
    words = _philox_np([ctr & _M, ctr >> np.uint64(32), zero, zero], [seed & 0xFFFFFFFF, seed >> 32])
    u = []
    for w in words:
        s = w.astype(np.uint32).view(np.int32)
        s = np.where(s < 0, ~s, s)
        u.append(s.astype(np.float32) * np.float32(4.6566127342e-10))
    z = []
    for u1, u2 in ((u[0], u[1]), (u[2], u[3])):
        u1 = np.maximum(np.float32(1e-7), u1)
        th = np.float32(6.283185307179586) * u2
        r = np.sqrt(np.float32(-2.0) * np.log(u1))
        z += [r * np.cos(th), r * np.sin(th)]
    return z


# Random123 kat_vectors, "philox4x32 10": counter[4], key[2] -> output[4].
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answers_numpy_and_reference(ctr, key, expected):
    assert tuple(int(w) for w in _philox_np(ctr, key)) == expected
    words = ref.philox4x32_10(*(torch.tensor([c], dtype=torch.int64) for c in ctr), *key)
    assert tuple(int(w) for w in words) == expected


def test_reference_words_equal_numpy_bitwise():
    g = np.random.default_rng(0)
    ctr = g.integers(0, 2**32, size=(4, 257), dtype=np.uint64)
    for key in [(0, 0), (1, 2), (0xDEADBEEF, 0xFFFFFFFF), (0x80000000, 0x7FFFFFFF)]:
        expected = _philox_np(ctr, key)
        got = ref.philox4x32_10(*(torch.from_numpy(c.astype(np.int64)) for c in ctr), *key)
        for e, w in zip(expected, got):
            np.testing.assert_array_equal(w.numpy(), e.astype(np.int64))


@pytest.mark.parametrize("seed,offset,m", [(0, 0, 64), (2**40 + 5, 2**33 + 1, 33), (9, 2**32 - 7, 20)])
def test_reference_layout_is_triton_randn4x(seed, offset, m):
    """n = 4m: quarter k of the tensor is normal k of randn4x(seed, offset + j), j = 0..m-1."""
    z = _randn4x_np(seed, np.arange(m, dtype=np.uint64) + np.uint64(offset))
    got = ref.randn((4 * m,), seed, offset).view(4, m)
    for k in range(4):
        close(got[k], torch.from_numpy(z[k]), TOL)


# ---- the spec's checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("seed,offset,values", spec.KNOWN)
def test_known_first_values(target, seed, offset, values):
    spec.check_known_first_values(target, seed, offset, values)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed,offset,shape", upto(spec.CASES, MEDIUM))
def test_matches_reference(target, seed, offset, shape, dtype):
    spec.check_matches_reference(target, seed, offset, shape, dtype)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_float64_is_float32_converted(target):
    spec.check_float64_is_float32_converted(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_draws_continue_the_stream(target):
    spec.check_draws_continue_the_stream(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_same_position_same_numbers(target):
    spec.check_same_position_same_numbers(target)


@needs_cpu_op
def test_opcheck():
    run_opcheck(Target("cpu", "cpu"), spec.opcheck_samples)


# ---- the CPU runner's own checks ---------------------------------------------------------------------------

def test_eager_backend_is_the_reference():
    assert torch.equal(ops.randn((3, 5), 4, 9, backend="eager"), ref.randn((3, 5), 4, 9))


@needs_cpu_op
def test_cpu_thread_count_invariant():
    n = 2**20 + 3  # many parallel blocks and a partial one at the end of every quarter
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.randn(n, 77, 2**34 + 1, backend="cpu")
        torch.set_num_threads(2)
        two = ops.randn(n, 77, 2**34 + 1, backend="cpu")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_philox_counters():
    assert [ops.philox_counters(n) for n in (0, 1, 3, 4, 5, 8, 1001)] == [0, 1, 1, 1, 2, 2, 251]
    with pytest.raises(ValueError, match="n must be >= 0"):
        ops.philox_counters(-1)


# ---- the distribution ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 2**45 + 17])
def test_moments_and_shape(seed):
    n = 2**20
    backend = "cpu" if HAS_CPU_OP else "eager"
    z = ops.randn(n, seed, 3, dtype=torch.float64, backend=backend)
    # Standard errors: mean 1/sqrt(n) ~ 1e-3; variance sqrt(2/n) ~ 1.4e-3; 5 sigma bounds.
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    # Skewness 0 (se sqrt(6/n)) and kurtosis 3 (se sqrt(24/n)).
    assert abs((z**3).mean().item()) < 5 * math.sqrt(6 / n)
    assert abs((z**4).mean().item() - 3) < 5 * math.sqrt(96 / n)
    # The four quarters (the four outputs of one Philox call) are uncorrelated.
    quarters = z.view(4, -1)
    corr = torch.corrcoef(quarters)
    off_diag = corr[~torch.eye(4, dtype=torch.bool)]
    assert off_diag.abs().max().item() < 5 / math.sqrt(n // 4)
    # Kolmogorov-Smirnov distance to N(0, 1): the 0.1% critical value is 1.95 / sqrt(n).
    s = torch.sort(z).values
    cdf = 0.5 * torch.erfc(-s / math.sqrt(2))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    assert d < 1.95 / math.sqrt(n)


# ---- op registration -------------------------------------------------------------------------------------

@needs_cpu_op
def test_torch_compile_fullgraph():
    def draw(seed, offset):
        return ops.randn((6, 7), seed, offset) * 2.0 + 1.0

    compiled = torch.compile(draw, fullgraph=True)
    for seed, offset in [(0, 0), (5, 11), (2**40, 2**35)]:
        assert torch.equal(compiled(seed, offset), draw(seed, offset))


def test_import_does_not_import_triton():
    code = "import sys, genad_fast, genad_fast.ops; assert 'triton' not in sys.modules, 'triton imported'"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ---- the shared header's scalar path (used by the CUDA kernel) -------------------------------------------

@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler to build the header check")
def test_header_normal_at_matches_reference(tmp_path):
    cases = [(0, 0, 8), (3, 7, 1001), (2**40 + 1, 2**35 + 7, 13), (5, 2**32 - 2, 10)]
    src = tmp_path / "check.cpp"
    src.write_text(textwrap.dedent("""
        #include <cstdio>
        #include <cstdlib>
        #include "genad/philox.h"
        int main(int argc, char** argv) {
          const unsigned long long seed = std::strtoull(argv[1], nullptr, 10), offset = std::strtoull(argv[2], nullptr, 10),
                                   n = std::strtoull(argv[3], nullptr, 10);
          for (unsigned long long i = 0; i < n; ++i) std::printf("%.9g\\n", genad::philox::normal_at(seed, offset, n, i));
          return 0;
        }
    """))
    exe = tmp_path / "check"
    subprocess.run(["g++", "-O2", "-std=c++20", f"-I{REPO / 'csrc' / 'include'}", str(src), "-o", str(exe)],
                   check=True)
    for seed, offset, n in cases:
        out = subprocess.run([str(exe), str(seed), str(offset), str(n)], check=True, capture_output=True, text=True)
        got = torch.tensor([float(v) for v in out.stdout.split()])
        close(got, ref.randn(n, seed, offset), TOL)


# ---- errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(seed=-1), ValueError, r"seed must be in \[0, 2\^63\)"),
    (dict(seed=2**63), ValueError, r"seed must be in \[0, 2\^63\)"),
    (dict(offset=-5), ValueError, r"offset must be in \[0, 2\^63\)"),
    (dict(offset=2**63), ValueError, r"offset must be in \[0, 2\^63\)"),
    (dict(offset=2**63 - 2), ValueError, r"offset \+ philox_counters"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(seed=True), TypeError, "seed must be an integer"),
    (dict(shape=(3, -1)), ValueError, "negative sizes"),
    (dict(shape=(2.0, 3)), TypeError, "shape entries must be an integer"),
    (dict(dtype=torch.float16), TypeError, "dtype must be float32 or float64"),
    (dict(dtype=torch.int64), TypeError, "dtype must be float32 or float64"),
    (dict(backend="bogus"), ValueError, "unknown backend"),
])
def test_bad_input(kwargs, exc, match):
    args = dict(shape=(4, 5), seed=0, offset=0) | kwargs
    with pytest.raises(exc, match=match):
        ops.randn(**args)


def test_cuda_backend_on_cpu_raises():
    with pytest.raises(BackendUnavailableError, match="cuda"):
        ops.randn(10, 0, backend="cuda")


def test_triton_backend_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: triton can run")
    with pytest.raises(BackendUnavailableError, match="triton"):
        ops.randn(10, 0, backend="triton")


@needs_cpu_op
def test_op_checks_its_output_tensor():
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.genad_fast.philox_normal_(torch.empty(4, 6).t(), 0, 0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.genad_fast.philox_normal_(torch.empty(4, dtype=torch.int32), 0, 0)
    with pytest.raises(RuntimeError, match="seed must be in"):
        torch.ops.genad_fast.philox_normal_(torch.empty(4), -1, 0)
