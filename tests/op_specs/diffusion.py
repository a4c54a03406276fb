"""Spec of the diffusion sampling ops (DDPM, Ho et al. 2020; DDIM, Song et al. 2021): ``add_noise`` and
``diffusion_step``, per-sample coefficients a, b, c [B] over data [B, ...]:

    add_noise:       x_t = a_i·x0 + b_i·z
    diffusion_step:  x_s = a_i·x_t + b_i·eps + c_i·z

z is the Philox stream at (seed, offset) (:mod:`op_specs.philox`) or an explicit ``noise`` tensor.
Oracle: :mod:`genad_fast.reference.diffusion`. (``recon_error_accumulate_``: :mod:`op_specs.recon_error`.)
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.reference import diffusion as ref
from op_specs.compare import F32, F64, Tolerances, assert_terms_close, close, tol
from op_specs.philox import BIG
from op_specs.targets import LARGE, MEDIUM, Target, cpu_backend, sized

OPS = ("add_noise", "diffusion_step")
# Empty batches and empty samples, one element, single columns, odd widths, a batch shape; (2, 2100): more than
# one Triton program; BIG: the benchmark's shape on a GPU.
SHAPES = [(0, 5), (1, 1), (1, 9), (4, 1), (7, 13), (5, 0), (3, 5, 4), (2, 1001), (2, 2100), sized(BIG, LARGE)]
# (1, 1): seed 1 becomes a constexpr under Triton's specialisation; the last crosses the counter's high word.
SEEDS = [(0, 0), (1, 1), (7, 3), (2**40 + 1, 2**32 - 5)]
# The in-kernel noise is exactly ops.randn of the same backend: (5, 301) several Triton programs, (33, 257) many
# CPU blocks.
STREAM_SHAPES = [(1, 1), (7, 13), (3, 5, 4), (5, 301), sized((33, 257), MEDIUM), sized(BIG, LARGE)]

# Explicit noise: the same three products and two sums as the oracle, up to fused multiply-adds, i.e. a few ulps
# of the largest term (not of the possibly cancelled result): checked with assert_terms_close, 4 ulps.
TERMS_ULPS = 4.0
# Strided inputs with explicit noise, compared with assert_close: 1e-6 in float32 (a few ulps of terms <= ~5),
# 1e-13 in float64.
TOL = Tolerances({F32: tol(1e-6), F64: tol(1e-13)})
# In-kernel noise: the float32 normals of a fused backend (SLEEF log, its own sin/cos; CUDA's libm; libdevice;
# numpy in the interpreter) and of the oracle (torch's) may differ in the last bits; |z| < 5.7, coefficients <= 1,
# so a few float32 ulps of z, in either dtype.
NOISE_TOL = tol(1e-5, 4e-6)


def hypothesis_tols(scale: float) -> tuple[dict, dict]:
    """CPU runner's Hypothesis test, data scaled by ``scale``: (in-kernel noise, explicit noise) tolerances —
    NOISE_TOL and TOL's float32 entry with the absolute part scaled with the data."""
    return tol(1e-5, 4e-6 * (1 + scale)), tol(1e-6, 1e-6 * scale)


