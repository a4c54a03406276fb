"""genad_fast.ops.linear_act (one MLP layer, forward or backward, epilogue and prologue fused) against its reference."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.ops import linear as linear_mod
from genad_fast.reference import linear as ref

F32, BF16 = torch.float32, torch.bfloat16


def _inputs(m, k, n, x_dtype, w_dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(x_dtype)
    w = (torch.randn(n, k, generator=g) / k ** 0.5).to(w_dtype)
    bias = torch.randn(n, generator=g)
    gate = torch.randn(m, k, generator=g).to(BF16)
    addend = torch.randn(m, n, generator=g)
    return x, w, bias, gate, addend


def _tol(w_dtype, out_dtype):
    # float32 products: sums in another order than the reference's mm. bfloat16 products: float32 sums of exact
    # products (MKL's blocking vs mm's), and a bfloat16 output may round the other way: one bfloat16 ulp.
    if out_dtype == BF16:
        return dict(rtol=8e-3, atol=8e-3)
    return dict(rtol=1e-5, atol=1e-5) if w_dtype == F32 else dict(rtol=2e-5, atol=2e-5)


OPTIONS = {
    "plain": {},
    "bias+leaky": dict(use_bias=True, slope=0.2),
    "relu": dict(use_bias=True, slope=0.0),
    "gate+addend": dict(use_gate=True, gate_slope=0.2, use_addend=True),
    "all": dict(use_bias=True, use_gate=True, gate_slope=0.01, use_addend=True, slope=0.3),
}


@pytest.fixture(params=[True, False], ids=["mkl-bf16", "mm-bf16"])
def mkl(request):
    if request.param and not linear_mod.has_mkl_bf16():
        pytest.skip("this torch does not export MKL's cblas_gemm_bf16bf16f32")
    linear_mod.set_mkl_bf16(request.param)
    yield request.param
    linear_mod.set_mkl_bf16(True)


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("x_dtype, w_dtype, out_dtype", [(F32, F32, None), (BF16, BF16, None), (F32, BF16, F32),
                                                         (BF16, BF16, F32), (F32, BF16, BF16)])
@pytest.mark.parametrize("m, k, n", [(1000, 96, 72), (7, 5, 3), (130, 33, 17), (1, 1, 1)])
def test_cpu_kernel_equals_reference(mkl, option, x_dtype, w_dtype, out_dtype, m, k, n):
    x, w, bias, gate, addend = _inputs(m, k, n, x_dtype, w_dtype)
    o = OPTIONS[option]
    kwargs = dict(bias=bias if o.get("use_bias") else None, gate=gate if o.get("use_gate") else None,
                  gate_slope=o.get("gate_slope", 0.0), addend=addend if o.get("use_addend") else None,
                  slope=o.get("slope"), out_dtype=out_dtype)
    got = ops.linear_act(x, w, backend="cpu", **kwargs)
    want = ref.linear_act(x, w, kwargs["bias"], kwargs["gate"], kwargs["gate_slope"], kwargs["addend"],
                          kwargs["slope"], out_dtype)
    assert got.dtype == want.dtype == (out_dtype or x_dtype) and got.shape == (m, n)
    torch.testing.assert_close(got.float(), want.float(), **_tol(w_dtype, out_dtype or x_dtype))


def test_eager_backend_is_the_reference():
    x, w, bias, gate, addend = _inputs(50, 16, 8, BF16, BF16)
    got = ops.linear_act(x, w, bias, gate=gate, gate_slope=0.1, addend=addend, slope=0.2, backend="eager")
    torch.testing.assert_close(got, ref.linear_act(x, w, bias, gate, 0.1, addend, 0.2), rtol=0, atol=0)


def test_reference_is_an_mlp_layer_and_its_backward():
    # forward: LeakyReLU(x·Wᵀ + b); backward: dL/dx = (g ⊙ LeakyReLU'(pre))·W, gated by the layer's output
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(12, 9), torch.nn.LeakyReLU(0.2)).double()
    x = torch.randn(20, 12, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, g)
    w, b = layer[0].weight.detach().float(), layer[0].bias.detach().float()
    fwd = ops.linear_act(x.detach().float(), w, b, slope=0.2, backend="cpu")
    bwd = ops.linear_act(g.float(), w.t().contiguous(), gate=y.detach().float(), gate_slope=0.2, backend="cpu")
    torch.testing.assert_close(fwd.double(), y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bwd.double(), dx, rtol=1e-5, atol=1e-5)


def test_strided_rows_are_read_in_place():
    big = torch.randn(300, 40).to(BF16)
    x = big[::3, 5:37]                       # row stride 120, unit column stride: no copy
    w = torch.randn(24, 32).to(BF16)
    addend = torch.randn(100, 50)[:, 10:34]
    got = ops.linear_act(x, w, addend=addend, out_dtype=F32, backend="cpu")
    torch.testing.assert_close(got, ref.linear_act(x.contiguous(), w, None, None, 0.0, addend.contiguous(), None, F32),
                               rtol=2e-5, atol=2e-5)


def _layouts(m, k, dtype, seed):
    """x [m, k] in layouts the BLAS product cannot take as they are: rows that overlap (a broadcast row, stride 0;
    a row stride smaller than the width), a transpose, a column stride of 2."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m * k + k, generator=g).to(dtype)
    return {
        "broadcast": torch.randn(1, k, generator=g).to(dtype).expand(m, k),
        "overlapping": base.as_strided((m, k), (max(k // 3, 1), 1)),
        "transposed": torch.randn(k, m, generator=g).to(dtype).t(),
        "every-other-column": torch.randn(m, 2 * k, generator=g).to(dtype)[:, ::2],
    }


@pytest.mark.parametrize("layout", ["broadcast", "overlapping", "transposed", "every-other-column"])
@pytest.mark.parametrize("x_dtype, w_dtype", [(BF16, BF16), (F32, F32), (F32, BF16)])
@pytest.mark.parametrize("m, k, n", [(300, 48, 24), (1, 8, 5), (70, 3, 4)])
def test_any_input_layout_equals_the_reference(mkl, layout, x_dtype, w_dtype, m, k, n):
    # Issue #12: an expanded or overlapping x (row stride < K) made MKL reject the call ("Parameter 9 was
    # incorrect") and the op returned the previous call's tile (or uninitialised memory). Any layout of x, gate and
    # addend is an input like any other; the result is the reference's, also right after another call.
    x = _layouts(m, k, x_dtype, seed=1)[layout]
    gate = _layouts(m, k, BF16, seed=2)[layout]
    addend = _layouts(m, n, F32, seed=3)[layout]
    w = (torch.randn(n, k, generator=torch.Generator().manual_seed(4)) / k ** 0.5).to(w_dtype)
    for out_dtype in (F32, BF16):
        ops.linear_act(torch.randn(m, k).to(x_dtype), w, out_dtype=out_dtype, backend="cpu")  # leaves a tile behind
        for kwargs in (dict(), dict(gate=gate, gate_slope=0.1, addend=addend)):
            got = ops.linear_act(x, w, out_dtype=out_dtype, backend="cpu", **kwargs)
            want = ref.linear_act(x.contiguous(), w, None, kwargs.get("gate"), kwargs.get("gate_slope", 0.0),
                                  kwargs.get("addend"), None, out_dtype)
            torch.testing.assert_close(got.float(), want.float(), **_tol(w_dtype, out_dtype))


def test_any_weight_and_bias_layout_equals_the_reference():
    x, w, bias, _, _ = _inputs(40, 12, 6, BF16, BF16)
    w_strided = torch.stack([w, w], 2)[..., 0]         # column stride 2
    w_t = w.t().contiguous().t()                        # a transpose
    bias_strided = torch.stack([bias, bias], 1)[:, 0]   # stride 2
    want = ref.linear_act(x, w, bias, None, 0.0, None, 0.2)
    for weight in (w_strided, w_t):
        got = ops.linear_act(x, weight, bias_strided, slope=0.2, backend="cpu")
        torch.testing.assert_close(got.float(), want.float(), rtol=8e-3, atol=8e-3)


def test_the_cpu_kernel_copes_with_overlapping_rows_without_the_python_layer():
    # The kernel itself never hands MKL a leading dimension below K: it converts such rows into its own buffer.
    w = torch.randn(8, 16).to(BF16)
    x = torch.randn(1, 16).to(BF16).expand(200, 16)
    torch.ops.genad_fast.linear_act(torch.randn(200, 16).to(BF16), w, None, None, 0.0, None, None, F32)
    got = torch.ops.genad_fast.linear_act(x, w, None, None, 0.0, None, None, F32)
    torch.testing.assert_close(got, ref.linear_act(x.contiguous(), w, out_dtype=F32), rtol=2e-5, atol=2e-5)


def test_nan_and_inf_propagate():
    x, w, bias, _, _ = _inputs(200, 16, 8, F32, BF16)
    x[3, 2] = float("nan")
    x[150, 0] = float("inf")
    got = ops.linear_act(x, w, bias, slope=0.2, out_dtype=F32, backend="cpu")
    want = ref.linear_act(x, w, bias, None, 0.0, None, 0.2, F32)
    assert got[3].isnan().all() and torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.isinf(), want.isinf())


def test_empty_inputs():
    w = torch.randn(4, 3)
    assert ops.linear_act(torch.empty(0, 3), w, backend="cpu").shape == (0, 4)
    out = ops.linear_act(torch.empty(5, 0), torch.empty(4, 0), torch.ones(4), backend="cpu")
    torch.testing.assert_close(out, torch.ones(5, 4))


@pytest.mark.parametrize("x_dtype, w_dtype, out_dtype", [(F32, F32, None), (F32, BF16, F32), (BF16, BF16, BF16)])
def test_opcheck(x_dtype, w_dtype, out_dtype):
    x, w, bias, gate, addend = _inputs(70, 12, 10, x_dtype, w_dtype)
    op = torch.ops.genad_fast.linear_act
    torch.library.opcheck(op, (x, w, bias, gate, 0.2, addend, 0.1, out_dtype))
    torch.library.opcheck(op, (x, w, None, None, 0.0, None, None, None))


def test_compiles_without_graph_breaks():
    x, w, bias, _, _ = _inputs(64, 8, 4, F32, BF16)

    def f(x):
        return ops.linear_act(x, w, bias, slope=0.2, out_dtype=F32, backend="cpu") * 2

    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(got, f(x))


@pytest.mark.parametrize("bad, match, exc", [
    (dict(x=torch.randn(3)), r"x must be a 2-D tensor", ValueError),
    (dict(w=torch.randn(4)), r"weight must be a 2-D tensor", ValueError),
    (dict(w=torch.randn(4, 6)), r"weight must have shape \[4, 5\]", ValueError),
    (dict(x=torch.randn(3, 5, dtype=torch.float64)), r"x must have dtype float32, bfloat16; got float64", TypeError),
    (dict(w=torch.randn(4, 5).half()), r"weight must have dtype float32, bfloat16; got float16", TypeError),
    (dict(bias=torch.randn(3)), r"bias must have shape \[4\]", ValueError),
    (dict(gate=torch.randn(3, 4)), r"gate must have shape \[3, 5\]", ValueError),
    (dict(out_dtype=torch.float16), r"out_dtype must be float32 or bfloat16", TypeError),
])
def test_bad_input_names_the_problem(bad, match, exc):
    args = dict(x=torch.randn(3, 5), w=torch.randn(4, 5), bias=None, gate=None, addend=None, out_dtype=None)
    args.update(bad)
    with pytest.raises(exc, match=match):
        ops.linear_act(args["x"], args["w"], args["bias"], gate=args["gate"], addend=args["addend"],
                       out_dtype=args["out_dtype"], backend="cpu")


def test_the_cpu_kernel_rejects_what_the_wrapper_would():
    with pytest.raises(RuntimeError, match="weight must have shape"):
        torch.ops.genad_fast.linear_act(torch.randn(3, 5), torch.randn(4, 6), None, None, 0.0, None, None, None)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        torch.ops.genad_fast.linear_act(torch.randn(3, 5), torch.randn(4, 5), torch.randn(2), None, 0.0, None, None,
                                        None)


def test_no_autograd_says_so():
    w = torch.randn(4, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        ops.linear_act(torch.randn(3, 5), w, backend="cpu")
    with torch.no_grad():
        assert ops.linear_act(torch.randn(3, 5), w, backend="cpu").shape == (3, 4)


def test_no_triton_backend():
    with pytest.raises(BackendUnavailableError, match="no 'triton' implementation"):
        ops.linear_act(torch.randn(3, 5), torch.randn(4, 5), backend="triton")


def test_thread_counts_agree():
    # rows are split into one block per thread: 1 and 2 threads must give the same numbers
    x, w, bias, gate, addend = _inputs(777, 40, 24, BF16, BF16)
    saved = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(ops.linear_act(x, w, bias, gate=gate, gate_slope=0.2, addend=addend, slope=0.1,
                                       out_dtype=F32, backend="cpu"))
    finally:
        torch.set_num_threads(saved)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
