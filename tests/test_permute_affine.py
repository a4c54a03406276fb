"""genad_fast.ops.permute_affine (ActNorm, a fixed permutation and a coupling's split, read from two halves, and its
backward) on CPU tensors: the spec's checks (tests/op_specs/permute_affine.py) on the cpu backend, and what only the
CPU runner checks: the eager backend, torch.compile, bad input (the Python layer's errors and the C++ ops', the
permutation's among them: only the CPU kernel checks it), thread counts, double backward."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import permute_affine as ref
from op_specs import permute_affine as spec
from op_specs.compare import EXACT, F32, F64, assert_terms_close, close
from op_specs.targets import MEDIUM, Target, run_opcheck, upto

CPU = Target("cpu", "cpu")
_inputs = spec.inputs


# ---- the spec's checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", spec.SCALES)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("case", upto(spec.SHAPES, MEDIUM), ids=str)
def test_cpu_kernel_equals_reference(scale, dtype, case):
    spec.check_matches_reference(CPU, dtype, case, scale)


@pytest.mark.parametrize("param_layout", spec.PARAM_LAYOUTS)
@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("case", [(37, 9, 8, 5), (65, 0, 7, 7), (130, 16, 17, 0)], ids=str)
def test_any_input_layout_equals_the_reference(layout, param_layout, dtype, case):
    spec.check_any_input_layout(CPU, layout, param_layout, dtype, case)


def test_the_cpu_kernels_take_any_strides_without_the_python_layer():
    spec.check_kernel_takes_any_strides(CPU)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_backward_op_is_the_closed_form(dtype):
    spec.check_backward_op_formula(CPU, dtype)


@pytest.mark.parametrize("unused", ["a", "b"])
def test_an_unused_output_has_zero_gradient(unused):
    spec.check_one_output_unused(CPU, unused)


def test_a_broadcast_gradient():
    spec.check_broadcast_gradient(CPU)


def test_a_transposed_gradient():
    spec.check_transposed_gradient(CPU)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_nan_and_inf_propagate(dtype):
    spec.check_nan_and_inf_propagate(CPU, dtype)


def test_empty():
    spec.check_empty(CPU)


@pytest.mark.parametrize("case", spec.GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case):
    spec.check_gradcheck(CPU, case)


def test_is_actnorm_then_permutation():
    spec.check_is_actnorm_then_permutation(CPU)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(CPU, spec.opcheck_samples, [name])


# ---- the CPU runner's own checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_eager_backend_is_the_reference(dtype):
    args = _inputs((9, 5, 8, 6), dtype, scale=3.0)
    got = ops.permute_affine(*args, 6, backend="eager")
    for g, w in zip(got, ref.permute_affine(*args, 6)):
        close(g, w, EXACT)
    x_a, x_b, bias, log_scale, perm = args
    v = ((torch.cat([x_a, x_b], 1) + bias) * torch.exp(log_scale))[:, perm]   # the modules' formula, indexed
    close(torch.cat(got, 1), v, EXACT)
    leaves = spec._leaves(x_a, x_b, bias, log_scale)
    eager = ops.permute_affine(*leaves, perm, 6, backend="eager")
    assert "PermuteAffine" not in eager[0].grad_fn.name()                   # the composite's autograd
    assert "PermuteAffine" in ops.permute_affine(*leaves, perm, 6, backend="cpu")[0].grad_fn.name()   # the C++ node


def test_eager_backend_outputs_are_contiguous():
    """The contract (genad_fast/ops/permute.py): both outputs are contiguous, on every backend (the eager composite
    slices one [N, D] result into column windows, so the wrapper makes them contiguous)."""
    args = _inputs((19, 6, 8, 5), F32)
    v_a, v_b = ref.permute_affine(*args, 5)
    assert not v_a.is_contiguous() and not v_b.is_contiguous()   # what the wrapper has to fix
    for backend in ("cpu", "eager"):
        assert all(o.is_contiguous() for o in ops.permute_affine(*args, 5, backend=backend)), backend


def test_compiles_without_graph_breaks():
    """A product feeding x_b, then permute_affine and element-wise work on both outputs, compiled with
    fullgraph=True (any graph break raises): the compiled outputs and the gradients of every input are the
    uncompiled ones bit for bit."""
    x_a, x_b, bias, log_scale, perm = _inputs((6, 4, 5, 3), F32, scale=2.0)
    w = _inputs((5, 5, 0, 0), F32, seed=3)[0]
    g_a, g_b = spec.grads_like((6, 4, 5, 3), F32)

    def f(x_a, x_b, w, bias, log_scale):
        v_a, v_b = ops.permute_affine(x_a, x_b @ w, bias, log_scale, perm, 3, backend="cpu")
        return v_a * 2, v_b * v_b

    torch._dynamo.reset()
    leaves = [[t.clone().requires_grad_(True) for t in (x_a, x_b, w, bias, log_scale)] for _ in range(2)]
    got = torch.compile(f, fullgraph=True)(*leaves[0])
    want = f(*leaves[1])
    for a, b in zip(got, want):
        close(a, b, EXACT)
    torch.autograd.backward(list(got), [g_a, g_b])
    torch.autograd.backward(list(want), [g_a, g_b])
    for a, b in zip(*leaves):
        close(a.grad, b.grad, EXACT)


_XA, _XB, _B, _S, _P = _inputs((4, 3, 4, 2), F32)   # D = 7
_META = "meta"


@pytest.mark.parametrize("args, match, exc", [
    ((torch.zeros(3), _XB, _B, _S, _P, 2), r"x_a must be a 2-D tensor, got \[3\]", ValueError),
    ((_XA, torch.zeros(1, 4, 4), _B, _S, _P, 2), r"x_b must be a 2-D tensor, got \[1, 4, 4\]", ValueError),
    (([[1.0, 2.0, 3.0]], _XB, _B, _S, _P, 2), r"x_a must be a 2-D tensor, got list", ValueError),
    ((_XA, _XB, _B[None], _S, _P, 2), r"bias must be a 1-D tensor, got \[1, 7\]", ValueError),
    ((_XA, _XB, _B, torch.tensor(0.0), _P, 2), r"log_scale must be a 1-D tensor, got \[\]", ValueError),
    ((_XA, _XB, _B, _S, list(range(7)), 2), r"perm must be a 1-D tensor, got list", ValueError),
    ((_XA.long(), _XB.long(), _B.long(), _S.long(), _P, 2), r"x_a must have dtype float32, float64; got int64",
     TypeError),
    ((_XA.half(), _XB.half(), _B.half(), _S.half(), _P, 2), r"x_a must have dtype float32, float64; got float16",
     TypeError),
    ((_XA.bfloat16(), _XB, _B, _S, _P, 2), r"x_a must have dtype float32, float64; got bfloat16", TypeError),
    ((_XA, _XB.double(), _B, _S, _P, 2), r"x_b must have x_a's dtype float32, got float64", TypeError),
    ((_XA.double(), _XB, _B.double(), _S.double(), _P, 2), r"x_b must have x_a's dtype float64, got float32",
     TypeError),
    ((_XA, _XB, _B.double(), _S, _P, 2), r"bias must have x_a's dtype float32, got float64", TypeError),
    ((_XA, _XB, _B, _S.int(), _P, 2), r"log_scale must have x_a's dtype float32, got int32", TypeError),
    ((_XA, _XB[:3], _B, _S, _P, 2), r"x_b must have x_a's 4 rows, got 3", ValueError),
    ((_XA, _XB[:, :3], _B, _S, _P, 2), r"bias must have shape \[6\] \(one entry per column of \[x_a, x_b\]\), "
                                       r"got \[7\]", ValueError),
    ((_XA, _XB, _B, _S[:6], _P, 2), r"log_scale must have shape \[7\] .*got \[6\]", ValueError),
    ((_XA, _XB, _B, _S, _P[:6], 2), r"perm must have shape \[7\] .*got \[6\]", ValueError),
    ((_XA, _XB, _B, _S, torch.arange(8), 2), r"perm must have shape \[7\] .*got \[8\]", ValueError),
    ((_XA, _XB, _B, _S, _P.int(), 2), r"perm must be int64, got int32", TypeError),
    ((_XA, _XB, _B, _S, _P.float(), 2), r"perm must be int64, got float32", TypeError),
    ((_XA, _XB, _B, _S, _P, -1), r"split must be an int in \[0, 7\], got -1", ValueError),
    ((_XA, _XB, _B, _S, _P, 8), r"split must be an int in \[0, 7\], got 8", ValueError),
    ((_XA, _XB, _B, _S, _P, True), r"split must be an int in \[0, 7\], got True", ValueError),
    ((_XA, _XB, _B, _S, _P, 2.0), r"split must be an int in \[0, 7\], got 2.0", ValueError),
    ((_XA, _XB, _B, _S, _P, None), r"split must be an int in \[0, 7\], got None", ValueError),
    ((_XA, _XB, torch.zeros(7, device=_META), _S, _P, 2), r"bias is on meta, x_a on cpu: pass tensors on one device",
     ValueError),
    ((_XA, _XB, _B, _S, _P.to(_META), 2), r"perm is on meta, x_a on cpu: pass tensors on one device", ValueError),
    ((_XA, _XB.to(_META), _B, _S, _P, 2), r"x_b is on meta, x_a on cpu: pass tensors on one device", ValueError),
])
def test_bad_input_names_the_problem(args, match, exc):
    with pytest.raises(exc, match=match):
        ops.permute_affine(*args, backend="cpu")
    with pytest.raises(exc, match=match):   # the same checks whatever the backend: the Python layer makes them
        ops.permute_affine(*args, backend="eager")
    with pytest.raises(exc, match=match):   # before it looks for a kernel
        ops.permute_affine(*args, backend="triton")


@pytest.mark.parametrize("perm, match", [
    (torch.tensor([0, 0, 1, 2, 3, 4, 5]), r"perm must be a permutation of 0 \.\. 6, got 0 at position 1 \(a repeat\)"),
    (torch.tensor([6, 5, 4, 3, 2, 1, 6]), r"perm must be .*got 6 at position 6 \(a repeat\)"),
    (torch.tensor([0, 1, 2, 3, 4, 5, 7]), r"perm must be a permutation of 0 \.\. 6, got 7 at position 6 "
                                          r"\(out of range\)"),
    (torch.tensor([-1, 1, 2, 3, 4, 5, 6]), r"perm must be .*got -1 at position 0 \(out of range\)"),
])
def test_the_cpu_kernels_refuse_a_perm_that_is_no_permutation(perm, match):
    """The CPU entry points check the permutation (O(D), before any row is read), forward and backward, and name
    it; through the wrapper too (the Python layer leaves this check to the kernel)."""
    with pytest.raises(RuntimeError, match=r"genad_fast::permute_affine: " + match):
        ops.permute_affine(_XA, _XB, _B, _S, perm, 2, backend="cpu")
    with pytest.raises(RuntimeError, match=r"genad_fast::permute_affine: " + match):
        torch.ops.genad_fast.permute_affine(_XA, _XB, _B, _S, perm, 2)
    v_a, v_b = torch.ops.genad_fast.permute_affine(_XA, _XB, _B, _S, _P, 2)
    with pytest.raises(RuntimeError, match=r"genad_fast::permute_affine_backward: " + match):
        torch.ops.genad_fast.permute_affine_backward(v_a, v_b, v_a, v_b, _S, perm, 3)


@pytest.mark.parametrize("perm, match", [
    (torch.tensor([0, 0, 1, 2, 3, 4, 5]), r"perm must be a permutation of 0 \.\. 6, got 0 at position 1 \(a repeat\)"),
    (torch.tensor([0, 1, 2, 3, 4, 5, 7]), r"perm must be .*got 7 at position 6 \(out of range\)"),
])
def test_the_eager_backend_refuses_a_perm_that_is_no_permutation_too(perm, match):
    """The composite would take a repeat silently (and an out-of-range entry with ATen's words): the wrapper checks
    CPU permutations before it runs, in the kernel's words."""
    with pytest.raises(ValueError, match=match):
        ops.permute_affine(_XA, _XB, _B, _S, perm, 2, backend="eager")


def test_a_numpy_integer_split_is_an_int():
    import numpy as np

    for backend in ("cpu", "eager"):
        got = ops.permute_affine(_XA, _XB, _B, _S, _P, np.int64(2), backend=backend)
        want = ops.permute_affine(_XA, _XB, _B, _S, _P, 2, backend=backend)
        assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_the_cpu_backend_refuses_tensors_on_another_device():
    meta = [t.to(_META) for t in (_XA, _XB, _B, _S, _P)]
    with pytest.raises(BackendUnavailableError, match="backend 'cpu' runs on CPU tensors, got meta tensors"):
        ops.permute_affine(*meta, 2, backend="cpu")


def test_the_cpu_kernels_reject_what_the_wrapper_would():
    # every contract text, exactly: tests/test_op_contract_errors.py
    g = torch.ops.genad_fast
    pre = r"genad_fast::permute_affine: "
    with pytest.raises(RuntimeError, match=pre + r"x_a must be 2-D, got shape \[3\]"):
        g.permute_affine(torch.zeros(3), _XB, _B, _S, _P, 2)
    with pytest.raises(RuntimeError, match=pre + r"x_a must be float32 or float64, got int32"):
        g.permute_affine(_XA.int(), _XB.int(), _B.int(), _S.int(), _P, 2)
    with pytest.raises(RuntimeError, match=pre + r"x_b must have x_a's dtype float32, got float64"):
        g.permute_affine(_XA, _XB.double(), _B, _S, _P, 2)
    with pytest.raises(RuntimeError, match=pre + r"x_b must have x_a's number of rows 4, got 3"):
        g.permute_affine(_XA, _XB[:3], _B, _S, _P, 2)
    with pytest.raises(RuntimeError, match=pre + r"bias must have shape \[7\], got \[6\]"):
        g.permute_affine(_XA, _XB, _B[:6], _S, _P, 2)
    with pytest.raises(RuntimeError, match=pre + r"perm must be int64, got int32"):
        g.permute_affine(_XA, _XB, _B, _S, _P.int(), 2)
    with pytest.raises(RuntimeError, match=pre + r"split must be in \[0, 7\] \(a column of the 7 columns\), got 8"):
        g.permute_affine(_XA, _XB, _B, _S, _P, 8)
    # a column stride: the kernel reads rows in place and refuses it; the wrapper hands such a half over as one
    # contiguous copy (rows_view, as every op's wrapper), so each backend takes it and gives the same values
    transposed = _XA.t().contiguous().t()
    with pytest.raises(RuntimeError, match=pre + r"x_a must have unit stride on its last dimension, got strides "
                                                 r"\[1, 4\]"):
        g.permute_affine(transposed, _XB, _B, _S, _P, 2)
    for backend in ("cpu", "eager"):
        got = ops.permute_affine(transposed, _XB, _B, _S, _P, 2, backend=backend)
        assert all(torch.equal(a, b) for a, b in zip(got, g.permute_affine(_XA, _XB, _B, _S, _P, 2)))
    v_a, v_b = g.permute_affine(_XA, _XB, _B, _S, _P, 2)
    pre = r"genad_fast::permute_affine_backward: "
    with pytest.raises(RuntimeError, match=pre + r"grad_a must have v_a's shape \[4, 2\], got \[4, 3\]"):
        g.permute_affine_backward(torch.zeros(4, 3), v_b, v_a, v_b, _S, _P, 3)
    with pytest.raises(RuntimeError, match=pre + r"grad_b must have v_b's dtype float32, got float64"):
        g.permute_affine_backward(v_a, v_b.double(), v_a, v_b, _S, _P, 3)
    with pytest.raises(RuntimeError, match=pre + r"grad_b must have unit stride on its last dimension"):
        g.permute_affine_backward(v_a, torch.zeros(5, 4).t(), v_a, v_b, _S, _P, 3)
    with pytest.raises(RuntimeError, match=pre + r"source_split must be in \[0, 7\] \(a column of the 7 columns\), "
                                                 r"got -1"):
        g.permute_affine_backward(v_a, v_b, v_a, v_b, _S, _P, -1)
    with pytest.raises(RuntimeError, match=pre + r"log_scale must have v_a's dtype float32, got float64"):
        g.permute_affine_backward(v_a, v_b, v_a, v_b, _S.double(), _P, 3)


def test_no_triton_backend():
    with pytest.raises(BackendUnavailableError, match=r"permute_affine has no 'triton' implementation "
                                                      r"\(it has: eager, cpu, cuda\)"):
        ops.permute_affine(_XA, _XB, _B, _S, _P, 2, backend="triton")


@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("case", [(3000, 20, 17, 11),    # 47 blocks of 64 rows; D = 37: 2·16 + 5 lanes
                                  (70001, 2, 3, 2),      # over 1024 blocks: 69 rows a block, the last one short
                                  (9, 2000, 2100, 33)],  # few long rows: the forward splits between rows only
                         ids=str)
def test_thread_counts_agree(dtype, case):
    # rows (forward) and row blocks (backward) are split over the threads once a call holds more than 2^14
    # elements: 1 and 2 threads give the same bits, the column sums included (their blocks depend on N only), equal
    # to the reference
    args = _inputs(case, dtype, seed=5, scale=3.0)
    args[0][case[0] // 2, 1] = float("nan")
    split = case[3]
    g = spec.grads_like(case, dtype)
    saved = torch.get_num_threads()
    outs, grads = [], []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(ops.permute_affine(*args, split, backend="cpu"))
            grads.append(torch.ops.genad_fast.permute_affine_backward(*g, *outs[-1], args[3], args[4], case[1]))
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(outs[0] + grads[0], outs[1] + grads[1]):
        close(a, b, spec.THREADS_TOL, equal_nan=True)
    for o, w in zip(outs[1], ref.permute_affine(*args, split)):
        close(o, w, spec.FWD_TOL(CPU, dtype), equal_nan=True)
    spec.check_grads(CPU, grads[1], spec.oracle_grads(*args, split, g), *args, g, equal_nan=True)
    assert int(torch.cat(outs[1], 1).isnan().sum()) == 1 and int(grads[1][3].isnan().sum()) == 1


def test_gradient_only_for_what_requires_it():
    """x_a alone, log_scale alone, or nothing requiring grad: the gradients asked for are the reference's, the
    others stay None; with nothing, the outputs have no graph."""
    case = (33, 6, 12, 10)
    args = _inputs(case, F64, scale=2.0)
    g = spec.grads_like(case, F64)
    want = spec.oracle_grads(*args, 10, g)
    scale_log = spec.sum_scales(*args, g)[1]
    for i in (0, 3):
        leaves = list(args)
        leaves[i] = args[i].clone().requires_grad_(True)
        torch.autograd.backward(list(ops.permute_affine(*leaves, 10, backend="cpu")), list(g))
        assert all(leaves[j].grad is None for j in range(4) if j != i)
        if i == 0:
            close(leaves[0].grad, want[0], spec.GRAD_X_TOL(CPU, F64))
        else:
            assert_terms_close(leaves[3].grad, want[3], scale_log, **spec.GRAD_SUM_ULPS(CPU, F64))
    assert not any(o.requires_grad for o in ops.permute_affine(*args, 10, backend="cpu"))


def test_no_grad_and_inference_mode():
    args = list(_inputs((3, 4, 4, 5), F32))
    args[0].requires_grad_(True)
    with torch.no_grad():
        out = ops.permute_affine(*args, 5, backend="cpu")
    assert not any(o.requires_grad for o in out)
    with torch.inference_mode():
        out2 = ops.permute_affine(*args, 5, backend="cpu")
    for a, b, w in zip(out, out2, ref.permute_affine(args[0].detach(), *args[1:], 5)):
        close(a, b, EXACT)
        close(a, w, spec.FWD_TOL(CPU, F32))


def test_outputs_do_not_alias_the_inputs():
    """Split at 0 or D, an empty half: each output is its own memory (never a view of x_a or x_b), so writing to
    one changes neither input."""
    for case in [(5, 4, 0, 4), (5, 0, 4, 0), (5, 4, 3, 7), (5, 4, 3, 0)]:
        args = _inputs(case, F32)
        before = [t.clone() for t in args[:2]]
        for o in ops.permute_affine(*args, case[3], backend="cpu"):
            o.fill_(123.0)
        for t, b in zip(args[:2], before):
            close(t, b, EXACT)


@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")
def test_double_backward_is_refused_on_the_kernel_and_works_eagerly():
    """torch.autograd.grad(..., create_graph=True) then a second grad: the eager composite differentiates twice; the
    compiled backward has no derivative of its own, so it refuses with a message that names the way out."""
    case = (3, 2, 3, 4)
    args = _inputs(case, F64, scale=1.5)
    le = spec._leaves(*(t.clone() for t in args[:4]))
    v = ops.permute_affine(*le, args[4], 4, backend="eager")
    grads = torch.autograd.grad(v[0].sum() + v[1].sum(), le, create_graph=True)
    (gg,) = torch.autograd.grad(grads[3].sum(), le[3])
    # ∂/∂log_scale[c] of Σ (x + b)·e is Σ_rows (x[:, c] + b[c])·e[c]: its own derivative in log_scale[c]
    ones = (torch.ones(3, 4, dtype=F64), torch.ones(3, 1, dtype=F64))
    scale_log = spec.sum_scales(*args, ones)[1]
    assert_terms_close(gg, grads[3].detach(), scale_log, **spec.GRAD_SUM_SAME_SIGN_ULPS(CPU, F64))
    lc = spec._leaves(*(t.clone() for t in args[:4]))
    v = ops.permute_affine(*lc, args[4], 4, backend="cpu")
    with pytest.raises(RuntimeError, match="permute_affine's compiled backward is not differentiable.*"
                                           "backend='eager'"):
        torch.autograd.grad(v[0].sum() + v[1].sum(), lc, create_graph=True)
    v = ops.permute_affine(*lc, args[4], 4, backend="cpu")
    first = torch.autograd.grad(v[0].sum() + v[1].sum(), lc)   # a first one still works
    spec.check_grads(CPU, first, tuple(t.detach() for t in grads), *args, ones, ulps=spec.GRAD_SUM_SAME_SIGN_ULPS)