def data(shape, dtype, device="cpu", seed=0):
    """x, eps, noise [shape] standard normal; a, b, c [B] uniform in [-0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    x, eps, noise = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))
    a, b, c = (torch.rand(shape[0], generator=g, dtype=dtype) * 2 - 0.5 for _ in range(3))
    return [t.to(device) for t in (x, eps, noise, a, b, c)]


def _col(v, like):
    return v.view(-1, *([1] * (like.dim() - 1)))


def step(target: Target, *args, **kwargs):
    return ops.diffusion_step(*args, backend=target.backend, **kwargs)


def add_noise(target: Target, *args, **kwargs):
    return ops.add_noise(*args, backend=target.backend, **kwargs)


def check_in_kernel_noise_matches_reference(target: Target, dtype, shape, seed, offset):
    x, eps, _, a, b, c = data(shape, dtype, target.dev)
    out = step(target, x, eps, a, b, c, seed, offset)
    assert out.device == x.device and out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    close(out, ref.diffusion_step(x, eps, a, b, c, seed, offset), NOISE_TOL)
    out = add_noise(target, x, a, b, seed, offset)
    assert out.shape == x.shape and out.dtype == dtype
    close(out, ref.add_noise(x, a, b, seed, offset), NOISE_TOL)


def check_explicit_noise_matches_reference(target: Target, dtype, shape):
    x, eps, noise, a, b, c = data(shape, dtype, target.dev, seed=1)
    out = step(target, x, eps, a, b, c, 3, 0, noise)
    assert out.device == x.device and out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    scale = (_col(a, x) * x).abs() + (_col(b, x) * eps).abs() + (_col(c, x) * noise).abs()
    assert_terms_close(out, ref.diffusion_step(x, eps, a, b, c, 3, 0, noise), scale, TERMS_ULPS)
    out = add_noise(target, x, a, b, 3, 0, noise=noise)
    scale = (_col(a, x) * x).abs() + (_col(b, x) * noise).abs()
    assert_terms_close(out, ref.add_noise(x, a, b, 3, 0, noise), scale, TERMS_ULPS)


def check_in_kernel_noise_is_the_stream(target: Target, dtype, shape):
    """The fused kernels draw exactly ops.randn(x.shape, seed, offset) of the same backend, bit for bit."""
    x, eps, _, a, b, c = data(shape, dtype, target.dev, seed=2)
    seed, offset = 2**40 + 9, 2**32 - 70
    z = ops.randn(shape, seed, offset, dtype=dtype, device=target.dev, backend=target.backend)
    assert torch.equal(step(target, x, eps, a, b, c, seed, offset), step(target, x, eps, a, b, c, seed, offset, z))
    assert torch.equal(add_noise(target, x, a, b, seed, offset), add_noise(target, x, a, b, seed, offset, z))
    zeros = torch.zeros(shape[0], dtype=dtype, device=target.dev)  # a = b = 0, c = 1 leaves z itself
    ones = torch.ones(shape[0], dtype=dtype, device=target.dev)
    assert torch.equal(step(target, x, eps, zeros, zeros, ones, seed, offset), z)
    assert torch.equal(add_noise(target, x, zeros, ones, seed, offset), z)


def check_matches_cpu_kernel(target: Target, dtype, shape) -> float:
    """The same step on the CPU (C++ kernel, or eager without it) for the same seed: the noise contract across
    backends. Returns the largest difference."""
    x, eps, _, a, b, c = data(shape, dtype, target.dev, seed=4)
    out = step(target, x, eps, a, b, c, 2**41 + 3, 17).cpu()
    expected = ops.diffusion_step(*(t.cpu() for t in (x, eps, a, b, c)), 2**41 + 3, 17, backend=cpu_backend())
    close(out, expected, NOISE_TOL)
    return float((out - expected).abs().max()) if out.numel() else 0.0


def check_noise_depends_on_position_only(target: Target):
    """Drawing again with offset advanced by philox_counters gives fresh noise; the same (seed, offset) repeats."""
    x, _, _, a, b, _ = data((6, 50), F32, target.dev)
    q = ops.philox_counters(x.numel())
    first = add_noise(target, x, a, b, 5, 0)
    assert torch.equal(first, add_noise(target, x, a, b, 5, 0))
    assert not torch.allclose(first, add_noise(target, x, a, b, 5, q))
    assert not torch.allclose(first, add_noise(target, x, a, b, 6, 0))


def check_strided_batches(target: Target, dtype, use_noise):
    """Row-strided data, a strided eps and strided coefficient vectors are read in place; then eps as one sample
    broadcast over the batch (row stride 0)."""
    rows = target.pick(12, 12, 600)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(rows, 40, dtype=dtype, generator=g).to(target.dev)[1::2, 5:30]     # row stride 80
    eps = torch.randn(rows // 2, 3, 25, dtype=dtype, generator=g).to(target.dev)[:, 1]  # row stride 75
    noise = torch.randn(rows // 2, 31, dtype=dtype, generator=g).to(target.dev)[:, 6:] if use_noise else None
    a, b, c = (torch.rand(rows, dtype=dtype, generator=g).to(target.dev)[::2] for _ in range(3))
    assert not x.is_contiguous() and not eps.is_contiguous() and not a.is_contiguous()
    tolerance = TOL(target, dtype) if use_noise else NOISE_TOL
    nz = None if noise is None else noise.contiguous()
    dense = [t.contiguous() for t in (a, b, c)]
    for e in (eps, eps[:1].expand_as(eps)):
        out = step(target, x, e, a, b, c, 11, 2, noise)
        close(out, ref.diffusion_step(x.contiguous(), e.contiguous(), *dense, 11, 2, nz), tolerance)
    out = add_noise(target, x, a, b, 11, 2, noise)
    close(out, ref.add_noise(x.contiguous(), *dense[:2], 11, 2, nz), tolerance)


def check_a_sample_broadcast_over_the_batch(target: Target):
    """K draws of one series: x0 expanded over the batch (row stride 0), as DiffusionDetector noises it."""
    c, t = target.pick(3, 3, 25), target.pick(20, 20, 4096)
    x = torch.randn(1, c, t, generator=torch.Generator().manual_seed(6)).to(target.dev).expand(4, c, t)
    a, b = torch.full((4,), 0.8, device=target.dev), torch.full((4,), 0.6, device=target.dev)
    out = add_noise(target, x, a, b, 9, 4)
    close(out, ref.add_noise(x.contiguous(), a, b, 9, 4), NOISE_TOL)
    assert not torch.allclose(out[0], out[1])  # each draw has its own noise


def check_any_layout(target: Target, dtype, use_noise):
    """Issue #12: a channel slice of a [B, W, C] window batch, a transpose, a broadcast noise sample: any layout is
    accepted (a view where the kernel reads it, else one copy) and the result is the reference's."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, 5, dtype=dtype, generator=g).to(target.dev)[:, :, :3]           # a channel slice
    eps = torch.randn(4, 3, 6, dtype=dtype, generator=g).to(target.dev).transpose(1, 2)   # a transpose
    noise = torch.randn(4, 6, 3, dtype=dtype, generator=g).to(target.dev) if use_noise else None
    if use_noise:
        noise = noise[:1].expand(4, 6, 3)                                                 # one sample broadcast
    a, b, c = (torch.rand(4, dtype=dtype, generator=g).to(target.dev) for _ in range(3))
    tolerance = TOL(target, dtype) if use_noise else NOISE_TOL
    nz = None if noise is None else noise.contiguous()
    out = step(target, x, eps, a, b, c, 11, 2, noise)
    assert out.shape == x.shape and out.is_contiguous()
    close(out, ref.diffusion_step(x.contiguous(), eps.contiguous(), a, b, c, 11, 2, nz), tolerance)
    for data_in in (eps, x):
        out = add_noise(target, data_in, a, b, 11, 2, noise)
        close(out, ref.add_noise(data_in.contiguous(), a, b, 11, 2, nz), tolerance)


