"""Spec of ``linear_act``: one MLP layer, forward or backward, with its epilogue and prologue fused:

    y = act(gate_mask(x)·Wᵀ + bias + addend),  gate_mask(x) = x ⊙ (1 if gate > 0 else gate_slope),
    act = LeakyReLU(slope) (none when slope is None)

float32 or bfloat16 inputs and weights (the product's inputs in the weight's dtype, float32 sums), float32 or
bfloat16 output. No autograd, no Triton kernel. Oracle: :func:`genad_fast.reference.linear.linear_act`.
"""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import linear as ref
from op_specs.compare import BF16, F32, F64, Tolerances, close, tol
from op_specs.targets import LARGE, Target, sized

OPS = ("linear_act",)
IMPLEMENTED = ("eager", "cpu", "cuda")
OPTIONS = {
    "plain": {},
    "bias+leaky": dict(use_bias=True, slope=0.2),                     # a forward layer
    "relu": dict(use_bias=True, slope=0.0),
    "gate+addend": dict(use_gate=True, gate_slope=0.2, use_addend=True),  # a backward layer
    "all": dict(use_bias=True, use_gate=True, gate_slope=0.01, use_addend=True, slope=0.3),
}
DTYPES = [(F32, F32, None), (BF16, BF16, None), (F32, BF16, F32), (BF16, BF16, F32), (F32, BF16, BF16)]
# (m, k, n): many row blocks; odd sizes; one element; on a GPU, thousands of rows.
SHAPES = [(1000, 96, 72), (7, 5, 3), (130, 33, 17), (1, 1, 1), sized((3000, 64, 33), LARGE)]
LAYOUTS = ("broadcast", "overlapping", "transposed", "every-other-column")

# float32 products: sums in another order than the reference's mm (the CPU's MKL sgemm: 1e-5; cuBLAS: 2e-5).
# bfloat16 products: float32 sums of exact products (MKL's blocking, cuBLAS's vs mm's): 2e-5.
PRODUCT_TOL = Tolerances({F32: tol(1e-5), BF16: tol(2e-5)}, cuda={F32: tol(2e-5)})
# A bfloat16 output may round the other way: one bfloat16 ulp (2^-7 relative, 8e-3).
BF16_OUT_TOL = tol(8e-3)
# The layer against torch.nn.Linear + LeakyReLU in float64: float32 inputs and sums.
MLP_TOL = tol(1e-5)
# CPU runner only: 1 and 2 threads split the rows differently; the sums of a row are the same.
THREADS_TOL = tol(1e-6)


def tolerance(target: Target | str, w_dtype, out_dtype) -> dict:
    return BF16_OUT_TOL if out_dtype == BF16 else PRODUCT_TOL(target, w_dtype)


