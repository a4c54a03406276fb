"""AnoGAN's fused ops (genad_fast.ops.anogan_residual, masked_adam_) on CPU tensors: the spec's checks
(tests/op_specs/anogan_residual.py, masked_adam.py: the eager reference, torch.optim.Adam row by row, strides,
layouts, NaN/inf, gradients, opcheck) on the eager and cpu backends, and what only the CPU runner checks: no hidden
copies, Hypothesis, torch.compile, bad input and the refusals of overlapping in-place arguments."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import anogan as ref
from op_specs import anogan_residual as residual_spec
from op_specs import masked_adam as adam_spec
from op_specs.compare import EXACT, close
from op_specs.targets import CPU_TARGETS, MEDIUM, Target, run_opcheck, upto

BACKENDS = ["eager", "cpu"]
DTYPES = [torch.float32, torch.float64]
CPU = Target("cpu", "cpu")
ADAM_TOL = adam_spec.TOL
_residual_inputs = residual_spec.inputs


def _adam_state(shape, dtype, seed=0):
    return adam_spec.state(shape, dtype, seed=seed)


def _run_adam(backend, shape, dtype, iterations, seed=0, **hyper):
    return adam_spec.run(backend, shape, dtype, iterations, seed=seed, **hyper)


# ---- the spec's checks: anogan_residual ------------------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, p, f", upto(residual_spec.SHAPES, MEDIUM))
@pytest.mark.parametrize("lam", residual_spec.LAMBDAS)
def test_residual_matches_reference(target, dtype, lead, p, f, lam):
    residual_spec.check_matches_reference(target, dtype, lead, p, f, lam)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_residual_values_by_hand(target):
    residual_spec.check_values_by_hand(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_residual_float64_weights_are_not_rounded_to_float32(target):
    residual_spec.check_float64_weights_are_not_rounded(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_residual_column_slices_are_read_in_place(target):
    residual_spec.check_column_slices(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_residual_any_input_layout_equals_the_reference(target):
    residual_spec.check_any_layout(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [6, 40, 70])
def test_residual_nan_and_inf_propagate(target, dtype, width):
    residual_spec.check_nan_and_inf_propagate(target, dtype, width)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_residual_ties_give_zero_gradient(target):
    residual_spec.check_ties_give_zero_gradient(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", residual_spec.LAMBDAS)
def test_residual_gradients_are_autograd_of_the_eager_loss(target, dtype, lam):
    residual_spec.check_gradients_are_autograd_of_the_loss(target, dtype, lam)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_residual_loss_backward_matches_reference_autograd(target):
    residual_spec.check_loss_backward_matches_reference(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("lead, p, f", upto(residual_spec.GRADCHECK, MEDIUM))
def test_residual_gradcheck_float64(target, lead, p, f):
    residual_spec.check_gradcheck(target, lead, p, f)


def test_residual_opcheck():
    run_opcheck(CPU, residual_spec.opcheck_samples)


# ---- the spec's checks: masked_adam_ ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta1", adam_spec.BETA1)
def test_masked_adam_matches_torch_adam_row_by_row(target, dtype, beta1):
    adam_spec.check_matches_torch_adam_row_by_row(target, dtype, beta1)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(adam_spec.SHAPES, MEDIUM))
@pytest.mark.parametrize("beta1", adam_spec.BETA1)
def test_masked_adam_matches_reference(target, dtype, shape, beta1):
    adam_spec.check_matches_reference(target, dtype, shape, beta1)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_masked_adam_column_slices_are_updated_in_place(target):
    adam_spec.check_column_slices(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_masked_adam_takes_disjoint_column_slices_of_one_buffer(target):
    adam_spec.check_disjoint_column_slices_of_one_buffer(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_masked_adam_leaves_inactive_rows_untouched(target):
    adam_spec.check_inactive_rows_untouched(target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("width", [6, 40])
def test_masked_adam_nan_propagates(target, width):
    adam_spec.check_nan_propagates(target, width)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_masked_adam_zero_lr_only_moves_the_state(target):
    adam_spec.check_zero_lr_only_moves_the_state(target)


def test_masked_adam_opcheck():
    run_opcheck(CPU, adam_spec.opcheck_samples)


# ---- the CPU runner's own checks -------------------------------------------------------------------------------

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


@settings(max_examples=40, deadline=None)
@given(b=st.integers(0, 20), p=st.integers(0, 70), f=st.integers(0, 70), lam=st.floats(0.0, 1.0),
       scale=st.floats(0.0, 5.0), seed=st.integers(0, 2**16))
def test_residual_hypothesis_shapes_and_values(b, p, f, lam, scale, seed):
    x, gx, fx, fgx = (scale * t for t in _residual_inputs((b,), p, f, torch.float64, seed=seed))
    out = ops.anogan_residual(x, gx, fx, fgx, lam, backend="cpu")
    expected = ref.anogan_residual(x, gx, fx, fgx, lam)
    close(out[0], expected[0], residual_spec.HYPOTHESIS_TOL)
    close(out[1:], expected[1:], EXACT)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(0, 12), l_=st.integers(0, 50), iterations=st.integers(1, 4), lr=st.floats(0.0, 1.0),
       beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.999), seed=st.integers(0, 2**16))
def test_masked_adam_hypothesis(b, l_, iterations, lr, beta1, beta2, seed):
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=1e-8)
    got = _run_adam("cpu", (b, l_), torch.float64, iterations, seed=seed, **hyper)
    expected = _run_adam("eager", (b, l_), torch.float64, iterations, seed=seed, **hyper)
    for a, e in zip(got, expected):
        close(a, e, adam_spec.HYPOTHESIS_TOL)


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
        close(got, expected, ADAM_TOL(CPU, torch.float32))
    assert (states[0][3] == 3 * active.long()).all()



# ---- bad input ------------------------------------------------------------------------------------------

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
def test_masked_adam_refuses_in_place_layouts_it_cannot_view(backend):
    args = _adam_args()
    args["m"] = torch.zeros(5, 4).t()
    with pytest.raises(ValueError, match=r"m is updated in place and must be viewable as rows"):
        ops.masked_adam_(**args, backend=backend)


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

