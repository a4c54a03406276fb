"""AnoGAN's fused ops (genad_fast.ops.anogan_residual, masked_adam_) against the eager reference and torch.optim.Adam."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import anogan as ref

BACKENDS = ["eager", "cpu"]
DTYPES = [torch.float32, torch.float64]
LOSS_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
# Adam: the fused kernels follow torch's order of operations; float32 may still differ by an ulp per step
# (fused multiply-adds), accumulated over the iterations of a test.
ADAM_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
EXACT = dict(rtol=0, atol=0)


def _residual_inputs(lead, p, f, dtype, seed=0, gap=0.0):
    """x, gx [*lead, p] and fx, fgx [*lead, f]; gap > 0 keeps every |x − gx| and |fx − fgx| >= gap (no ties)."""
    g = torch.Generator().manual_seed(seed)

    def pair(k):
        a = torch.randn(*lead, k, generator=g, dtype=dtype)
        d = torch.randn(*lead, k, generator=g, dtype=dtype)
        d = d + gap * torch.where(d >= 0, 1.0, -1.0).to(dtype)
        return a, a - d

    x, gx = pair(p)
    fx, fgx = pair(f)
    return x, gx, fx, fgx


def _adam_state(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=dtype)
    return z, torch.zeros_like(z), torch.zeros_like(z), torch.zeros(shape[:-1], dtype=torch.int64)


# ---- anogan_residual ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, p, f", [((0,), 5, 3), ((1,), 1, 1), ((7,), 13, 5), ((33,), 64, 128), ((2, 3), 9, 40),
                                        ((4,), 17, 0)])
@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_residual_matches_reference(backend, dtype, lead, p, f, lam):
    x, gx, fx, fgx = _residual_inputs(lead, p, f, dtype)
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, lam, backend=backend)
    loss_ref, grad_gx_ref, grad_fgx_ref = ref.anogan_residual(x, gx, fx, fgx, lam)
    assert loss.shape == lead and grad_gx.shape == x.shape and grad_fgx.shape == fx.shape
    assert loss.dtype == grad_gx.dtype == grad_fgx.dtype == dtype
    torch.testing.assert_close(loss, loss_ref, **LOSS_TOL[dtype])
    torch.testing.assert_close(grad_gx, grad_gx_ref, **EXACT)   # ±(1−λ) or 0: no rounding to differ in
    torch.testing.assert_close(grad_fgx, grad_fgx_ref, **EXACT)


def test_residual_values_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    gx = torch.tensor([[0.0, 2.0, 5.0]])       # differences 1, 0 (a tie), −2
    fx = torch.tensor([[1.0, -1.0]])
    fgx = torch.tensor([[-1.0, -1.0]])         # differences 2, 0
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, 0.25, backend="cpu")
    torch.testing.assert_close(loss, torch.tensor([0.75 * 3 + 0.25 * 2]))
    torch.testing.assert_close(grad_gx, torch.tensor([[-0.75, 0.0, 0.75]]), **EXACT)
    torch.testing.assert_close(grad_fgx, torch.tensor([[-0.25, 0.0]]), **EXACT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_column_slices_are_read_in_place(backend):
    x, gx, fx, fgx = _residual_inputs((30,), 50, 70, torch.float32, seed=3)
    xs, gxs, fxs, fgxs = x[:, 3:20], gx[:, 10:27], fx[:, :41], fgx[:, 29:]
    assert not any(t.is_contiguous() for t in (xs, gxs, fxs, fgxs))
    out = ops.anogan_residual(xs, gxs, fxs, fgxs, 0.1, backend=backend)
    expected = ref.anogan_residual(xs.contiguous(), gxs.contiguous(), fxs.contiguous(), fgxs.contiguous(), 0.1)
    torch.testing.assert_close(out, expected, **LOSS_TOL[torch.float32])


def test_cpu_kernels_do_not_copy_strided_inputs(monkeypatch):
    x, gx, fx, fgx = _residual_inputs((16,), 40, 40, torch.float32)
    z, m, v, step = _adam_state((16, 40), torch.float32)
    calls = []
    original = torch.Tensor.contiguous
    monkeypatch.setattr(torch.Tensor, "contiguous", lambda self, *a, **k: calls.append(self.shape) or original(self))
    ops.anogan_residual(x[:, :17], gx[:, 5:22], fx[:, 1:], fgx[:, :39], backend="cpu")
    ops.masked_adam_(z[:, :20], z[:, 20:].clone(), m[:, 3:23], v[:, :20], step, torch.ones(16, dtype=torch.bool),
                     backend="cpu")
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [6, 40])  # 40: the CPU kernel's vector loop as well as its scalar tail
def test_residual_nan_and_inf_propagate(backend, dtype, width):
    x, gx, fx, fgx = _residual_inputs((5,), width, width, dtype, gap=0.1)
    x[0, 2] = float("nan")                         # row 0: NaN loss, NaN gradient at (0, 2) only
    fgx[1, 3] = float("nan")                       # row 1: NaN loss (even with λ = 0: 0·NaN), NaN feature gradient
    x[2, 1] = float("inf")                         # row 2: inf loss, finite gradient −(1−λ)
    x[3, 0], gx[3, 0] = float("inf"), float("inf")  # row 3: inf − inf = NaN
    for lam in (0.0, 0.1):
        loss, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, lam, backend=backend)
        assert torch.isnan(loss[0]) and torch.isnan(grad_gx[0, 2])
        assert torch.isfinite(torch.cat([grad_gx[0, :2], grad_gx[0, 3:]])).all() and torch.isfinite(grad_fgx[0]).all()
        assert torch.isnan(loss[1]) and torch.isnan(grad_fgx[1, 3]) and torch.isfinite(grad_gx[1]).all()
        assert torch.isposinf(loss[2]) and grad_gx[2, 1] == -(1 - lam)
        assert torch.isnan(loss[3]) and torch.isnan(grad_gx[3, 0])
        assert torch.isfinite(loss[4]) and torch.isfinite(grad_gx[4]).all() and torch.isfinite(grad_fgx[4]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_ties_give_zero_gradient(backend):
    x = torch.randn(3, 37)
    fx = torch.randn(3, 19)
    loss, grad_gx, grad_fgx = ops.anogan_residual(x, x.clone(), fx, fx.clone(), 0.1, backend=backend)
    assert (loss == 0).all() and (grad_gx == 0).all() and (grad_fgx == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_residual_gradients_are_autograd_of_the_eager_loss(backend, dtype, lam):
    # Away from ties, the op's grad_gx / grad_fgx are d loss / d gx and d loss / d fgx of the plain loss.
    x, gx, fx, fgx = _residual_inputs((11,), 23, 37, dtype, gap=1e-3)
    _, grad_gx, grad_fgx = ops.anogan_residual(x, gx, fx, fgx, lam, backend=backend)
    gx_, fgx_ = gx.clone().requires_grad_(True), fgx.clone().requires_grad_(True)
    loss = (1 - lam) * (x - gx_).abs().sum(1) + lam * (fx - fgx_).abs().sum(1)
    auto_gx, auto_fgx = torch.autograd.grad(loss.sum(), (gx_, fgx_))
    torch.testing.assert_close(grad_gx, auto_gx, **EXACT)
    torch.testing.assert_close(grad_fgx, auto_fgx, **EXACT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_loss_backward_matches_reference_autograd(backend):
    x, gx, fx, fgx = _residual_inputs((2, 9), 21, 13, torch.float64, seed=5, gap=1e-3)
    w = torch.randn(2, 9, dtype=torch.float64)
    grads = []
    for fn in (lambda *a: ops.anogan_residual(*a, 0.3, backend=backend), lambda *a: ref.anogan_residual(*a, 0.3)):
        inputs = [t.clone().requires_grad_(True) for t in (x, gx, fx, fgx)]
        (fn(*inputs)[0] * w).sum().backward()
        grads.append([t.grad for t in inputs])
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("width", [5, 19])  # 19: vector loop and scalar tail of the CPU kernel
def test_residual_gradcheck_float64(width):
    inputs = [t.requires_grad_(True) for t in _residual_inputs((4,), width, 7, torch.float64, seed=2, gap=1e-2)]
    assert torch.autograd.gradcheck(lambda *a: ops.anogan_residual(*a, 0.1, backend="cpu")[0], inputs)


def test_residual_opcheck():
    x, gx, fx, fgx = _residual_inputs((9,), 7, 12, torch.float32, gap=1e-3)
    torch.library.opcheck(torch.ops.genad_fast.anogan_residual, (x, gx, fx, fgx, 0.1))
    grads = [t.clone().requires_grad_(True) for t in (x, gx, fx, fgx)]
    torch.library.opcheck(torch.ops.genad_fast.anogan_residual, (*grads, 0.25))
    torch.library.opcheck(torch.ops.genad_fast.anogan_residual, (x[:, 1:5], gx[:, :4], fx[:, :0], fgx[:, :0], 1.0))


@settings(max_examples=40, deadline=None)
@given(b=st.integers(0, 20), p=st.integers(0, 70), f=st.integers(0, 70), lam=st.floats(0.0, 1.0),
       scale=st.floats(0.0, 5.0), seed=st.integers(0, 2**16))
def test_residual_hypothesis_shapes_and_values(b, p, f, lam, scale, seed):
    x, gx, fx, fgx = (scale * t for t in _residual_inputs((b,), p, f, torch.float64, seed=seed))
    out = ops.anogan_residual(x, gx, fx, fgx, lam, backend="cpu")
    expected = ref.anogan_residual(x, gx, fx, fgx, lam)
    torch.testing.assert_close(out[0], expected[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[1:], expected[1:], **EXACT)


# ---- masked_adam_ -------------------------------------------------------------------------------------

def _run_adam(backend, shape, dtype, iterations, seed=0, **hyper):
    """z, m, v, step after `iterations` masked steps with a fresh random grad and active mask each time."""
    z, m, v, step = _adam_state(shape, dtype, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(iterations):
        grad = torch.randn(shape, generator=g, dtype=dtype)
        active = torch.rand(shape[:-1], generator=g) < 0.6
        ops.masked_adam_(z, grad, m, v, step, active, backend=backend, **hyper)
    return z, m, v, step


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta1", [0.9, 0.3])  # 0.3: torch's lerp takes its other branch (weight >= 0.5)
def test_masked_adam_matches_torch_adam_row_by_row(backend, dtype, beta1):
    # Each row is a parameter of its own with its own torch.optim.Adam, stepped only when the row is active,
    # so rows that sat out some iterations have their own (smaller) step counts.
    B, L, iterations = 9, 37, 8
    hyper = dict(lr=0.05, beta1=beta1, beta2=0.99, eps=1e-6)
    z, m, v, step = _adam_state((B, L), dtype, seed=4)
    params = [torch.nn.Parameter(z[i].clone()) for i in range(B)]
    optims = [torch.optim.Adam([p], lr=hyper["lr"], betas=(beta1, hyper["beta2"]), eps=hyper["eps"])
              for p in params]
    g = torch.Generator().manual_seed(7)
    masks = [torch.rand(B, generator=g) < 0.6 for _ in range(iterations)]
    masks[0][:] = False          # nobody moves at first
    masks[1][0] = False          # row 0 never moves
    for mask in masks[1:]:
        mask[0] = False
    for mask in masks:
        grad = torch.randn(B, L, generator=g, dtype=dtype)
        ops.masked_adam_(z, grad, m, v, step, mask, **hyper, backend=backend)
        for i in torch.nonzero(mask).flatten().tolist():
            params[i].grad = grad[i].clone()
            optims[i].step()
    counts = torch.stack(masks).sum(0)
    assert counts[0] == 0 and len(set(counts.tolist())) > 2          # the test covers differing step counts
    torch.testing.assert_close(step, counts)
    torch.testing.assert_close(z, torch.stack([p.detach() for p in params]), **ADAM_TOL[dtype])
    for i, opt in enumerate(optims):
        state = opt.state[params[i]]
        if not state:
            assert step[i] == 0 and (m[i] == 0).all() and (v[i] == 0).all()
            continue
        assert int(state["step"]) == step[i]
        torch.testing.assert_close(m[i], state["exp_avg"], **ADAM_TOL[dtype])
        torch.testing.assert_close(v[i], state["exp_avg_sq"], **ADAM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (7, 13), (40, 67), (2, 3, 9), (5, 0)])
def test_masked_adam_cpu_matches_reference(dtype, shape):
    results = [_run_adam(backend, shape, dtype, iterations=6, lr=0.02) for backend in ("eager", "cpu")]
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, **ADAM_TOL[dtype])


def test_masked_adam_column_slices_are_updated_in_place():
    # z, m and v as column slices of one [B, 3L] state matrix, grad as a slice, step as a strided 1-D view.
    B, L = 12, 21
    g = torch.Generator().manual_seed(9)
    state = torch.randn(B, 3 * L, generator=g)
    state[:, L:] = 0
    steps = torch.zeros(B, 2, dtype=torch.int64)
    grads = torch.randn(4, B, L + 5, generator=g)
    masks = torch.rand(4, B, generator=g) < 0.5
    expected = [state[:, :L].clone(), torch.zeros(B, L), torch.zeros(B, L), torch.zeros(B, dtype=torch.int64)]
    for grad, active in zip(grads, masks):
        ops.masked_adam_(state[:, :L], grad[:, 2:L + 2], state[:, L:2 * L], state[:, 2 * L:], steps[:, 1], active,
                         lr=0.1, backend="cpu")
        ref.masked_adam_(*expected[:1], grad[:, 2:L + 2].contiguous(), *expected[1:], active, lr=0.1)
    for got, want in zip((state[:, :L], state[:, L:2 * L], state[:, 2 * L:], steps[:, 1]), expected):
        torch.testing.assert_close(got, want, **ADAM_TOL[torch.float32])
    assert (steps[:, 0] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_adam_leaves_inactive_rows_untouched(backend):
    z, m, v, step = _adam_state((6, 35), torch.float32)
    m += 0.5
    v += 0.25
    step += torch.arange(6)
    before = [t.clone() for t in (z, m, v, step)]
    grad = torch.randn(6, 35)
    grad[1] = float("nan")       # an inactive row's NaN gradient must not leak into anything
    active = torch.tensor([True, False, True, False, False, True])
    ops.masked_adam_(z, grad, m, v, step, active, lr=0.1, backend=backend)
    for now, then in zip((z, m, v, step), before):
        assert torch.equal(now[~active], then[~active])
        assert not torch.equal(now[active], then[active])
    assert torch.equal(step, before[3] + active.long())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", [6, 40])
def test_masked_adam_nan_propagates(backend, width):
    z, m, v, step = _adam_state((3, width), torch.float64)
    grad = torch.randn(3, width, dtype=torch.float64)
    grad[0, 2] = float("nan")
    grad[1, 1] = float("inf")                 # m = inf, v = inf: the update is inf/inf = NaN
    ops.masked_adam_(z, grad, m, v, step, torch.ones(3, dtype=torch.bool), backend=backend)
    assert torch.isnan(z[0, 2]) and torch.isnan(m[0, 2]) and torch.isnan(v[0, 2])
    assert torch.isfinite(torch.cat([z[0, :2], z[0, 3:]])).all()
    assert torch.isnan(z[1, 1]) and torch.isposinf(m[1, 1]) and torch.isposinf(v[1, 1])
    assert torch.isfinite(z[2]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_adam_zero_lr_only_moves_the_state(backend):
    z, m, v, step = _adam_state((4, 10), torch.float32)
    z0 = z.clone()
    ops.masked_adam_(z, torch.ones(4, 10), m, v, step, torch.ones(4, dtype=torch.bool), lr=0.0, backend=backend)
    assert torch.equal(z, z0) and (step == 1).all()
    torch.testing.assert_close(m, torch.full((4, 10), 0.1))


def test_masked_adam_opcheck():
    z, m, v, step = _adam_state((9, 7), torch.float32)
    m += 0.1
    v += 0.2
    step += 3
    active = torch.tensor([True, False] * 4 + [True])
    torch.library.opcheck(torch.ops.genad_fast.masked_adam_, (z, torch.randn(9, 7), m, v, step, active,
                                                              1e-2, 0.9, 0.999, 1e-8))
    torch.library.opcheck(torch.ops.genad_fast.masked_adam_, (z[:, 2:], torch.randn(9, 5), m[:, :5], v[:, 1:6],
                                                              step, active, 0.1, 0.5, 0.9, 0.0))


@settings(max_examples=30, deadline=None)
@given(b=st.integers(0, 12), l_=st.integers(0, 50), iterations=st.integers(1, 4), lr=st.floats(0.0, 1.0),
       beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.999), seed=st.integers(0, 2**16))
def test_masked_adam_hypothesis(b, l_, iterations, lr, beta1, beta2, seed):
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=1e-8)
    got = _run_adam("cpu", (b, l_), torch.float64, iterations, seed=seed, **hyper)
    expected = _run_adam("eager", (b, l_), torch.float64, iterations, seed=seed, **hyper)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


# ---- torch.compile ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph_search_step(backend):
    # One latent-search step minus the networks: residual, then Adam on the active rows. fullgraph=True also
    # proves the step has no data-dependent Python control flow (no .item(), no nonzero()).
    x, gx, fx, fgx = _residual_inputs((16,), 12, 20, torch.float32, gap=1e-3)
    w = torch.randn(12, 8)

    def search_step(z, m, v, step, active):
        loss, grad_gx, _ = ops.anogan_residual(x, gx, fx, fgx, 0.1, backend=backend)
        ops.masked_adam_(z, grad_gx @ w, m, v, step, active & (loss > 0), lr=0.05, backend=backend)
        return loss

    states = [_adam_state((16, 8), torch.float32, seed=1) for _ in range(2)]
    active = torch.arange(16) % 3 != 0
    compiled = torch.compile(search_step, fullgraph=True)
    for _ in range(3):
        torch.testing.assert_close(compiled(*states[0], active), search_step(*states[1], active))
    for got, expected in zip(*states):
        torch.testing.assert_close(got, expected, **ADAM_TOL[torch.float32])
    assert (states[0][3] == 3 * active.long()).all()


# ---- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("change, error, match", [
    (dict(gx=torch.zeros(4, 6)), ValueError, "gx must have the shape of x"),
    (dict(fgx=torch.zeros(4, 2)), ValueError, "fgx must have the shape of fx"),
    (dict(fx=torch.zeros(5, 3), fgx=torch.zeros(5, 3)), ValueError, "leading"),
    (dict(x=torch.zeros(4, 5, dtype=torch.int64)), TypeError, "x must have dtype"),
    (dict(gx=torch.zeros(4, 5, dtype=torch.float64)), TypeError, "share a dtype"),
    (dict(fgx=torch.zeros(4, 3, device="meta")), ValueError, "one device"),
    (dict(lam=1.5), ValueError, "lam must be in"),
    (dict(lam=-0.1), ValueError, "lam must be in"),
    (dict(lam=float("nan")), ValueError, "lam must be in"),
    (dict(lam="0.1"), TypeError, "lam must be a real number"),
])
def test_residual_bad_input_is_a_clear_error(backend, change, error, match):
    args = dict(x=torch.zeros(4, 5), gx=torch.zeros(4, 5), fx=torch.zeros(4, 3), fgx=torch.zeros(4, 3), lam=0.1)
    args.update(change)
    with pytest.raises(error, match=match):
        ops.anogan_residual(**args, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("change, error, match", [
    (dict(grad=torch.zeros(4, 6)), ValueError, "grad must have the shape of z"),
    (dict(m=torch.zeros(3, 5)), ValueError, "m must have the shape of z"),
    (dict(v=torch.zeros(4, 5, dtype=torch.float64)), TypeError, "share a dtype"),
    (dict(z=torch.zeros(4, 5, dtype=torch.int32)), TypeError, "z must have dtype"),
    (dict(step=torch.zeros(4)), TypeError, "step must have dtype int64"),
    (dict(step=torch.zeros(5, dtype=torch.int64)), ValueError, "step must have z's leading"),
    (dict(active=torch.ones(4, dtype=torch.uint8)), TypeError, "active must have dtype bool"),
    (dict(active=torch.ones(4, 1, dtype=torch.bool)), ValueError, "active must have z's leading"),
    (dict(active=[True] * 4), TypeError, "active must be a torch.Tensor"),
    (dict(active=torch.ones(4, dtype=torch.bool, device="meta")), ValueError, "one device"),
    (dict(grad=torch.zeros(4, 5, device="meta")), ValueError, "one device"),
    (dict(z=torch.zeros(()), grad=torch.zeros(()), m=torch.zeros(()), v=torch.zeros(())), ValueError, "scalar"),
    (dict(lr=-1.0), ValueError, "lr must be"),
    (dict(beta1=1.0), ValueError, "beta1 must be in"),
    (dict(beta2=-0.5), ValueError, "beta2 must be in"),
    (dict(eps=float("inf")), ValueError, "eps must be"),
])
def test_masked_adam_bad_input_is_a_clear_error(backend, change, error, match):
    args = dict(z=torch.zeros(4, 5), grad=torch.zeros(4, 5), m=torch.zeros(4, 5), v=torch.zeros(4, 5),
                step=torch.zeros(4, dtype=torch.int64), active=torch.ones(4, dtype=torch.bool))
    args.update(change)
    with pytest.raises(error, match=match):
        ops.masked_adam_(**args, backend=backend)


def _adam_args(B=4, L=5):
    return dict(z=torch.zeros(B, L), grad=torch.zeros(B, L), m=torch.zeros(B, L), v=torch.zeros(B, L),
                step=torch.zeros(B, dtype=torch.int64), active=torch.ones(B, dtype=torch.bool))


_STATE = torch.zeros(4, 12)  # one buffer for the overlapping views below


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("change, match", [
    # an argument that overlaps itself: every row's update would land on one location
    (dict(z=torch.zeros(1, 5).expand(4, 5)), "z is written in place but several of its elements share"),
    (dict(m=torch.zeros(5).expand(4, 5)), "m is written in place but several of its elements share"),
    (dict(v=torch.zeros(20).as_strided((4, 5), (2, 1))), "v is written in place but several of its elements share"),
    (dict(step=torch.zeros(1, dtype=torch.int64).expand(4)), "step is written in place but several of its"),
    # arguments that overlap one another, exactly or partly, or an input that the update overwrites
    (dict(m=_STATE[:, :5], v=_STATE[:, :5]), "m is written in place and overlaps v"),
    (dict(z=_STATE[:, :5], m=_STATE[:, 3:8]), "z is written in place and overlaps m"),
    (dict(z=_STATE[:, :5], grad=_STATE[:, 4:9]), "z is written in place and overlaps grad"),
    (dict(z=_STATE[:, :5], step=_STATE.view(torch.int64)[:, 2]), "z is written in place and overlaps step"),
])
def test_masked_adam_refuses_overlapping_in_place_arguments(backend, change, match):
    args = _adam_args()
    args.update(change)
    before = {name: t.clone() for name, t in args.items()}
    with pytest.raises(ValueError, match=match):
        ops.masked_adam_(**args, lr=0.1, backend=backend)
    for name, t in args.items():  # refused before anything was written
        assert torch.equal(t, before[name]), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_any_input_layout_equals_the_reference(backend):
    # Issue #12: inputs of any layout are accepted (a view where the kernel can read it, else one copy).
    x, gx, fx, fgx = _residual_inputs((4, 3), 6, 5, torch.float64, gap=0.1)
    odd = [t.transpose(0, 1).contiguous().transpose(0, 1) for t in (x, gx)]  # leading dims that do not merge
    odd += [torch.stack([t, t], -1)[..., 0] for t in (fx, fgx)]            # column stride 2
    odd[0] = x[:1, :1].expand(4, 3, 6)                                       # a broadcast sample
    got = ops.anogan_residual(*odd, 0.3, backend=backend)
    want = ref.anogan_residual(*(t.contiguous() for t in odd), 0.3)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **LOSS_TOL[torch.float64])


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_adam_refuses_in_place_layouts_it_cannot_view(backend):
    args = _adam_args()
    args["m"] = torch.zeros(5, 4).t()
    with pytest.raises(ValueError, match=r"m is updated in place and must be viewable as rows"):
        ops.masked_adam_(**args, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_adam_takes_disjoint_column_slices_of_one_buffer(backend):
    # The exact overlap test must not refuse what the kernels support: z | m | v side by side in one matrix,
    # grad read from the same matrix, step as every other entry of an int64 vector.
    state = torch.zeros(4, 20)
    state[:, :5] = torch.randn(4, 5)
    state[:, 15:] = torch.randn(4, 5)
    steps = torch.zeros(8, dtype=torch.int64)
    expected = [state[:, :5].clone(), torch.zeros(4, 5), torch.zeros(4, 5), torch.zeros(4, dtype=torch.int64)]
    ref.masked_adam_(*expected[:1], state[:, 15:].clone(), *expected[1:], torch.ones(4, dtype=torch.bool), lr=0.1)
    ops.masked_adam_(state[:, :5], state[:, 15:], state[:, 5:10], state[:, 10:15], steps[::2],
                     torch.ones(4, dtype=torch.bool), lr=0.1, backend=backend)
    for got, want in zip((state[:, :5], state[:, 5:10], state[:, 10:15], steps[::2]), expected):
        torch.testing.assert_close(got, want, **ADAM_TOL[torch.float32])
    assert (steps[1::2] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [-1, -(2**63), 2**63 - 1])
def test_masked_adam_refuses_step_counts_out_of_range(backend, bad):
    # step + 1 must be a count >= 1 that int64 holds: a negative count or 2^63 − 1 (which would wrap) is refused,
    # also on an inactive row, and nothing is written.
    args = _adam_args()
    args["step"][2] = bad
    args["active"][2] = False
    with pytest.raises(ValueError, match=r"step must hold update counts in \[0, 2\^63 - 1\)"):
        ops.masked_adam_(**args, lr=0.1, backend=backend)
    assert (args["step"][[0, 1, 3]] == 0).all() and (args["z"] == 0).all()


def test_masked_adam_kernel_refuses_step_counts_out_of_range_without_the_python_layer():
    args = _adam_args()
    args["step"][0] = -3
    with pytest.raises(ValueError, match=r"step must hold update counts in \[0, 2\^63 - 1\)"):
        torch.ops.genad_fast.masked_adam_(*args.values(), 0.1, 0.9, 0.999, 1e-8)
    assert args["step"][0] == -3 and (args["step"][1:] == 0).all()


def test_masked_adam_needs_no_grad_for_a_leaf_that_requires_grad():
    z, m, v, step = _adam_state((3, 4), torch.float32)
    z.requires_grad_(True)
    active = torch.ones(3, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="torch.no_grad"):
        ops.masked_adam_(z, torch.ones(3, 4), m, v, step, active, backend="cpu")
    with torch.no_grad():
        ops.masked_adam_(z, torch.ones(3, 4), m, v, step, active, lr=0.1, backend="cpu")
    assert (step == 1).all() and z.requires_grad


def test_kernel_checks_hold_without_the_python_layer():
    z, m, v, step = _adam_state((3, 4), torch.float32)
    active = torch.ones(3, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="step must be int64"):
        torch.ops.genad_fast.masked_adam_(z, z, m, v, step.float(), active, 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(RuntimeError, match="active must be bool"):
        torch.ops.genad_fast.masked_adam_(z, z, m, v, step, active.long(), 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(RuntimeError, match="beta1 must be in"):
        torch.ops.genad_fast.masked_adam_(z, z, m, v, step, active, 0.1, 1.0, 0.999, 1e-8)
    with pytest.raises(RuntimeError, match=r"gx must have x's shape \[3, 4\], got \[3, 3\]"):
        torch.ops.genad_fast.anogan_residual(z, z[:, :3], m, v, 0.1)
    with pytest.raises(RuntimeError, match="lam must be"):
        torch.ops.genad_fast.anogan_residual(z, z, m, v, 2.0)


def test_explicit_backend_that_cannot_run_says_why(monkeypatch):
    x, gx, fx, fgx = _residual_inputs((3,), 2, 2, torch.float32)
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        ops.anogan_residual(x, gx, fx, fgx, backend="cuda")
    z, m, v, step = _adam_state((3, 2), torch.float32)
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        ops.masked_adam_(z, z.clone(), m, v, step, torch.ones(3, dtype=torch.bool), backend="cuda")
    monkeypatch.setenv("GENAD_FAST_BACKEND", "cuda")
    with pytest.raises(BackendUnavailableError):
        ops.anogan_residual(x, gx, fx, fgx)


# ---- the Triton kernels compile for the GPU (frontend to cubin; no GPU needed) --------------------------------

_TRITON = importlib.util.find_spec("triton") is not None
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_ADAM_SCALARS = ("lr", "log2_beta1", "log2_beta2", "lerp_coef", "beta2", "one_minus_beta2", "eps")


@pytest.mark.skipif(not _TRITON, reason="triton is not installed")
@pytest.mark.skipif(_INTERPRETED, reason="kernels are interpreted in this process; tests/triton_kernels covers them")
@pytest.mark.parametrize("kernel_name", ["_residual_kernel", "_masked_adam_kernel"])
@pytest.mark.parametrize("ptr,ints", [("*fp32", "i32"), ("*fp64", "i64")])
def test_triton_kernels_compile_for_sm90(kernel_name, ptr, ints):
    """What the interpreter cannot catch (both seen on an H200): a float64 kernel that reaches a float32-only
    intrinsic (sqrt_rn, div_rn) does not compile."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from genad_fast.kernels import anogan as kernel

    fn = getattr(kernel, kernel_name)
    constexprs = {"LERP_SMALL": True, "BLOCK_B": kernel.BLOCK_B, "BLOCK_K": kernel.BLOCK_K}
    special = {"step_ptr": "*i64", "active_ptr": "*u8"}

    def arg_type(name):
        if name in constexprs:
            return "constexpr"
        if name in special:
            return special[name]
        if name.endswith("_ptr"):
            return ptr
        return "fp64" if name in _ADAM_SCALARS + ("w_p", "w_f") else ints

    signature = {name: arg_type(name) for name in fn.arg_names}
    src = ASTSource(fn=fn, signature=signature,
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items() if k in fn.arg_names})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32))
    assert len(compiled.asm["cubin"]) > 0


@pytest.mark.skipif(not _TRITON, reason="triton is not installed")
def test_triton_scalars_are_float64():
    # Quoted annotations under `from __future__ import annotations` reach Triton as '"tl.float64"', which it
    # ignores: λ, lr, β... went in as float32 and float64 results were off by ~1e-8 relative (seen on an H200).
    from genad_fast.kernels import anogan as kernel

    residual = {p.name: p.annotation_type for p in kernel._residual_kernel.params}
    adam = {p.name: p.annotation_type for p in kernel._masked_adam_kernel.params}
    assert residual["w_p"] == residual["w_f"] == "fp64"
    assert all(adam[name] == "fp64" for name in _ADAM_SCALARS)
