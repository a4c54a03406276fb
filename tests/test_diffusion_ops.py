"""Fused diffusion ops (genad_fast.ops.add_noise / diffusion_step / recon_error_accumulate_) against the eager
reference on CPU tensors: the spec's checks (tests/op_specs/diffusion.py, recon_error.py) on the eager and cpu
backends — in-kernel Philox noise and explicit noise, odd shapes, strided batches, float32/float64, NaN/inf,
opcheck — and what only the CPU runner checks: thread-count invariance, no hidden copies, non-temporal stores,
Hypothesis, bad input, torch.compile, and the shared header's scalar path (used by CUDA)."""
from __future__ import annotations

import math
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import diffusion as ref
from genad_fast.reference import philox as ref_philox
from op_specs import diffusion as spec
from op_specs import recon_error as recon_spec
from op_specs.compare import close
from op_specs.targets import CPU_TARGETS, HAS_CPU_OP, MEDIUM, Target, needs_cpu_op, run_opcheck, upto

BACKENDS = ["eager", pytest.param("cpu", marks=needs_cpu_op)]
CPU = Target("cpu", "cpu")
REPO = Path(__file__).resolve().parents[1]
DTYPES = [torch.float32, torch.float64]
TOL, NOISE_TOL = spec.TOL, spec.NOISE_TOL
_data = spec.data


# ---- the spec's checks: add_noise, diffusion_step ----------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, MEDIUM))
@pytest.mark.parametrize("seed,offset", spec.SEEDS)
def test_step_and_add_noise_in_kernel_noise_match_reference(target, dtype, shape, seed, offset):
    spec.check_in_kernel_noise_matches_reference(target, dtype, shape, seed, offset)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.SHAPES, MEDIUM))
def test_explicit_noise_matches_reference(target, dtype, shape):
    spec.check_explicit_noise_matches_reference(target, dtype, shape)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(spec.STREAM_SHAPES, MEDIUM))
