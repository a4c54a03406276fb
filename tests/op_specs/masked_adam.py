"""Spec of ``masked_adam_``: one Adam step (Kingma & Ba 2015, torch.optim.Adam's order of operations) on the
rows of z [B, L] (any leading shape) whose ``active`` flag is set, in place on z, m, v and the per-row step counts;
inactive rows are left untouched, whatever their gradient holds.
Oracle: :func:`genad_fast.reference.anogan.masked_adam_`, and ``torch.optim.Adam`` row by row.
"""
from __future__ import annotations

import torch

from genad_fast import ops
from genad_fast.reference import anogan as ref
from op_specs.compare import F32, F64, Tolerances, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, sized

OPS = ("masked_adam_",)
# Empty batch and empty rows, one element, odd widths, a batch shape; (20, 70): several Triton blocks;
# (40, 67): the CPU kernel's vector loop; on a GPU, thousands of rows.
SHAPES = [(0, 4), (1, 1), (7, 13), (20, 70), (2, 3, 9), (5, 0), sized((40, 67), MEDIUM), sized((4096, 32), LARGE)]
BETA1 = (0.9, 0.3)  # 0.3: torch's lerp takes its other branch (weight >= 0.5)

# The fused kernels follow torch's order of operations; float32 may still differ by an ulp per step (fused
# multiply-adds), accumulated over the iterations of a check.
TOL = Tolerances({F32: tol(2e-6), F64: tol(1e-12, 1e-13)})
# CPU runner only: Hypothesis, float64 over random hyper-parameters and up to 4 steps.
HYPOTHESIS_TOL = tol(1e-12)


def state(shape, dtype, device="cpu", seed=0):
    """z standard normal, m = v = 0, step = 0 per row."""
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)
    return z, torch.zeros_like(z), torch.zeros_like(z), torch.zeros(shape[:-1], dtype=torch.int64, device=device)


def adam(target: Target, *args, **hyper):
    return ops.masked_adam_(*args, backend=target.backend, **hyper)


