"""Spec of ``anogan_residual`` (AnoGAN, Schlegl et al. 2017; f-AnoGAN 2019): per row,
loss = (1−λ)·Σ|x − G(z)| + λ·Σ|f(x) − f(G(z))|, with the sub-gradients grad_gx = −(1−λ)·sign(x − gx) and
grad_fgx = −λ·sign(fx − fgx) (sign 0 at 0, NaN at NaN); registered autograd for the loss.
Oracle: :func:`genad_fast.reference.anogan.anogan_residual`.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.reference import anogan as ref
from op_specs.compare import EXACT, F32, F64, Tolerances, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, sized

OPS = ("anogan_residual",)
LAMBDAS = (0.0, 0.1, 1.0)
# (lead, p, f): empty, one element, odd widths, a batch shape, no features; (20, 70, 130): several K blocks of
# the Triton kernel; (33, 64, 128): the CPU kernel's vector loops; on a GPU, thousands of rows and a wide image.
SHAPES = [((0,), 5, 3), ((1,), 1, 1), ((7,), 13, 5), ((2, 3), 9, 40), ((4,), 17, 0), ((20,), 70, 130),
          sized(((33,), 64, 128), MEDIUM), sized(((4096,), 64, 128), LARGE), sized(((1000,), 1601, 37), LARGE)]
# (lead, p, f) for float64 gradcheck: 5 the CPU kernel's scalar tail; 19 and 40 its vector loop (each element is
# two kernel calls: the interpreter takes the smallest).
GRADCHECK = [((4,), 5, 7), sized(((4,), 19, 7), MEDIUM), sized(((3,), 40, 43), LARGE)]

# The loss: sums of |differences| over p + f columns in another order than torch's: 1e-5 (float32), 1e-12
# (float64). The gradients are ±(1−λ), ±λ or 0: no rounding to differ in, so they are compared exactly (EXACT).
LOSS_TOL = Tolerances({F32: tol(1e-5), F64: tol(1e-12)})
# The loss's backward (grad_out · the op's sub-gradients) against the oracle's autograd, float64.
BACKWARD_TOL = tol(1e-14)
# CPU runner only: Hypothesis, float64 loss over random shapes and scales.
HYPOTHESIS_TOL = tol(1e-12)


def inputs(lead, p, f, dtype, device="cpu", seed=0, gap=0.0):
    """x, gx [*lead, p] and fx, fgx [*lead, f]; gap > 0 keeps every |x − gx| and |fx − fgx| >= gap (no ties)."""
    g = torch.Generator().manual_seed(seed)

    def pair(k):
        a = torch.randn(*lead, k, generator=g, dtype=dtype)
        d = torch.randn(*lead, k, generator=g, dtype=dtype)
        d = d + gap * torch.where(d >= 0, 1.0, -1.0).to(dtype)
        return a.to(device), (a - d).to(device)

    x, gx = pair(p)
    fx, fgx = pair(f)
    return x, gx, fx, fgx


def residual(target: Target, *args):
    return ops.anogan_residual(*args, backend=target.backend)


def check_matches_reference(target: Target, dtype, lead, p, f, lam):
    x, gx, fx, fgx = inputs(lead, p, f, dtype, target.dev)
    loss, grad_gx, grad_fgx = residual(target, x, gx, fx, fgx, lam)
    loss_ref, grad_gx_ref, grad_fgx_ref = ref.anogan_residual(x, gx, fx, fgx, lam)
    assert loss.shape == lead and grad_gx.shape == x.shape and grad_fgx.shape == fx.shape
    assert loss.dtype == grad_gx.dtype == grad_fgx.dtype == dtype and loss.device == x.device
    close(loss, loss_ref, LOSS_TOL(target, dtype))
    close(grad_gx, grad_gx_ref, EXACT)
    close(grad_fgx, grad_fgx_ref, EXACT)


def check_values_by_hand(target: Target):
    x = torch.tensor([[1.0, 2.0, 3.0]], device=target.dev)
    gx = torch.tensor([[0.0, 2.0, 5.0]], device=target.dev)   # differences 1, 0 (a tie), −2
    fx = torch.tensor([[1.0, -1.0]], device=target.dev)
    fgx = torch.tensor([[-1.0, -1.0]], device=target.dev)     # differences 2, 0
    loss, grad_gx, grad_fgx = (t.cpu() for t in residual(target, x, gx, fx, fgx, 0.25))
    torch.testing.assert_close(loss, torch.tensor([0.75 * 3 + 0.25 * 2]))
    close(grad_gx, torch.tensor([[-0.75, 0.0, 0.75]]), EXACT)
    close(grad_fgx, torch.tensor([[-0.25, 0.0]]), EXACT)


def check_float64_weights_are_not_rounded(target: Target):
    """λ = 0.3 is not a float32 number: a float64 kernel must use it exactly."""
    x, gx, fx, fgx = inputs((3,), 4, 5, F64, target.dev)
    _, grad_gx, grad_fgx = residual(target, x, gx, fx, fgx, 0.3)
    assert set(grad_gx.abs().unique().tolist()) == {0.7} and set(grad_fgx.abs().unique().tolist()) == {0.3}


def check_column_slices(target: Target):
    x, gx, fx, fgx = inputs((target.pick(20, 30, 3000),), 50, 70, F32, target.dev, seed=3)
    xs, gxs, fxs, fgxs = x[:, 3:20], gx[:, 10:27], fx[:, :41], fgx[:, 29:]
    assert not any(t.is_contiguous() for t in (xs, gxs, fxs, fgxs))
    out = residual(target, xs, gxs, fxs, fgxs, 0.1)
    expected = ref.anogan_residual(xs.contiguous(), gxs.contiguous(), fxs.contiguous(), fgxs.contiguous(), 0.1)
    close(out, expected, LOSS_TOL(target, F32))


def check_any_layout(target: Target):
    """Issue #12: leading dims that do not merge, a column stride of 2, a broadcast sample: any layout is accepted
    (a view where the kernel can read it, else one copy)."""
    x, gx, fx, fgx = inputs((4, 3), 6, 5, F64, target.dev, gap=0.1)
    odd = [t.transpose(0, 1).contiguous().transpose(0, 1) for t in (x, gx)]
    odd += [torch.stack([t, t], -1)[..., 0] for t in (fx, fgx)]
    odd[0] = x[:1, :1].expand(4, 3, 6)
    got = residual(target, *odd, 0.3)
    for g, w in zip(got, ref.anogan_residual(*(t.contiguous() for t in odd), 0.3)):
        close(g, w, LOSS_TOL(target, F64))


def check_nan_and_inf_propagate(target: Target, dtype, width):
    """width 40: the CPU kernel's vector loop and scalar tail; 70: a second K block of the Triton kernel."""
    x, gx, fx, fgx = inputs((5,), width, width, dtype, target.dev, gap=0.1)
    x[0, 2] = float("nan")                         # row 0: NaN loss, NaN gradient at (0, 2) only
    fgx[1, 3] = float("nan")                       # row 1: NaN loss (even with λ = 0: 0·NaN), NaN feature gradient
    fgx[1, width - 4] = float("nan")
    x[2, 1] = float("inf")                         # row 2: inf loss, finite gradient −(1−λ)
    x[3, 0], gx[3, 0] = float("inf"), float("inf")  # row 3: inf − inf = NaN
    for lam in (0.0, 0.1):
        loss, grad_gx, grad_fgx = (t.cpu() for t in residual(target, x, gx, fx, fgx, lam))
        assert torch.isnan(loss[0]) and torch.isnan(grad_gx[0, 2])
        assert torch.isfinite(torch.cat([grad_gx[0, :2], grad_gx[0, 3:]])).all() and torch.isfinite(grad_fgx[0]).all()
        assert torch.isnan(loss[1]) and torch.isnan(grad_fgx[1, 3]) and torch.isnan(grad_fgx[1, width - 4])
        assert torch.isfinite(grad_gx[1]).all()
        assert torch.isposinf(loss[2]) and grad_gx[2, 1] == -(1 - lam)
        assert torch.isnan(loss[3]) and torch.isnan(grad_gx[3, 0])
        assert torch.isfinite(loss[4]) and torch.isfinite(grad_gx[4]).all() and torch.isfinite(grad_fgx[4]).all()