def test_in_kernel_noise_is_the_noise_op_element_by_element(target, dtype, shape):
    spec.check_in_kernel_noise_is_the_stream(target, dtype, shape)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_noise_depends_on_position_only(target):
    spec.check_noise_depends_on_position_only(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_strided_batches_are_read_in_place(target, dtype, use_noise):
    spec.check_strided_batches(target, dtype, use_noise)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_a_sample_broadcast_over_the_batch(target):
    spec.check_a_sample_broadcast_over_the_batch(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_noise", [False, True])
def test_any_data_layout_equals_the_reference(target, dtype, use_noise):
    spec.check_any_layout(target, dtype, use_noise)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_coefficients_are_per_sample(target):
    spec.check_coefficients_are_per_sample(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_float_coefficients_are_cast_to_the_data_dtype(target):
    spec.check_float_coefficients_are_cast(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(target, dtype):
    spec.check_nan_and_inf_propagate(target, dtype)


@needs_cpu_op
@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(CPU, spec.opcheck_samples, [name])


# ---- the spec's checks: recon_error_accumulate_ ------------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(recon_spec.SHAPES, MEDIUM))
@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
@pytest.mark.parametrize("masked", [False, True])
def test_recon_error_matches_reference(target, dtype, shape, layout, masked):
    recon_spec.check_matches_reference(target, dtype, shape, layout, masked)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_recon_error_accumulates_draws_and_masks(target):
    recon_spec.check_accumulates_draws_and_masks(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_recon_error_strided_operands(target):
    recon_spec.check_strided_operands(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
def test_recon_error_nan_and_inf_propagate(target, layout):
    recon_spec.check_nan_and_inf_propagate(target, layout)


@needs_cpu_op
def test_recon_error_opcheck():
    run_opcheck(CPU, recon_spec.opcheck_samples)


# ---- the CPU runner's own checks -----------------------------------------------------------------------------------

@needs_cpu_op
@pytest.mark.parametrize("shape,dtype", [((64, 32768), torch.float32), ((37, 28351), torch.float64)])
def test_cpu_outputs_past_the_streaming_threshold(shape, dtype):
    """Outputs of >= 8 MiB are written with non-temporal stores (aligned quarters, and misaligned ones)."""
    x, eps, noise, a, b, c = _data(shape, dtype, seed=5)
    out = ops.diffusion_step(x, eps, a, b, c, 21, 3, backend="cpu")
    assert out.nbytes >= 8 << 20
    z = ops.randn(shape, 21, 3, dtype=dtype, backend="cpu")
    assert torch.equal(out, ops.diffusion_step(x, eps, a, b, c, 21, 3, noise=z, backend="cpu"))
    close(out, ref.diffusion_step(x, eps, a, b, c, 0, 0, z), TOL(CPU, dtype))
    close(ops.add_noise(x, a, b, 0, 0, noise, backend="cpu"), ref.add_noise(x, a, b, 0, 0, noise), TOL(CPU, dtype))


@needs_cpu_op
def test_cpu_kernel_does_not_copy_strided_inputs(monkeypatch):
    big = torch.randn(8, 30)
    x, eps = big[:, :12], big[:, 12:24]
    a = b = c = torch.rand(8)
    expected = ops.diffusion_step(x.contiguous(), eps.contiguous(), a, b, c, 1, 0, backend="cpu")

    def no_copies(self, *args, **kwargs):
        raise AssertionError("a strided input was copied")

    monkeypatch.setattr(torch.Tensor, "contiguous", no_copies)
    assert torch.equal(ops.diffusion_step(x, eps, a, b, c, 1, 0, backend="cpu"), expected)


@needs_cpu_op
@pytest.mark.parametrize("use_noise", [False, True])
def test_cpu_thread_count_invariant(use_noise):
    x, eps, noise, a, b, c = _data((37, 3001), torch.float32)  # many blocks, runs crossing sample boundaries
    noise = noise if use_noise else None
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.diffusion_step(x, eps, a, b, c, 5, 2**33, noise, backend="cpu")
        torch.set_num_threads(2)
        two = ops.diffusion_step(x, eps, a, b, c, 5, 2**33, noise, backend="cpu")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@needs_cpu_op
@pytest.mark.parametrize("layout", recon_spec.LAYOUTS)
def test_recon_error_thread_count_invariant(layout):
    x, x_hat, mask = recon_spec.data((3, 3000, 25), torch.float32, layout=layout)
    before = torch.get_num_threads()
    scores = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            s = torch.zeros(3, 3000)
            ops.recon_error_accumulate_(s, x, x_hat, mask, 0.5, backend="cpu")
            scores.append(s)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*scores)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(0, 9), dims=st.lists(st.integers(0, 40), min_size=0, max_size=2),
       seed=st.integers(0, 2**63 - 1), offset=st.integers(0, 2**40), scale=st.floats(1e-3, 1e3),
       dtype=st.sampled_from(DTYPES))
def test_hypothesis_shapes_and_values(B, dims, seed, offset, scale, dtype):
    shape = (B, *dims)
    x, eps, noise, a, b, c = _data(shape, dtype, seed=B)
    backend = "cpu" if HAS_CPU_OP else "eager"
    noise_tol, explicit_tol = spec.hypothesis_tols(scale)
    out = ops.diffusion_step(scale * x, eps, a, b, c, seed, offset, backend=backend)
    close(out, ref.diffusion_step(scale * x, eps, a, b, c, seed, offset), noise_tol)
    out = ops.add_noise(scale * x, a, b, seed, offset, noise, backend=backend)
    close(out, ref.add_noise(scale * x, a, b, seed, offset, noise), explicit_tol)


# ---- bad input ------------------------------------------------------------------------------------------------

def _step_args(**over):
    x, eps, noise, a, b, c = _data((4, 6), torch.float32)
    args = dict(x_t=x, eps=eps, a=a, b=b, c=c, seed=0, offset=0, noise=None)
    args.update(over)
    return args


@pytest.mark.parametrize("over,exc,match", [
    (dict(a=torch.rand(3)), ValueError, r"a must be a vector of one coefficient per sample, shape \[4\]"),
    (dict(c=torch.rand(4, 1)), ValueError, r"c must be a vector of one coefficient per sample"),
    (dict(b=torch.arange(4)), TypeError, "b must have dtype float32, float64; got int64"),
    (dict(x_t=torch.zeros(4, 6, dtype=torch.int32)), TypeError, "x_t must have dtype"),
    (dict(x_t=torch.zeros(4, 6, dtype=torch.float16)), TypeError, "x_t must have dtype"),
    (dict(eps=torch.zeros(4, 7)), ValueError, r"eps must have x_t's shape \(4, 6\)"),
    (dict(eps=torch.zeros(4, 6, dtype=torch.float64)), TypeError, "x_t and eps must share a dtype"),
    (dict(eps=torch.zeros(4, 6, device="meta")), ValueError, "x_t and eps must be on one device"),
    (dict(a=torch.zeros(4, device="meta")), ValueError, "a and x_t must be on one device"),
    (dict(noise=torch.zeros(4, 5)), ValueError, r"noise must have x_t's shape"),
    (dict(noise=torch.zeros(4, 6, dtype=torch.float64)), TypeError, "x_t and noise must share a dtype"),
    (dict(x_t=torch.tensor(1.0)), ValueError, "batch dimension"),
    (dict(seed=-1), ValueError, r"seed must be in \[0, 2\^63\)"),
    (dict(seed=2**63), ValueError, r"seed must be in \[0, 2\^63\)"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(seed=True), TypeError, "seed must be an integer"),
    (dict(offset=-3), ValueError, r"offset must be in \[0, 2\^63\)"),
    (dict(offset=2**63 - 2), ValueError, r"offset \+ philox_counters"),
])
def test_bad_step_input_is_a_clear_error(over, exc, match):
    with pytest.raises(exc, match=match):
        ops.diffusion_step(**_step_args(**over))


def test_bad_add_noise_input_is_a_clear_error():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"b must be a vector of one coefficient per sample, shape \[3\]"):
        ops.add_noise(x, torch.ones(3), torch.ones(2), 0)
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        ops.add_noise(x, torch.ones(3), torch.ones(3), 0, noise=torch.zeros(3, 5))
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        ops.add_noise([[0.0]], torch.ones(1), torch.ones(1), 0)


def test_sampling_ops_are_not_differentiable():
    args = _step_args()
    x = args["x_t"].clone().requires_grad_()
    with pytest.raises(RuntimeError, match="not differentiable, but x_t requires grad"):
        ops.diffusion_step(**(args | dict(x_t=x)))
    with pytest.raises(RuntimeError, match="not differentiable, but a requires grad"):
        ops.add_noise(args["x_t"], args["a"].clone().requires_grad_(), args["b"], 0)
    with torch.no_grad():  # fine without a graph
        ops.diffusion_step(**(args | dict(x_t=x)))


@pytest.mark.parametrize("over,exc,match", [
    (dict(x=torch.zeros(2, 5)), ValueError, "x must be 3-D"),
    (dict(x_hat=torch.zeros(2, 5, 4)), ValueError, r"x_hat must have x's shape \(2, 5, 3\)"),
    (dict(x_hat=torch.zeros(2, 5, 3, dtype=torch.float64)), TypeError, "x and x_hat must share a dtype"),
    (dict(mask=torch.zeros(2, 5, 1)), ValueError, "mask must have x's shape"),
    (dict(mask=torch.zeros(2, 5, 3, dtype=torch.bool)), TypeError, "mask must have dtype"),
    (dict(score=torch.zeros(2, 6)), ValueError, r"score must be \[B, T\] = \[2, 5\]"),
    (dict(score=torch.zeros(2, 5, dtype=torch.float64)), TypeError, "x and score must share a dtype"),
    (dict(score=torch.zeros(2, 5, device="meta")), ValueError, "x and score must be on one device"),
    (dict(weight="1"), TypeError, "weight must be a real number"),
    (dict(weight=True), TypeError, "weight must be a real number"),
])
def test_bad_recon_input_is_a_clear_error(over, exc, match):
    args = dict(score=torch.zeros(2, 5), x=torch.zeros(2, 5, 3), x_hat=torch.zeros(2, 5, 3), mask=None, weight=1.0)
    args.update(over)
    with pytest.raises(exc, match=match):
        ops.recon_error_accumulate_(**args)


_XS = torch.arange(30.0).reshape(2, 5, 3)  # x, whose memory the aliased scores below share


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("over, match", [
    (dict(score=torch.zeros(1, 5).expand(2, 5)), "score is written in place but several of its elements share"),
    (dict(score=torch.zeros(10).as_strided((2, 5), (3, 1))), "score is written in place but several of its"),
    (dict(score=_XS[:, :, 0]), "score is written in place and overlaps x"),           # an aliased output
    (dict(score=_XS[:, :, 2], x_hat=_XS.flip(2)), "score is written in place and overlaps x"),
    (dict(score=_XS.view(-1)[:10].view(2, 5), mask=_XS.transpose(0, 1).contiguous().transpose(0, 1)),
     "score is written in place and overlaps x"),
])
def test_recon_error_refuses_an_overlapping_score(backend, over, match):
    # Issue #12: a score that aliases x, x_hat or mask was updated while the kernel still read those; eager
    # reads them all first, the kernels did not. Every backend refuses, with one message, before writing.
    args = dict(score=torch.zeros(2, 5), x=_XS, x_hat=torch.zeros(2, 5, 3), mask=None, weight=1.0)
    args.update(over)
    before = _XS.clone()
    with pytest.raises(ValueError, match=match):
        ops.recon_error_accumulate_(**args, backend=backend)
    assert torch.equal(_XS, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recon_error_refuses_zero_channels(backend):
    # Issue #12: the mean over zero channels is 0/0; it gave NaN scores. It is an error that says so.
    score = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"x must have at least one channel \(C >= 1\), got shape \(2, 5, 0\)"):
        ops.recon_error_accumulate_(score, torch.zeros(2, 5, 0), torch.zeros(2, 5, 0), backend=backend)
    assert (score == 0).all()


@needs_cpu_op
def test_recon_error_kernel_refuses_zero_channels_without_the_python_layer():
    with pytest.raises(ValueError, match=r"x must have at least one channel \(C >= 1\)"):
        torch.ops.genad_fast.recon_error_accumulate_(torch.zeros(2, 5), torch.zeros(2, 5, 0), torch.zeros(2, 5, 0),
                                                     None, 1.0)


@needs_cpu_op
def test_kernel_checks_hold_without_the_python_layer():
    x, eps, _, a, b, c = _data((4, 6), torch.float32)
    step = torch.ops.genad_fast.diffusion_step
    with pytest.raises(RuntimeError, match=r"a must be a vector of one coefficient per sample, shape \[4\]"):
        step(x, eps, a[:3], b, c, 0, 0, None)
    with pytest.raises(RuntimeError, match="c must have the data's dtype"):
        step(x, eps, a, b, c.double(), 0, 0, None)
    with pytest.raises(RuntimeError, match="eps must have the data's shape"):
        step(x, eps[:, :5], a, b, c, 0, 0, None)
    with pytest.raises(RuntimeError, match="unit stride on its last dimension"):
        step(x.t(), eps.t(), a, b, c, 0, 0, None)
    with pytest.raises(RuntimeError, match="seed must be in"):
        step(x, eps, a, b, c, -1, 0, None)
    with pytest.raises(RuntimeError, match="x0 must be 2-D"):
        torch.ops.genad_fast.add_noise(x[0], a, b, 0, 0, None)
    with pytest.raises(RuntimeError, match=r"score must have shape \[1, 4\], got \[3\]"):
        torch.ops.genad_fast.recon_error_accumulate_(torch.zeros(3), x[None], x[None], None, 1.0)


def test_explicit_backend_that_cannot_run_says_why():
    x, eps, _, a, b, c = _data((2, 3), torch.float32)
    with pytest.raises(BackendUnavailableError, match="cuda"):
        ops.diffusion_step(x, eps, a, b, c, 0, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        ops.add_noise(x, a, b, 0, backend="bogus")


@needs_cpu_op
def test_auto_and_environment_pick_the_backend(monkeypatch):
    x, eps, _, a, b, c = _data((3, 40), torch.float32)
    fused = ops.diffusion_step(x, eps, a, b, c, 1, 0, backend="cpu")
    eager = ops.diffusion_step(x, eps, a, b, c, 1, 0, backend="eager")
    assert torch.equal(ops.diffusion_step(x, eps, a, b, c, 1, 0), fused)  # auto -> cpu
    monkeypatch.setenv("GENAD_FAST_BACKEND", "eager")
    assert torch.equal(ops.diffusion_step(x, eps, a, b, c, 1, 0), eager)


# ---- torch.compile -------------------------------------------------------------------------------------------

def test_torch_compile_fullgraph():
    backend = "cpu" if HAS_CPU_OP else "eager"
    x0 = torch.randn(3, 16, 4)
    a, b, c = torch.rand(3), torch.rand(3), torch.rand(3)

    def sample(x0, a, b, c):
        x = ops.add_noise(x0, a, b, 7, 0, backend=backend)
        for j in range(2):
            eps = torch.tanh(x)  # a stand-in denoiser
            x = ops.diffusion_step(x, eps, a, b, c, 7, (j + 1) * ops.philox_counters(x.numel()), backend=backend)
        score = torch.zeros(3, 16)
        ops.recon_error_accumulate_(score, x0, x, None, 0.5, backend=backend)
        return x, score

    compiled = torch.compile(sample, fullgraph=True)
    for got, want in zip(compiled(x0, a, b, c), sample(x0, a, b, c)):
        torch.testing.assert_close(got, want)


# ---- the shared header's scalar path (what the CUDA kernel runs) -------------------------------------------------

@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler to build the header check")
def test_header_scalar_path_matches_reference(tmp_path):
    """for_counter + step_elem from genad/diffusion.h on the host, element by element against the oracle."""
    src = tmp_path / "check.cpp"
    src.write_text(textwrap.dedent("""
        #include <cstdio>
        #include <cstdlib>
        #include <vector>
        #include "genad/diffusion.h"
        // out[i] = step(x = i / n, eps = 1 - x, a_r = 0.5, b_r = -0.25, c_r = 1 + r / B, z) for [B, M] data.
        int main(int argc, char** argv) {
          const unsigned long long seed = std::strtoull(argv[1], nullptr, 10), offset = std::strtoull(argv[2], nullptr, 10),
                                   B = std::strtoull(argv[3], nullptr, 10), M = std::strtoull(argv[4], nullptr, 10);
          const unsigned long long n = B * M, q = genad::philox::counters(n);
          std::vector<double> out(n, -1.0);
          for (unsigned long long j = 0; j < q; ++j) {
            genad::diffusion::for_counter(seed, offset, n, q, j, [&](unsigned long long i, float z) {
              const double x = double(i) / double(n), r = double(i / M);
              out[i] = genad::diffusion::step_elem<double>(x, 1.0 - x, 0.5, -0.25, 1.0 + r / double(B), z);
            });
          }
          for (double v : out) std::printf("%.17g\\n", v);
          return 0;
        }
    """))
    exe = tmp_path / "check"
    subprocess.run(["g++", "-O2", "-std=c++20", f"-I{REPO / 'csrc' / 'include'}", str(src), "-o", str(exe)],
                   check=True)
    for seed, offset, B, M in [(0, 0, 1, 1), (3, 7, 5, 13), (2**40 + 1, 2**32 - 3, 3, 101)]:
        run = subprocess.run([str(exe), str(seed), str(offset), str(B), str(M)], check=True, capture_output=True,
                             text=True)
        got = torch.tensor([float(v) for v in run.stdout.split()], dtype=torch.float64).view(B, M)
        x = (torch.arange(B * M, dtype=torch.float64) / (B * M)).view(B, M)
        coeff = lambda v: torch.full((B,), v, dtype=torch.float64)  # noqa: E731
        c = 1.0 + torch.arange(B, dtype=torch.float64) / B
        expected = ref.diffusion_step(x, 1.0 - x, coeff(0.5), coeff(-0.25), c, seed, offset)
        torch.testing.assert_close(got, expected, **NOISE_TOL)


def test_reference_noise_is_the_philox_stream():
    x = torch.zeros(4, 3, 5, dtype=torch.float64)
    zeros, ones = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    z = ref.add_noise(x, zeros, ones, 12, 34)
    assert torch.equal(z, ref_philox.randn((4, 3, 5), 12, 34, dtype=torch.float64))
    assert math.isclose(float(z.mean()), 0.0, abs_tol=0.5)