def run(backend: str, shape, dtype, iterations, device="cpu", seed=0, **hyper):
    """z, m, v, step after ``iterations`` masked steps with a fresh random grad and active mask each time."""
    z, m, v, step = state(shape, dtype, device, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(iterations):
        grad = torch.randn(shape, generator=g, dtype=dtype).to(device)
        active = (torch.rand(shape[:-1], generator=g) < 0.6).to(device)
        ops.masked_adam_(z, grad, m, v, step, active, backend=backend, **hyper)
    return z, m, v, step


def check_matches_reference(target: Target, dtype, shape, beta1):
    hyper = dict(lr=0.02, beta1=beta1, beta2=0.99, eps=1e-6)
    got = run(target.backend, shape, dtype, 6, target.dev, **hyper)
    expected = run("eager", shape, dtype, 6, target.dev, **hyper)
    for a, b in zip(got, expected):
        close(a, b, TOL(target, dtype))


def check_matches_torch_adam_row_by_row(target: Target, dtype, beta1):
    """Each row is a parameter of its own with its own torch.optim.Adam, stepped only when the row is active, so
    rows that sat out some iterations have their own (smaller) step counts."""
    B, L, iterations = 9, 37, 8
    hyper = dict(lr=0.05, beta1=beta1, beta2=0.99, eps=1e-6)
    z, m, v, step = state((B, L), dtype, target.dev, seed=4)
    params = [torch.nn.Parameter(z[i].clone()) for i in range(B)]
    optims = [torch.optim.Adam([p], lr=hyper["lr"], betas=(beta1, hyper["beta2"]), eps=hyper["eps"])
              for p in params]
    g = torch.Generator().manual_seed(7)
    masks = [torch.rand(B, generator=g) < 0.6 for _ in range(iterations)]
    masks[0][:] = False          # nobody moves at first
    for mask in masks[1:]:
        mask[0] = False          # row 0 never moves
    for mask in masks:
        grad = torch.randn(B, L, generator=g, dtype=dtype).to(target.dev)
        adam(target, z, grad, m, v, step, mask.to(target.dev), **hyper)
        for i in torch.nonzero(mask).flatten().tolist():
            params[i].grad = grad[i].clone()
            optims[i].step()
    counts = torch.stack(masks).sum(0)
    assert counts[0] == 0 and len(set(counts.tolist())) > 2          # the check covers differing step counts
    torch.testing.assert_close(step.cpu(), counts)
    close(z, torch.stack([p.detach() for p in params]), TOL(target, dtype))
    for i, opt in enumerate(optims):
        s = opt.state[params[i]]
        if not s:
            assert step[i] == 0 and (m[i] == 0).all() and (v[i] == 0).all()
            continue
        assert int(s["step"]) == step[i]
        close(m[i], s["exp_avg"], TOL(target, dtype))
        close(v[i], s["exp_avg_sq"], TOL(target, dtype))


def check_column_slices(target: Target):
    """z, m and v as column slices of one [B, 3L] state matrix, grad as a slice, step as a strided 1-D view,
    updated in place; row 0 is never active and its NaN gradient must not leak."""
    B, L = target.pick(9, 12, 1200), 21
    g = torch.Generator().manual_seed(9)
    st = torch.randn(B, 3 * L, generator=g).to(target.dev)
    st[:, L:] = 0
    steps = torch.zeros(B, 2, dtype=torch.int64, device=target.dev)
    expected = [st[:, :L].clone(), torch.zeros(B, L, device=target.dev), torch.zeros(B, L, device=target.dev),
                torch.zeros(B, dtype=torch.int64, device=target.dev)]
    for _ in range(4):
        grad = torch.randn(B, L + 5, generator=g).to(target.dev)
        grad[0] = float("nan")
        active = (torch.rand(B, generator=g) < 0.5).to(target.dev)
        active[0] = False
        adam(target, st[:, :L], grad[:, 2:L + 2], st[:, L:2 * L], st[:, 2 * L:], steps[:, 1], active, lr=0.1)
        ref.masked_adam_(expected[0], grad[:, 2:L + 2].contiguous(), *expected[1:], active, lr=0.1)
    for got, want in zip((st[:, :L], st[:, L:2 * L], st[:, 2 * L:], steps[:, 1]), expected):
        close(got, want, TOL(target, F32))
    assert (steps[:, 0] == 0).all() and steps[0, 1] == 0 and torch.isfinite(st[0]).all()


def check_disjoint_column_slices_of_one_buffer(target: Target):
    """The exact overlap test must not refuse what the kernels support: z | m | v side by side in one matrix,
    grad read from the same matrix, step as every other entry of an int64 vector."""
    st = torch.zeros(4, 20, device=target.dev)
    g = torch.Generator().manual_seed(10)
    st[:, :5] = torch.randn(4, 5, generator=g).to(target.dev)
    st[:, 15:] = torch.randn(4, 5, generator=g).to(target.dev)
    steps = torch.zeros(8, dtype=torch.int64, device=target.dev)
    ones = torch.ones(4, dtype=torch.bool, device=target.dev)
    expected = [st[:, :5].clone(), torch.zeros(4, 5, device=target.dev), torch.zeros(4, 5, device=target.dev),
                torch.zeros(4, dtype=torch.int64, device=target.dev)]
    ref.masked_adam_(expected[0], st[:, 15:].clone(), *expected[1:], ones, lr=0.1)
    adam(target, st[:, :5], st[:, 15:], st[:, 5:10], st[:, 10:15], steps[::2], ones, lr=0.1)
    for got, want in zip((st[:, :5], st[:, 5:10], st[:, 10:15], steps[::2]), expected):
        close(got, want, TOL(target, F32))
    assert (steps[1::2] == 0).all()


def check_inactive_rows_untouched(target: Target):
    z, m, v, step = state((6, 35), F32, target.dev)
    m += 0.5
    v += 0.25
    step += torch.arange(6, device=target.dev)
    before = [t.clone() for t in (z, m, v, step)]
    grad = torch.randn(6, 35, generator=torch.Generator().manual_seed(3)).to(target.dev)
    grad[1] = float("nan")       # an inactive row's NaN gradient must not leak into anything
    active = torch.tensor([True, False, True, False, False, True], device=target.dev)
    adam(target, z, grad, m, v, step, active, lr=0.1)
    for now, then in zip((z, m, v, step), before):
        assert torch.equal(now[~active], then[~active])
        assert not torch.equal(now[active], then[active])
    assert torch.equal(step, before[3] + active.long())


def check_nan_propagates(target: Target, width):
    """width 40: the CPU kernel's vector loop as well as its scalar tail."""
    z, m, v, step = state((3, width), F64, target.dev)
    grad = torch.randn(3, width, dtype=F64, generator=torch.Generator().manual_seed(2)).to(target.dev)
    grad[0, 2] = float("nan")
    grad[1, 1] = float("inf")                 # m = inf, v = inf: the update is inf/inf = NaN
    adam(target, z, grad, m, v, step, torch.ones(3, dtype=torch.bool, device=target.dev))
    z, m, v = z.cpu(), m.cpu(), v.cpu()
    assert torch.isnan(z[0, 2]) and torch.isnan(m[0, 2]) and torch.isnan(v[0, 2])
    assert torch.isfinite(torch.cat([z[0, :2], z[0, 3:]])).all()
    assert torch.isnan(z[1, 1]) and torch.isposinf(m[1, 1]) and torch.isposinf(v[1, 1])
    assert torch.isfinite(z[2]).all()


def check_zero_lr_only_moves_the_state(target: Target):
    z, m, v, step = state((4, 10), F32, target.dev)
    z0 = z.clone()
    ones = torch.ones(4, dtype=torch.bool, device=target.dev)
    adam(target, z, torch.ones(4, 10, device=target.dev), m, v, step, ones, lr=0.0)
    assert torch.equal(z, z0) and (step == 1).all()
    torch.testing.assert_close(m.cpu(), torch.full((4, 10), 0.1))


def opcheck_samples(target: Target) -> dict:
    """Moments and step counts under way, a mask; column slices of the state; m, v in (0, 1) with counts 0..5."""
    dev = target.dev
    g = torch.Generator().manual_seed(12)
    z, m, v, step = state((9, 7), F32, dev)
    m += 0.1
    v += 0.2
    step += 3
    active = torch.tensor([True, False] * 4 + [True], device=dev)
    z6, m6, v6 = (torch.rand(6, 5, generator=g).to(dev) for _ in range(3))
    active6 = torch.tensor([True, False, True, True, False, True], device=dev)
    return {"masked_adam_": [
        (z, torch.randn(9, 7, generator=g).to(dev), m, v, step, active, 1e-2, 0.9, 0.999, 1e-8),
        (z[:, 2:], torch.randn(9, 5, generator=g).to(dev), m[:, :5], v[:, 1:6], step, active, 0.1, 0.5, 0.9, 0.0),
        (z6, torch.randn(6, 5, generator=g).to(dev), m6, v6, torch.arange(6, device=dev), active6,
         0.01, 0.9, 0.999, 1e-8),
    ]}


OPCHECK = ("masked_adam_",)
