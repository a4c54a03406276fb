"""Issue #12 on the Triton backend (interpreter): inputs of any layout equal the reference, in-place arguments that
overlap are refused with the message of the other backends, bad step counts, zero channels and huge bandwidths."""
from __future__ import annotations

import math

import pytest
import torch

from genad_fast import ops
from genad_fast.reference import anogan as ref_anogan
from genad_fast.reference import coupling as ref_coupling
from genad_fast.reference import diffusion as ref_diffusion
from genad_fast.reference import distance as ref_distance

pytestmark = pytest.mark.triton

F64 = dict(rtol=1e-12, atol=1e-12)


def _other_layout(t: torch.Tensor) -> torch.Tensor:
    """t's values with a column stride of 2 (no view of t's memory can have unit last stride)."""
    return torch.stack([t, t], -1)[..., 0]


def _adam_args(B=4, L=5):
    return dict(z=torch.zeros(B, L), grad=torch.zeros(B, L), m=torch.zeros(B, L), v=torch.zeros(B, L),
                step=torch.zeros(B, dtype=torch.int64), active=torch.ones(B, dtype=torch.bool))


def test_residual_and_coupling_take_any_layout():
    g = torch.Generator().manual_seed(0)
    x, gx, fx, fgx = (torch.randn(4, 3, k, generator=g, dtype=torch.float64) for k in (6, 6, 5, 5))
    odd = (x[:1, :1].expand(4, 3, 6), x.transpose(0, 1).contiguous().transpose(0, 1), _other_layout(fx), fgx)
    got = ops.anogan_residual(*odd, 0.3, backend="triton")
    for a, b in zip(got, ref_anogan.anogan_residual(*(t.contiguous() for t in odd), 0.3)):
        torch.testing.assert_close(a, b, **F64)
    h = torch.randn(4, 3, 12, generator=g, dtype=torch.float64)
    got = ops.coupling_forward(_other_layout(x), _other_layout(h), 1.5, backend="triton")
    for a, b in zip(got, ref_coupling.coupling_forward(x, h, 1.5)):
        torch.testing.assert_close(a, b, **F64)


def test_distances_take_any_layout_and_huge_bandwidths():
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(9, 5, generator=g, dtype=torch.float64)
    qs, rs = q.t().contiguous().t(), _other_layout(r)
    torch.testing.assert_close(ops.kde_logpdf(qs, rs, 0.7, backend="triton"), ref_distance.kde_logpdf(q, r, 0.7))
    torch.testing.assert_close(ops.knn_distance(qs, rs, 3, backend="triton"), ref_distance.knn_distance(q, r, 3))
    for h in (1e160, 1e300):  # h² overflows: the normaliser is taken as log 2π + 2·log h
        want = torch.full((6,), -2.5 * (math.log(2.0 * math.pi) + 2.0 * math.log(h)), dtype=torch.float64)
        torch.testing.assert_close(ops.kde_logpdf(q, r, h, backend="triton"), want, rtol=1e-6, atol=0)


def test_diffusion_ops_take_a_channel_slice():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, 5, dtype=torch.float64, generator=g)[:, :, :3]
    eps = torch.randn(4, 3, 6, dtype=torch.float64, generator=g).transpose(1, 2)
    noise = torch.randn(4, 6, 3, dtype=torch.float64, generator=g)
    a, b, c = (torch.rand(4, dtype=torch.float64, generator=g) for _ in range(3))
    out = ops.diffusion_step(x, eps, a, b, c, 3, 1, noise, backend="triton")
    torch.testing.assert_close(out, ref_diffusion.diffusion_step(x.contiguous(), eps.contiguous(), a, b, c, 3, 1,
                                                                 noise), **F64)
    out = ops.add_noise(x, a, b, 3, 1, backend="triton")
    torch.testing.assert_close(out, ref_diffusion.add_noise(x.contiguous(), a, b, 3, 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("change, match", [
    (dict(z=torch.zeros(1, 5).expand(4, 5)), "z is written in place but several of its elements share"),
    (dict(step=torch.zeros(1, dtype=torch.int64).expand(4)), "step is written in place but several of its"),
    (dict(m=torch.zeros(4, 12)[:, :5], v=None), "m is written in place and overlaps v"),
])
def test_masked_adam_refuses_overlapping_arguments(change, match):
    args = _adam_args()
    args.update(change)
    if "v" in change:
        args["v"] = args["m"]
    with pytest.raises(ValueError, match=match):
        ops.masked_adam_(**args, lr=0.1, backend="triton")


@pytest.mark.parametrize("bad", [-1, 2**63 - 1])
def test_masked_adam_refuses_step_counts_out_of_range(bad):
    args = _adam_args()
    args["step"][1] = bad
    with pytest.raises(ValueError, match=r"step must hold update counts in \[0, 2\^63 - 1\)"):
        ops.masked_adam_(**args, lr=0.1, backend="triton")
    assert (args["z"] == 0).all() and (args["step"][[0, 2, 3]] == 0).all()


def test_recon_error_refuses_aliased_scores_and_zero_channels():
    x = torch.arange(30.0).reshape(2, 5, 3)
    with pytest.raises(ValueError, match="score is written in place and overlaps x"):
        ops.recon_error_accumulate_(x[:, :, 0], x, torch.zeros(2, 5, 3), backend="triton")
    with pytest.raises(ValueError, match="score is written in place but several of its elements share"):
        ops.recon_error_accumulate_(torch.zeros(1, 5).expand(2, 5), x, x, backend="triton")
    with pytest.raises(ValueError, match=r"x must have at least one channel \(C >= 1\)"):
        ops.recon_error_accumulate_(torch.zeros(2, 5), x[:, :, :0], x[:, :, :0], backend="triton")
