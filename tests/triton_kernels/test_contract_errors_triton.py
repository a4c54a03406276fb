"""The Triton twins raise the C++ kernels' text for every contract they check (issue #13, step 2).

The texts are those of csrc/include/genad/host/checks.h (the table ``TEXT`` of tests/test_op_contract_errors.py);
the Triton ops raise ValueError with the text alone, the C++ ops RuntimeError with "genad_fast::<op>: " before it.
Only contracts both check with the same argument names are here: the Triton diffusion ops name their first
argument "data" (x0 / x_t in C++) and add_noise's noise coefficient "c" (b in C++), so those two are left out.
"""
from __future__ import annotations

import pytest
import torch

from genad_fast import _ext
from test_op_contract_errors import EPS, F64, RES, RX, A, H, Q, R, X, XT, adam, text, z

CASES = [
    ("coupling_forward", (X, z(4, 2, 3), 0.0), text("rank", name="h", k=2, shape="[4, 2, 3]")),
    ("coupling_inverse", (X, z(6, 4).t(), 0.0), text("unit_stride", name="h", strides="[1, 4]")),
    ("coupling_backward", (z(3, 4).t(), z(4), X, H, 0.0, False),
     text("unit_stride", name="grad_out", strides="[1, 4]")),
    ("coupling_backward", (X, z(4), z(3), H, 0.0, False), text("rank", name="inp", k=2, shape="[3]")),
    ("anogan_residual", (RES[0], z(4, 5, 1), *RES[2:], 0.5), text("rank", name="gx", k=2, shape="[4, 5, 1]")),
    ("anogan_residual", (*RES[:3], z(3, 4).t(), 0.5), text("unit_stride", name="fgx", strides="[1, 4]")),
    ("masked_adam_", adam(grad=z(3)), text("rank", name="grad", k=2, shape="[3]")),
    ("masked_adam_", adam(step=z(3)), text("dtype", name="step", allowed="int64", dtype="float32")),
    ("masked_adam_", adam(active=z(3, dtype=torch.int64)), text("dtype", name="active", allowed="bool", dtype="int64")),
    ("masked_adam_", adam(step=z(3, 1, dtype=torch.int64)),
     text("per_row", name="step", unit="update count per row", rows=3, shape="[3, 1]")),
    ("masked_adam_", adam(active=torch.ones(3, 1, dtype=torch.bool)),
     text("per_row", name="active", unit="flag per row", rows=3, shape="[3, 1]")),
    ("diffusion_step", (XT, EPS, A[:3], A, A, 0, 0, None),
     text("per_row", name="a", unit="coefficient per sample", rows=4, shape="[3]")),
    ("diffusion_step", (XT, EPS, A, A, z(4, dtype=F64), 0, 0, None),
     text("same_dtype", name="c", ref="the data", ref_dtype="float32", dtype="float64")),
    ("diffusion_step", (XT, EPS[:, :5], A, A, A, 0, 0, None),
     text("same_shape", name="eps", ref="the data", ref_shape="[4, 6]", shape="[4, 5]")),
    ("diffusion_step", (XT, EPS[0], A, A, A, 0, 0, None), text("rank", name="eps", k=2, shape="[6]")),
    ("diffusion_step", (XT, z(4, 6, dtype=torch.float16), A, A, A, 0, 0, None),
     text("dtype", name="eps", allowed="float32 or float64", dtype="float16")),
    ("diffusion_step", (XT, EPS, A, A, A, 0, 0, z(4, 6, dtype=F64)),
     text("same_dtype", name="noise", ref="the data", ref_dtype="float32", dtype="float64")),
    ("diffusion_step", (XT, EPS, A, A, A, 0, 0, z(6, 4).t()), text("unit_stride", name="noise", strides="[1, 4]")),
    ("diffusion_step", (XT, EPS, A, A, A, -1, 0, None), "seed must be in [0, 2^63), got -1"),
    ("add_noise", (XT, A, A, 0, -1, None), "offset must be in [0, 2^63), got -1"),
    ("add_noise", (XT, A[:2], A, 0, 0, None),
     text("per_row", name="a", unit="coefficient per sample", rows=4, shape="[2]")),
    ("recon_error_accumulate_", (z(3), RX, RX, None, 1.0), text("shape", name="score", want="[2, 5]", shape="[3]")),
    ("recon_error_accumulate_", (z(2, 5, dtype=F64), RX, RX, None, 1.0),
     text("same_dtype", name="score", ref="x", ref_dtype="float32", dtype="float64")),
    ("recon_error_accumulate_", (z(2, 5), RX[0], RX[0], None, 1.0), text("rank", name="x", k=3, shape="[5, 3]")),
    ("recon_error_accumulate_", (z(2, 5), RX.int(), RX.int(), None, 1.0),
     text("dtype", name="x", allowed="float32 or float64", dtype="int32")),
    ("recon_error_accumulate_", (z(2, 5), RX, RX[:, :, :2], None, 1.0),
     text("same_shape", name="x_hat", ref="x", ref_shape="[2, 5, 3]", shape="[2, 5, 2]")),
    ("recon_error_accumulate_", (z(2, 5), RX, RX, z(2, 5, 3, dtype=F64), 1.0),
     text("same_dtype", name="mask", ref="x", ref_dtype="float32", dtype="float64")),
    ("kde_logpdf", (Q, R[None], 1.0, False), text("rank", name="refs", k=2, shape="[1, 10, 3]")),
    ("knn_distance", (z(3, 4).t(), R, 1, False), text("unit_stride", name="queries", strides="[1, 4]")),
]


@pytest.mark.parametrize("op, args, expected", CASES, ids=[f"{c[0]}: {c[2][:60]}" for c in CASES])
def test_triton_op_raises_the_contract_text(op, args, expected):
    with pytest.raises(ValueError) as info:
        getattr(torch.ops.genad_fast_triton, op)(*args)
    assert str(info.value) == expected


@pytest.mark.skipif(_ext._C is None, reason="genad_fast._C is not built")
@pytest.mark.parametrize("op, args, expected", CASES, ids=[f"{c[0]}: {c[2][:60]}" for c in CASES])
def test_the_cpu_kernel_raises_the_same_text(op, args, expected):
    with pytest.raises(RuntimeError) as info:
        getattr(torch.ops.genad_fast, op)(*args)
    assert str(info.value) == f"genad_fast::{op}: {expected}"