def check_coefficients_are_per_sample(target: Target):
    B, M = 5, 17
    x, eps, noise, _, _, _ = data((B, M), F64, target.dev)
    a = torch.arange(B, dtype=F64, device=target.dev)
    b = -a / 3
    c = torch.tensor([0.0, 1.0, 0.5, 2.0, 0.1], dtype=F64, device=target.dev)
    out = step(target, x, eps, a, b, c, 0, 0, noise)
    for i in range(B):
        close(out[i], a[i] * x[i] + b[i] * eps[i] + c[i] * noise[i], TOL(target, F64))


def check_float_coefficients_are_cast(target: Target):
    """float64 coefficients with float32 data: cast to the data's dtype, as the oracle does."""
    x, eps, noise, a, b, c = data((3, 8), F32, target.dev)
    out = step(target, x, eps, a.double(), b.double(), c.double(), 0, 0, noise)
    close(out, ref.diffusion_step(x, eps, a, b, c, 0, 0, noise), TOL(target, F32))
    assert out.dtype == F32


def check_nan_and_inf_propagate(target: Target, dtype):
    x, eps, noise, a, b, c = data((4, 37), dtype, target.dev)
    x[0, 3] = float("nan")
    eps[1, 30] = float("inf")
    noise[2, 0] = float("-inf")
    a[3] = float("nan")
    c[2] = 0.0  # 0 · inf = NaN, as in the oracle
    out = step(target, x, eps, a, b, c, 0, 0, noise)
    scale = (_col(a, x) * x).abs() + (_col(b, x) * eps).abs() + (_col(c, x) * noise).abs()
    assert_terms_close(out, ref.diffusion_step(x, eps, a, b, c, 0, 0, noise), scale, TERMS_ULPS)
    out = out.cpu()
    assert out[0, 3].isnan() and out[1, 30].isinf() and out[2, 0].isnan() and out[3].isnan().all()
    assert out[:3].isfinite().sum() == 3 * 37 - 3
    out = add_noise(target, x, a, b, 4, 0).cpu()  # and with in-kernel noise
    assert out[0, 3].isnan() and out[3].isnan().all() and out[1:3].isfinite().all()


def opcheck_samples(target: Target) -> dict:
    """Per dtype: in-kernel noise (offset above 2^32), explicit noise, a column slice, an empty batch."""
    samples = {"diffusion_step": [], "add_noise": []}
    for dtype in (F32, F64):
        x, eps, noise, a, b, c = data((5, 12), dtype, target.dev)
        strided = torch.randn(5, 20, dtype=dtype, generator=torch.Generator().manual_seed(1)).to(target.dev)[:, 4:16]
        for args in [(x, eps, a, b, c, 3, 2**33, None), (x, eps, a, b, c, 3, 0, noise),
                     (strided, eps, a, b, c, 1, 0, None), (x[:0], eps[:0], a[:0], b[:0], c[:0], 0, 0, None)]:
            n = args[0].shape[0]
            samples["diffusion_step"].append(args)
            samples["add_noise"].append((args[0], a[:n], b[:n], *args[5:]))
    return samples


OPCHECK = ("diffusion_step", "add_noise")