def inputs(m, k, n, x_dtype, w_dtype, device="cpu", seed=0):
    """x [m, k], w [n, k] (scaled by 1/sqrt(k)), bias [n], a bfloat16 gate [m, k], addend [m, n]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(x_dtype)
    w = (torch.randn(n, k, generator=g) / k ** 0.5).to(w_dtype)
    bias = torch.randn(n, generator=g)
    gate = torch.randn(m, k, generator=g).to(BF16)
    addend = torch.randn(m, n, generator=g)
    return [t.to(device) for t in (x, w, bias, gate, addend)]


def layer(target: Target, x, w, **kwargs):
    return ops.linear_act(x, w, backend=target.backend, **kwargs)


def _oracle(x, w, kwargs):
    return ref.linear_act(x, w, kwargs.get("bias"), kwargs.get("gate"), kwargs.get("gate_slope", 0.0),
                          kwargs.get("addend"), kwargs.get("slope"), kwargs.get("out_dtype"))


def check_not_implemented_says_so(target: Target):
    """A backend without a linear_act kernel says so (it is not hidden behind another)."""
    with pytest.raises(BackendUnavailableError, match=f"no '{target.backend}' implementation"):
        layer(target, *inputs(3, 5, 4, F32, F32, target.dev)[:2])


def check_matches_reference(target: Target, option, x_dtype, w_dtype, out_dtype, m, k, n):
    if target.backend not in IMPLEMENTED:
        return check_not_implemented_says_so(target)
    x, w, bias, gate, addend = inputs(m, k, n, x_dtype, w_dtype, target.dev)
    o = OPTIONS[option]
    kwargs = dict(bias=bias if o.get("use_bias") else None, gate=gate if o.get("use_gate") else None,
                  gate_slope=o.get("gate_slope", 0.0), addend=addend if o.get("use_addend") else None,
                  slope=o.get("slope"), out_dtype=out_dtype)
    got, want = layer(target, x, w, **kwargs), _oracle(x, w, kwargs)
    assert got.dtype == want.dtype == (out_dtype or x_dtype) and got.shape == (m, n) and got.device == x.device
    close(got.float(), want.float(), tolerance(target, w_dtype, out_dtype or x_dtype))


def check_is_an_mlp_layer_and_its_backward(target: Target):
    """forward: LeakyReLU(x·Wᵀ + b); backward: dL/dx = (g ⊙ LeakyReLU'(pre))·W, gated by the layer's output."""
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(12, 9).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(9, 12, generator=gen, dtype=F64) / 12 ** 0.5)
        lin.bias.copy_(torch.randn(9, generator=gen, dtype=F64))
    module = torch.nn.Sequential(lin, torch.nn.LeakyReLU(0.2)).to(target.dev)
    x = torch.randn(20, 12, dtype=F64, generator=gen).to(target.dev).requires_grad_(True)
    y = module(x)
    g = torch.randn(20, 9, dtype=F64, generator=gen).to(target.dev)
    (dx,) = torch.autograd.grad(y, x, g)
    w, b = lin.weight.detach().float(), lin.bias.detach().float()
    fwd = layer(target, x.detach().float(), w, bias=b, slope=0.2)
    bwd = layer(target, g.float(), w.t().contiguous(), gate=y.detach().float(), gate_slope=0.2)
    close(fwd.double(), y.detach(), MLP_TOL)
    close(bwd.double(), dx, MLP_TOL)


def check_strided_rows(target: Target):
    """Rows of a bigger matrix (row stride 120, unit column stride) are read in place; so is an addend slice."""
    big = torch.randn(300, 40, generator=torch.Generator().manual_seed(1)).to(BF16).to(target.dev)
    x = big[::3, 5:37]
    w = torch.randn(24, 32, generator=torch.Generator().manual_seed(2)).to(BF16).to(target.dev)
    addend = torch.randn(100, 50, generator=torch.Generator().manual_seed(3)).to(target.dev)[:, 10:34]
    got = layer(target, x, w, addend=addend, out_dtype=F32)
    want = ref.linear_act(x.contiguous(), w, None, None, 0.0, addend.contiguous(), None, F32)
    close(got, want, tolerance(target, BF16, F32))
    xb, wb, bias, _, _ = inputs(600, 48, 20, BF16, BF16, target.dev)
    xs, ws = xb[::2, 8:40], wb[:, :32].contiguous()
    close(layer(target, xs, ws, bias=bias, slope=0.1, out_dtype=F32),
          ref.linear_act(xs.contiguous(), ws, bias, None, 0.0, None, 0.1, F32), tolerance(target, BF16, F32))


def layouts(m, k, dtype, seed, device="cpu"):
    """x [m, k] in layouts the BLAS product cannot take as they are: rows that overlap (a broadcast row, stride 0;
    a row stride smaller than the width), a transpose, a column stride of 2."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m * k + k, generator=g).to(dtype).to(device)
    return {
        "broadcast": torch.randn(1, k, generator=g).to(dtype).to(device).expand(m, k),
        "overlapping": base.as_strided((m, k), (max(k // 3, 1), 1)),
        "transposed": torch.randn(k, m, generator=g).to(dtype).to(device).t(),
        "every-other-column": torch.randn(m, 2 * k, generator=g).to(dtype).to(device)[:, ::2],
    }


def check_any_input_layout(target: Target, layout, x_dtype, w_dtype, m, k, n):
    """Issue #12: an expanded or overlapping x (row stride < K) made MKL reject the call and the op returned the
    previous call's tile. Any layout of x, gate and addend is an input like any other; the result is the
    reference's, also right after another call."""
    x = layouts(m, k, x_dtype, 1, target.dev)[layout]
    gate = layouts(m, k, BF16, 2, target.dev)[layout]
    addend = layouts(m, n, F32, 3, target.dev)[layout]
    w = (torch.randn(n, k, generator=torch.Generator().manual_seed(4)) / k ** 0.5).to(w_dtype).to(target.dev)
    for out_dtype in (F32, BF16):
        layer(target, torch.randn(m, k).to(x_dtype).to(target.dev), w, out_dtype=out_dtype)  # leaves a tile behind
        for kwargs in (dict(), dict(gate=gate, gate_slope=0.1, addend=addend)):
            got = layer(target, x, w, out_dtype=out_dtype, **kwargs)
            want = _oracle(x.contiguous(), w, dict(kwargs, out_dtype=out_dtype))
            close(got.float(), want.float(), tolerance(target, w_dtype, out_dtype))


def check_any_weight_and_bias_layout(target: Target):
    x, w, bias, _, _ = inputs(40, 12, 6, BF16, BF16, target.dev)
    w_strided = torch.stack([w, w], 2)[..., 0]         # column stride 2
    w_t = w.t().contiguous().t()                        # a transpose
    bias_strided = torch.stack([bias, bias], 1)[:, 0]   # stride 2
    want = ref.linear_act(x, w, bias, None, 0.0, None, 0.2)
    for weight in (w_strided, w_t):
        got = layer(target, x, weight, bias=bias_strided, slope=0.2)
        close(got.float(), want.float(), BF16_OUT_TOL)


def check_kernel_copes_with_overlapping_rows(target: Target):
    """The kernel itself (no Python layer) never hands the BLAS a leading dimension below K: it converts such rows
    into its own buffer."""
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(8, 16, generator=gen).to(BF16).to(target.dev)
    x = torch.randn(1, 16, generator=gen).to(BF16).to(target.dev).expand(200, 16)
    target.ops.linear_act(torch.randn(200, 16).to(BF16).to(target.dev), w, None, None, 0.0, None, None, F32)
    got = target.ops.linear_act(x, w, None, None, 0.0, None, None, F32)
    close(got, ref.linear_act(x.contiguous(), w, out_dtype=F32), tolerance(target, BF16, F32))


def check_nan_and_inf_propagate(target: Target):
    x, w, bias, _, _ = inputs(200, 16, 8, F32, BF16, target.dev)
    x[3, 2] = float("nan")
    x[150, 0] = float("inf")
    got = layer(target, x, w, bias=bias, slope=0.2, out_dtype=F32)
    want = ref.linear_act(x, w, bias, None, 0.0, None, 0.2, F32)
    assert got[3].isnan().all() and torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.isinf(), want.isinf())


def check_empty_inputs(target: Target):
    w = torch.randn(4, 3, device=target.dev)
    assert layer(target, torch.empty(0, 3, device=target.dev), w).shape == (0, 4)
    out = layer(target, torch.empty(5, 0, device=target.dev), torch.empty(4, 0, device=target.dev),
                bias=torch.ones(4, device=target.dev))
    torch.testing.assert_close(out.cpu(), torch.ones(5, 4))


def opcheck_samples(target: Target) -> dict:
    """Every fused input, and none, for float32, mixed and bfloat16 products."""
    samples = []
    for x_dtype, w_dtype, out_dtype in [(F32, F32, None), (F32, BF16, F32), (BF16, BF16, BF16), (BF16, BF16, F32)]:
        x, w, bias, gate, addend = inputs(70, 12, 10, x_dtype, w_dtype, target.dev)
        samples += [(x, w, bias, gate, 0.2, addend, 0.1, out_dtype), (x, w, None, None, 0.0, None, None, None)]
    return {"linear_act": samples}


OPCHECK = ("linear_act",)