def check_ties_give_zero_gradient(target: Target):
    g = torch.Generator().manual_seed(4)
    x, fx = torch.randn(3, 37, generator=g).to(target.dev), torch.randn(3, 19, generator=g).to(target.dev)
    loss, grad_gx, grad_fgx = residual(target, x, x.clone(), fx, fx.clone(), 0.1)
    assert (loss == 0).all() and (grad_gx == 0).all() and (grad_fgx == 0).all()


def check_gradients_are_autograd_of_the_loss(target: Target, dtype, lam):
    """Away from ties, grad_gx / grad_fgx are d loss / d gx and d loss / d fgx of the plain loss, exactly."""
    x, gx, fx, fgx = inputs((11,), 23, 37, dtype, target.dev, gap=1e-3)
    _, grad_gx, grad_fgx = residual(target, x, gx, fx, fgx, lam)
    gx_, fgx_ = gx.clone().requires_grad_(True), fgx.clone().requires_grad_(True)
    loss = (1 - lam) * (x - gx_).abs().sum(1) + lam * (fx - fgx_).abs().sum(1)
    auto_gx, auto_fgx = torch.autograd.grad(loss.sum(), (gx_, fgx_))
    close(grad_gx, auto_gx, EXACT)
    close(grad_fgx, auto_fgx, EXACT)


def check_loss_backward_matches_reference(target: Target):
    x, gx, fx, fgx = inputs((2, 9), 21, 13, F64, target.dev, seed=5, gap=1e-3)
    w = torch.randn(2, 9, dtype=F64, generator=torch.Generator().manual_seed(6)).to(target.dev)
    grads = []
    for fn in (lambda *a: residual(target, *a, 0.3), lambda *a: ref.anogan_residual(*a, 0.3)):
        leaves = [t.clone().requires_grad_(True) for t in (x, gx, fx, fgx)]
        (fn(*leaves)[0] * w).sum().backward()
        grads.append([t.grad for t in leaves])
    for got, expected in zip(*grads):
        close(got, expected, BACKWARD_TOL)


def check_gradcheck(target: Target, lead, p, f):
    leaves = [t.requires_grad_(True) for t in inputs(lead, p, f, F64, target.dev, seed=2, gap=1e-2)]
    assert torch.autograd.gradcheck(lambda *a: residual(target, *a, 0.1)[0], leaves)


def opcheck_samples(target: Target) -> dict:
    """Plain, requiring grad (the autograd registration), column slices with no features."""
    x, gx, fx, fgx = inputs((9,), 7, 12, F32, target.dev, gap=1e-3)
    leaves = [t.clone().requires_grad_(True) for t in (x, gx, fx, fgx)]
    return {"anogan_residual": [(x, gx, fx, fgx, 0.1), (*leaves, 0.25),
                                (x[:, 1:5], gx[:, :4], fx[:, :0], fgx[:, :0], 1.0)]}


OPCHECK = ("anogan_residual",)
