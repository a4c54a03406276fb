"""linear_act on the device against the eager reference on the same device: forward and gated backward layers,
float32 and bfloat16 products, strided rows, opcheck. Contracts and tolerances as tests/test_linear_act.py; the op
has no Triton kernel, which the triton pair checks is said, not hidden."""
from __future__ import annotations

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.reference import linear as ref

F32, BF16 = torch.float32, torch.bfloat16


def _inputs(m, k, n, x_dtype, w_dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(x_dtype)
    w = (torch.randn(n, k, generator=g) / k ** 0.5).to(w_dtype)
    rest = torch.randn(n, generator=g), torch.randn(m, k, generator=g).to(BF16), torch.randn(m, n, generator=g)
    return [t.to(device) for t in (x, w, *rest)]


@pytest.mark.parametrize("x_dtype, w_dtype, out_dtype", [(F32, F32, None), (BF16, BF16, None), (F32, BF16, F32)])
@pytest.mark.parametrize("m, k, n", [(1024, 128, 128), (7, 5, 3), (3000, 64, 33)])
@pytest.mark.parametrize("layer", ["forward", "backward"])
def test_matches_eager(pair, x_dtype, w_dtype, out_dtype, m, k, n, layer):
    x, w, bias, gate, addend = _inputs(m, k, n, x_dtype, w_dtype, pair.dev)
    kwargs = (dict(bias=bias, slope=0.2) if layer == "forward"
              else dict(gate=gate, gate_slope=0.2, addend=addend))
    if pair.backend == "triton":
        with pytest.raises(BackendUnavailableError, match="no 'triton' implementation"):
            ops.linear_act(x, w, out_dtype=out_dtype, backend=pair.backend, **kwargs)
        return
    got = ops.linear_act(x, w, out_dtype=out_dtype, backend=pair.backend, **kwargs)
    want = ref.linear_act(x, w, kwargs.get("bias"), kwargs.get("gate"), kwargs.get("gate_slope", 0.0),
                          kwargs.get("addend"), kwargs.get("slope"), out_dtype)
    assert got.device == x.device and got.dtype == want.dtype
    tol = dict(rtol=8e-3, atol=8e-3) if want.dtype == BF16 else dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(got.float(), want.float(), **tol)


def test_strided_rows_and_opcheck(pair):
    if pair.backend in ("triton", "eager"):
        pytest.skip(f"the {pair.backend} pair runs no linear_act kernel")
    x, w, bias, gate, addend = _inputs(600, 48, 20, BF16, BF16, pair.dev)
    xs = x[::2, 8:40]
    ws = w[:, :32].contiguous()
    got = ops.linear_act(xs, ws, bias, slope=0.1, out_dtype=F32, backend=pair.backend)
    torch.testing.assert_close(got, ref.linear_act(xs.contiguous(), ws, bias, None, 0.0, None, 0.1, F32),
                               rtol=2e-5, atol=2e-5)
    torch.library.opcheck(torch.ops.genad_fast.linear_act, (x, w, bias, gate, 0.2, addend, 0.3, F32))
