"""One error text per op contract, on every backend (issue #13, step 2).

The C++ entry points of both devices check their arguments with the functions of csrc/include/genad/host/
(checks.h: one function and one message text per contract; <op>.h: the op's checks and scalar ranges). Here:

- each contract of each op is broken alone and the CPU kernel, called directly (no Python layer in front),
  must raise ``genad_fast::<op>: <text>`` with the text of :data:`TEXT` (the table of checks.h) or the op's
  own scalar text, exactly; tensors on another device reach the CPU kernel through a redispatch to its key;
- a static test keeps argument checks out of the device files: csrc/cuda/*.cu hold no TORCH_CHECK of any kind
  (only launch and error-status checks), and every kernel registered in csrc/cpu or csrc/cuda calls a shared
  ``host::check_*`` function, so a copied check fails here rather than drifting;
- tests/triton_kernels/test_contract_errors_triton.py holds the Triton twins to the same texts.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from genad_fast import _ext

needs_cpu_op = pytest.mark.skipif(_ext._C is None, reason="genad_fast._C is not built")

CSRC = Path(__file__).resolve().parents[1] / "csrc"

# The contract texts of csrc/include/genad/host/checks.h (after "genad_fast::<op>: ").
TEXT = {
    "device": "{name} must be a {backend} tensor for the {backend} kernel, got {device}",
    "same_device": "{name} must be on {ref} device {ref_device}, got {device}",
    "rank": "{name} must be {k}-D, got shape {shape}",
    "dtype": "{name} must be {allowed}, got {dtype}",
    "same_dtype": "{name} must have {ref} dtype {ref_dtype}, got {dtype}",
    "same_shape": "{name} must have {ref} shape {ref_shape}, got {shape}",
    "same_rows": "{name} must have {ref} number of rows {ref_rows}, got {rows}",
    "shape": "{name} must have shape {want}, got {shape}",
    "per_row": "{name} must be a vector of one {unit}, shape [{rows}], got shape {shape}",
    "unit_stride": "{name} must have unit stride on its last dimension, got strides {strides}",
    "contiguous": "{name} must be contiguous, got strides {strides}",
}


def text(contract: str, **fields) -> str:
    """A contract's text; ``ref`` is given as a name and printed as its possessive (x's, queries')."""
    if "ref" in fields:
        fields["ref"] += "'" if fields["ref"].endswith("s") else "'s"
    return TEXT[contract].format(**fields)


def z(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


META = "meta"
F32, F64 = torch.float32, torch.float64

# (op, arguments, expected text after "genad_fast::<op>: "); each breaks one contract of valid arguments.
X, H = z(4, 3), z(4, 6)
Q, R = z(4, 3), z(10, 3)
XT, EPS, A = z(4, 6), z(4, 6), z(4)
RX = z(2, 5, 3)
RES = (z(4, 5), z(4, 5), z(4, 3), z(4, 3))
ADAM = dict(z=z(3, 4), grad=z(3, 4), m=z(3, 4), v=z(3, 4), step=z(3, dtype=torch.int64),
            active=torch.ones(3, dtype=torch.bool))
ADAM_SCALARS = dict(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
LIN = dict(x=z(3, 5), weight=z(4, 5), bias=None, gate=None, gate_slope=0.0, addend=None, slope=None, out_dtype=None)
CONV = dict(x=z(2, 3, 8), weight=z(4, 3, 3), bias=None, length=8, slope=None, pool=False)


# gated_tanh's own text: an odd size along dim cannot be split into gate and filter halves.
EVEN = "x must have an even size along dim {dim} (its two halves are the gate and the filter), got shape {shape}"


def adam(**change):
    """masked_adam_'s arguments in schema order, with some replaced."""
    return tuple((ADAM | ADAM_SCALARS | change).values())


def lin(**change):
    """linear_act's arguments in schema order, with some replaced."""
    return tuple((dict(LIN) | change).values())


def conv(**change):
    """conv1d_act's arguments in schema order, with some replaced."""
    return tuple((dict(CONV) | change).values())


PA = dict(x_a=z(4, 3), x_b=z(4, 4), bias=z(7), log_scale=z(7), perm=torch.tensor([3, 0, 6, 1, 5, 2, 4]), split=2)
PAB = dict(grad_a=z(4, 2), grad_b=z(4, 5), v_a=z(4, 2), v_b=z(4, 5), log_scale=z(7), perm=PA["perm"],
           source_split=3)
# permute_affine's own texts: a perm that is no permutation (the CPU kernel checks it), a split outside [0, D].
PERM = "perm must be a permutation of 0 .. 6, got {got} at position {at} ({why})"
SPLIT = "{name} must be in [0, 7] (a column of the 7 columns), got {got}"


def pa(**change):
    """permute_affine's arguments in schema order, with some replaced."""
    return tuple((dict(PA) | change).values())


def pab(**change):
    """permute_affine_backward's arguments in schema order, with some replaced."""
    return tuple((dict(PAB) | change).values())


CASES = [
    # ---- coupling: x or y [N, D], h [N, 2D], clamp >= 0
    ("coupling_forward", (z(4, 3, dtype=torch.int64), H, 0.0),
     text("dtype", name="x", allowed="float32 or float64", dtype="int64")),
    ("coupling_inverse", (z(4, 3, dtype=torch.int64), H, 0.0),
     text("dtype", name="y", allowed="float32 or float64", dtype="int64")),
    ("coupling_forward", (X, z(4, 2, 3), 0.0), text("rank", name="h", k=2, shape="[4, 2, 3]")),
    ("coupling_forward", (X, z(4, 6, dtype=F64), 0.0),
     text("same_dtype", name="h", ref="x", ref_dtype="float32", dtype="float64")),
    ("coupling_forward", (X, z(5, 6), 0.0), text("same_rows", name="h", ref="x", ref_rows=4, rows=5)),
    ("coupling_forward", (X, z(6, 4).t(), 0.0), text("unit_stride", name="h", strides="[1, 4]")),
    ("coupling_forward", (X, z(4, 5), 0.0), "h must be 2·D = 6 wide (log-scale | shift) for x of width D = 3, got 5"),
    ("coupling_forward", (X, H, -1.0), "clamp must be a finite number >= 0 (0: no clamp), got -1"),
    ("coupling_inverse", (X, H, float("nan")), "clamp must be a finite number >= 0 (0: no clamp), got nan"),
    ("coupling_backward", (z(4, 2), z(4), X, H, 0.0, False),
     text("same_shape", name="grad_out", ref="inp", ref_shape="[4, 3]", shape="[4, 2]")),
    ("coupling_backward", (z(4, 3, dtype=F64), z(4), X, H, 0.0, False),
     text("same_dtype", name="grad_out", ref="inp", ref_dtype="float32", dtype="float64")),
    ("coupling_backward", (X, z(3), X, H, 0.0, True),
     text("per_row", name="grad_logdet", unit="entry per row", rows=4, shape="[3]")),
    ("coupling_backward", (X, z(4, dtype=F64), X, H, 0.0, True),
     text("same_dtype", name="grad_logdet", ref="inp", ref_dtype="float32", dtype="float64")),
    ("coupling_backward", (X, z(4), z(3), H, 0.0, False), text("rank", name="inp", k=2, shape="[3]")),
    # ---- diffusion: data [B, M], coefficients [B], seed and offset >= 0
    ("diffusion_step", (XT, EPS, A[:3], A, A, 0, 0, None),
     text("per_row", name="a", unit="coefficient per sample", rows=4, shape="[3]")),
    ("diffusion_step", (XT, EPS, A, A, z(4, dtype=F64), 0, 0, None),
     text("same_dtype", name="c", ref="the data", ref_dtype="float32", dtype="float64")),
    ("diffusion_step", (XT, EPS[:, :5], A, A, A, 0, 0, None),
     text("same_shape", name="eps", ref="the data", ref_shape="[4, 6]", shape="[4, 5]")),
    ("diffusion_step", (XT, z(4, 6, dtype=torch.float16), A, A, A, 0, 0, None),
     text("dtype", name="eps", allowed="float32 or float64", dtype="float16")),
    ("diffusion_step", (XT, EPS, A, A, A, 0, 0, z(4, 6, dtype=F64)),
     text("same_dtype", name="noise", ref="the data", ref_dtype="float32", dtype="float64")),
    ("diffusion_step", (z(6, 4).t(), EPS, A, A, A, 0, 0, None), text("unit_stride", name="x_t", strides="[1, 4]")),
    ("diffusion_step", (XT, EPS, A, A, A, -1, 0, None), "seed must be in [0, 2^63), got -1"),
    ("diffusion_step", (XT, EPS, A, A, A, 0, -1, None), "offset must be in [0, 2^63), got -1"),
    ("add_noise", (XT[0], A, A, 0, 0, None), text("rank", name="x0", k=2, shape="[6]")),
    ("add_noise", (XT, A, A[:2], 0, 0, None),
     text("per_row", name="b", unit="coefficient per sample", rows=4, shape="[2]")),
    ("add_noise", (XT, A, A, 0, 0, EPS[:3]),
     text("same_shape", name="noise", ref="the data", ref_shape="[4, 6]", shape="[3, 6]")),
    # ---- recon_error_accumulate_: x, x_hat, mask [B, T, C], score [B, T]
    ("recon_error_accumulate_", (z(3), RX, RX, None, 1.0), text("shape", name="score", want="[2, 5]", shape="[3]")),
    ("recon_error_accumulate_", (z(2, 5, dtype=F64), RX, RX, None, 1.0),
     text("same_dtype", name="score", ref="x", ref_dtype="float32", dtype="float64")),
    ("recon_error_accumulate_", (z(2, 5), RX[0], RX[0], None, 1.0), text("rank", name="x", k=3, shape="[5, 3]")),
    ("recon_error_accumulate_", (z(2, 5), RX, RX[:, :, :2], None, 1.0),
     text("same_shape", name="x_hat", ref="x", ref_shape="[2, 5, 3]", shape="[2, 5, 2]")),
    ("recon_error_accumulate_", (z(2, 5), RX, RX, z(2, 5, 3, dtype=F64), 1.0),
     text("same_dtype", name="mask", ref="x", ref_dtype="float32", dtype="float64")),
    ("recon_error_accumulate_", (z(2, 5), RX.int(), RX.int(), None, 1.0),
     text("dtype", name="x", allowed="float32 or float64", dtype="int32")),
    # ---- AnoGAN: x, gx [B, P], fx, fgx [B, F]; masked Adam state [B, L], step int64 [B], active bool [B]
    ("anogan_residual", (RES[0], z(4, 4), *RES[2:], 0.5),
     text("same_shape", name="gx", ref="x", ref_shape="[4, 5]", shape="[4, 4]")),
    ("anogan_residual", (*RES[:3], z(4, 2), 0.5),
     text("same_shape", name="fgx", ref="fx", ref_shape="[4, 3]", shape="[4, 2]")),
    ("anogan_residual", (*RES[:2], z(3, 3), z(3, 3), 0.5), text("same_rows", name="fx", ref="x", ref_rows=4, rows=3)),
    ("anogan_residual", (RES[0], z(4, 5, dtype=F64), *RES[2:], 0.5),
     text("same_dtype", name="gx", ref="x", ref_dtype="float32", dtype="float64")),
    ("anogan_residual", (*RES[:3], z(3, 4).t(), 0.5), text("unit_stride", name="fgx", strides="[1, 4]")),
    ("anogan_residual", (*RES, 2.0), "lam must be a number in [0, 1], got 2"),
    ("masked_adam_", adam(step=z(3)), text("dtype", name="step", allowed="int64", dtype="float32")),
    ("masked_adam_", adam(active=z(3, dtype=torch.int64)), text("dtype", name="active", allowed="bool", dtype="int64")),
    ("masked_adam_", adam(step=z(2, dtype=torch.int64)),
     text("per_row", name="step", unit="update count per row", rows=3, shape="[2]")),
    ("masked_adam_", adam(active=torch.ones(3, 1, dtype=torch.bool)),
     text("per_row", name="active", unit="flag per row", rows=3, shape="[3, 1]")),
    ("masked_adam_", adam(v=z(3, 5)), text("same_shape", name="v", ref="z", ref_shape="[3, 4]", shape="[3, 5]")),
    ("masked_adam_", adam(m=z(3, 4, dtype=F64)),
     text("same_dtype", name="m", ref="z", ref_dtype="float32", dtype="float64")),
    ("masked_adam_", adam(lr=-1.0), "lr must be a finite number >= 0, got -1"),
    ("masked_adam_", adam(beta1=1.0), "beta1 must be in [0, 1), got 1"),
    ("masked_adam_", adam(beta2=-0.5), "beta2 must be in [0, 1), got -0.5"),
    ("masked_adam_", adam(eps=float("inf")), "eps must be a finite number >= 0, got inf"),
    # ---- distance: queries [N, D], refs [M, D]
    ("kde_logpdf", (Q, R.double(), 1.0, False),
     text("same_dtype", name="refs", ref="queries", ref_dtype="float32", dtype="float64")),
    ("kde_logpdf", (Q, R[None], 1.0, False), text("rank", name="refs", k=2, shape="[1, 10, 3]")),
    ("knn_distance", (z(3, 4).t(), R, 1, False), text("unit_stride", name="queries", strides="[1, 4]")),
    ("knn_distance", (Q, R[:, :2], 1, False), "queries and refs must have the same number of columns D, got 3 and 2"),
    ("knn_distance", (Q[:, :0], R[:, :0], 1, False), "rows must have at least one coordinate (D >= 1), got D = 0"),
    ("kde_logpdf", (Q, R, 0.0, False), "bandwidth must be a finite number > 0, got 0"),
    ("kde_logpdf", (Q, R, 1e-200, False), "bandwidth 1e-200 is too small: 1/(2h²) overflows"),
    ("kde_logpdf", (Q, R, 1.0, True), "exclude_self needs the queries to be the refs (N == M), got N = 4, M = 10"),
    ("kde_logpdf", (Q[:1], Q[:1], 1.0, True),
     "exclude_self needs at least 2 refs (each point's density comes from the others), got 1"),
    ("kde_logpdf", (Q, R[:0], 1.0, False), "refs must have at least one row"),
    ("knn_distance", (Q, R, 0, False), "k must be >= 1, got 0"),
    ("knn_distance", (Q, R, 11, False), "k = 11 is larger than the 10 references (M = 10)"),
    ("knn_distance", (R, R, 10, True),
     "k = 10 is larger than the 9 references left once each point's own row is excluded (M = 10)"),
    # ---- philox_normal_: out contiguous float32/float64
    ("philox_normal_", (z(4, 6).t(), 0, 0), text("contiguous", name="out", strides="[1, 6]")),
    ("philox_normal_", (z(4, dtype=torch.int32), 0, 0),
     text("dtype", name="out", allowed="float32 or float64", dtype="int32")),
    ("philox_normal_", (z(4), -1, 0), "seed must be in [0, 2^63), got -1"),
    ("philox_normal_", (z(4), 0, -1), "offset must be in [0, 2^63), got -1"),
    # ---- linear_act: x [M, K], weight [N, K] contiguous, bias [N], gate [M, K], addend [M, N]
    ("linear_act", lin(weight=z(4, 6)), text("shape", name="weight", want="[4, 5]", shape="[4, 6]")),
    ("linear_act", lin(bias=z(2)), text("shape", name="bias", want="[4]", shape="[2]")),
    ("linear_act", lin(gate=z(3, 4)), text("shape", name="gate", want="[3, 5]", shape="[3, 4]")),
    ("linear_act", lin(addend=z(3, 4, dtype=torch.float16)),
     text("dtype", name="addend", allowed="float32 or bfloat16", dtype="float16")),
    ("linear_act", lin(x=z(3, 5, dtype=F64)), text("dtype", name="x", allowed="float32 or bfloat16", dtype="float64")),
    ("linear_act", lin(x=z(5)), text("rank", name="x", k=2, shape="[5]")),
    ("linear_act", lin(weight=z(4, 10)[:, :5]), text("contiguous", name="weight", strides="[10, 1]")),
    ("linear_act", lin(weight=z(5, 4).t()), text("unit_stride", name="weight", strides="[1, 4]")),
    ("linear_act", lin(out_dtype=torch.float16), "out_dtype must be float32 or bfloat16, got float16"),
    # ---- conv1d_act: x [N, C_in, L_in] any strides, weight [C_out, C_in, k], bias [C_out], length >= 1
    ("conv1d_act", conv(x=z(3, 8)), text("rank", name="x", k=3, shape="[3, 8]")),
    ("conv1d_act", conv(weight=z(4, 3)), text("rank", name="weight", k=3, shape="[4, 3]")),
    ("conv1d_act", conv(x=z(2, 3, 8, dtype=torch.int64)),
     text("dtype", name="x", allowed="float32 or float64", dtype="int64")),
    ("conv1d_act", conv(x=z(2, 3, 8, dtype=torch.float16)),
     text("dtype", name="x", allowed="float32 or float64", dtype="float16")),
    ("conv1d_act", conv(weight=z(4, 3, 3, dtype=F64)),
     text("same_dtype", name="weight", ref="x", ref_dtype="float32", dtype="float64")),
    ("conv1d_act", conv(x=z(2, 3, 8, dtype=F64)),
     text("same_dtype", name="weight", ref="x", ref_dtype="float64", dtype="float32")),
    ("conv1d_act", conv(bias=z(4, dtype=F64)),
     text("same_dtype", name="bias", ref="x", ref_dtype="float32", dtype="float64")),
    ("conv1d_act", conv(weight=z(4, 5, 3)), text("shape", name="weight", want="[4, 3, 3]", shape="[4, 5, 3]")),
    ("conv1d_act", conv(bias=z(3)), text("shape", name="bias", want="[4]", shape="[3]")),
    ("conv1d_act", conv(bias=z(4, 1)), text("shape", name="bias", want="[4]", shape="[4, 1]")),
    ("conv1d_act", conv(x=z(2, 0, 8), weight=z(4, 0, 3)),
     "x must have at least one channel and one timestamp, got shape [2, 0, 8]"),
    ("conv1d_act", conv(x=z(2, 3, 0)), "x must have at least one channel and one timestamp, got shape [2, 3, 0]"),
    ("conv1d_act", conv(weight=z(4, 3, 0)), "weight must have at least one output channel and one tap, got shape "
                                            "[4, 3, 0]"),
    ("conv1d_act", conv(weight=z(0, 3, 3)), "weight must have at least one output channel and one tap, got shape "
                                            "[0, 3, 3]"),
    ("conv1d_act", conv(length=0), "length must be >= 1 (the input's length after upsampling), got 0"),
    ("conv1d_act", conv(length=-3), "length must be >= 1 (the input's length after upsampling), got -3"),
    # ---- gated_tanh: x of any rank >= 1 and layout, an even size along dim; backward grad [x's shape, dim halved]
    ("gated_tanh", (z(3, 5), 1), EVEN.format(dim=1, shape="[3, 5]")),
    ("gated_tanh", (z(3, 5), -1), EVEN.format(dim=-1, shape="[3, 5]")),
    ("gated_tanh", (z(2, 3, 4), -2), EVEN.format(dim=-2, shape="[2, 3, 4]")),
    ("gated_tanh", (z(4, 6), 2), "dim must be in [-2, 2) for x of shape [4, 6], got 2"),
    ("gated_tanh", (z(4, 6), -3), "dim must be in [-2, 2) for x of shape [4, 6], got -3"),
    ("gated_tanh", (z(4, 6, dtype=torch.int64), 1),
     text("dtype", name="x", allowed="float32, float64 or bfloat16", dtype="int64")),
    ("gated_tanh", (z(4, 6, dtype=torch.float16), 1),
     text("dtype", name="x", allowed="float32, float64 or bfloat16", dtype="float16")),
    ("gated_tanh", (z(), 0), "x must have at least one dimension, got a scalar"),
    ("gated_tanh_backward", (z(4, 6), z(4, 6), 1), text("shape", name="grad", want="[4, 3]", shape="[4, 6]")),
    ("gated_tanh_backward", (z(4, 3), z(4, 6), 0), text("shape", name="grad", want="[2, 6]", shape="[4, 3]")),
    ("gated_tanh_backward", (z(4, 3, dtype=F64), z(4, 6), 1),
     text("same_dtype", name="grad", ref="x", ref_dtype="float32", dtype="float64")),
    ("gated_tanh_backward", (z(4, 3), z(4, 6, dtype=torch.bfloat16), 1),
     text("same_dtype", name="grad", ref="x", ref_dtype="bfloat16", dtype="float32")),
    ("gated_tanh_backward", (z(4, 3), z(4, 6, dtype=torch.int32), 1),
     text("dtype", name="x", allowed="float32, float64 or bfloat16", dtype="int32")),
    ("gated_tanh_backward", (z(3, 2), z(3, 5), 1), EVEN.format(dim=1, shape="[3, 5]")),
    ("gated_tanh_backward", (z(4, 3), z(4, 6), 5), "dim must be in [-2, 2) for x of shape [4, 6], got 5"),
    # ---- bias_gelu: z [M, N] float32/float64 any strides, bias [N] of z's dtype; backward grad [M, N] of z's dtype
    ("bias_gelu", (z(3), z(3)), text("rank", name="z", k=2, shape="[3]")),
    ("bias_gelu", (z(2, 4, 3), z(3)), text("rank", name="z", k=2, shape="[2, 4, 3]")),
    ("bias_gelu", (z(4, 3, dtype=torch.int64), z(3, dtype=torch.int64)),
     text("dtype", name="z", allowed="float32 or float64", dtype="int64")),
    ("bias_gelu", (z(4, 3, dtype=torch.bfloat16), z(3, dtype=torch.bfloat16)),
     text("dtype", name="z", allowed="float32 or float64", dtype="bfloat16")),
    ("bias_gelu", (z(4, 3), z(3, dtype=F64)), text("same_dtype", name="bias", ref="z", ref_dtype="float32",
                                                    dtype="float64")),
    ("bias_gelu", (z(4, 3), z(4)), text("shape", name="bias", want="[3]", shape="[4]")),
    ("bias_gelu", (z(4, 3), z(1, 3)), text("shape", name="bias", want="[3]", shape="[1, 3]")),
    ("bias_gelu", (z(4, 3), z()), text("shape", name="bias", want="[3]", shape="[]")),
    ("bias_gelu_backward", (z(3, 4), z(4, 3), z(3)), text("shape", name="grad", want="[4, 3]", shape="[3, 4]")),
    ("bias_gelu_backward", (z(4, 3, dtype=F64), z(4, 3), z(3)),
     text("same_dtype", name="grad", ref="z", ref_dtype="float32", dtype="float64")),
    ("bias_gelu_backward", (z(4, 3), z(4, 3), z(2)), text("shape", name="bias", want="[3]", shape="[2]")),
    ("bias_gelu_backward", (z(4, 3), z(4, 3, dtype=F64), z(3, dtype=F64)),
     text("same_dtype", name="grad", ref="z", ref_dtype="float64", dtype="float32")),
    ("bias_gelu_backward", (z(4, 3), z(4, 3, dtype=torch.float16), z(3, dtype=torch.float16)),
     text("dtype", name="z", allowed="float32 or float64", dtype="float16")),
    ("bias_gelu_backward", (z(3), z(3), z(3)), text("rank", name="z", k=2, shape="[3]")),
    # bias_gelu_keep: bias_gelu's contract; bias_gelu_backward_kept: grad of derivative's shape and dtype
    ("bias_gelu_keep", (z(3), z(3)), text("rank", name="z", k=2, shape="[3]")),
    ("bias_gelu_keep", (z(4, 3), z(4)), text("shape", name="bias", want="[3]", shape="[4]")),
    ("bias_gelu_keep", (z(4, 3), z(3, dtype=F64)),
     text("same_dtype", name="bias", ref="z", ref_dtype="float32", dtype="float64")),
    ("bias_gelu_backward_kept", (z(3, 4), z(4, 3)), text("shape", name="grad", want="[4, 3]", shape="[3, 4]")),
    ("bias_gelu_backward_kept", (z(4, 3, dtype=F64), z(4, 3)),
     text("same_dtype", name="grad", ref="derivative", ref_dtype="float32", dtype="float64")),
    ("bias_gelu_backward_kept", (z(4, 3, dtype=torch.float16), z(4, 3, dtype=torch.float16)),
     text("dtype", name="derivative", allowed="float32 or float64", dtype="float16")),
    ("bias_gelu_backward_kept", (z(3), z(3)), text("rank", name="derivative", k=2, shape="[3]")),
    # ---- permute_affine: x_a [N, Da], x_b [N, Db] float32/float64 unit last stride; bias, log_scale [D] of x_a's
    # dtype; perm int64 [D], a permutation; 0 <= split <= D. Backward: grad_a, grad_b of v_a's, v_b's shape and dtype
    ("permute_affine", pa(x_a=z(3)), text("rank", name="x_a", k=2, shape="[3]")),
    ("permute_affine", pa(x_b=z(1, 4, 4)), text("rank", name="x_b", k=2, shape="[1, 4, 4]")),
    ("permute_affine", pa(x_a=z(4, 3, dtype=torch.int64)),
     text("dtype", name="x_a", allowed="float32 or float64", dtype="int64")),
    ("permute_affine", pa(x_a=z(4, 3, dtype=torch.float16)),
     text("dtype", name="x_a", allowed="float32 or float64", dtype="float16")),
    ("permute_affine", pa(x_b=z(4, 4, dtype=F64)),
     text("same_dtype", name="x_b", ref="x_a", ref_dtype="float32", dtype="float64")),
    ("permute_affine", pa(x_b=z(5, 4)), text("same_rows", name="x_b", ref="x_a", ref_rows=4, rows=5)),
    ("permute_affine", pa(x_a=z(3, 4).t()), text("unit_stride", name="x_a", strides="[1, 4]")),
    ("permute_affine", pa(x_b=z(4, 8)[:, ::2]), text("unit_stride", name="x_b", strides="[8, 2]")),
    ("permute_affine", pa(bias=z(7, dtype=F64)),
     text("same_dtype", name="bias", ref="x_a", ref_dtype="float32", dtype="float64")),
    ("permute_affine", pa(bias=z(6)), text("shape", name="bias", want="[7]", shape="[6]")),
    ("permute_affine", pa(log_scale=z(1, 7)), text("shape", name="log_scale", want="[7]", shape="[1, 7]")),
    ("permute_affine", pa(log_scale=z(7, dtype=torch.int32)),
     text("same_dtype", name="log_scale", ref="x_a", ref_dtype="float32", dtype="int32")),
    ("permute_affine", pa(perm=torch.arange(7, dtype=torch.int32)),
     text("dtype", name="perm", allowed="int64", dtype="int32")),
    ("permute_affine", pa(perm=z(7)), text("dtype", name="perm", allowed="int64", dtype="float32")),
    ("permute_affine", pa(perm=torch.arange(6)), text("shape", name="perm", want="[7]", shape="[6]")),
    ("permute_affine", pa(perm=torch.tensor([0, 1, 2, 3, 4, 5, 3])), PERM.format(got=3, at=6, why="a repeat")),
    ("permute_affine", pa(perm=torch.tensor([0, 1, 2, 3, 4, 5, 7])), PERM.format(got=7, at=6, why="out of range")),
    ("permute_affine", pa(perm=torch.tensor([0, -2, 2, 3, 4, 5, 6])), PERM.format(got=-2, at=1, why="out of range")),
    ("permute_affine", pa(split=8), SPLIT.format(name="split", got=8)),
    ("permute_affine", pa(split=-1), SPLIT.format(name="split", got=-1)),
    ("permute_affine_backward", pab(v_a=z(2)), text("rank", name="v_a", k=2, shape="[2]")),
    ("permute_affine_backward", pab(v_b=z(4, 5, dtype=F64)),
     text("same_dtype", name="v_b", ref="v_a", ref_dtype="float32", dtype="float64")),
    ("permute_affine_backward", pab(v_b=z(3, 5)), text("same_rows", name="v_b", ref="v_a", ref_rows=4, rows=3)),
    ("permute_affine_backward", pab(log_scale=z(6)), text("shape", name="log_scale", want="[7]", shape="[6]")),
    ("permute_affine_backward", pab(perm=torch.tensor([6, 6, 5, 4, 3, 2, 1])),
     "perm must be a permutation of 0 .. 6, got 6 at position 1 (a repeat)"),
    ("permute_affine_backward", pab(source_split=8), SPLIT.format(name="source_split", got=8)),
    ("permute_affine_backward", pab(grad_a=z(4, 3)),
     text("same_shape", name="grad_a", ref="v_a", ref_shape="[4, 2]", shape="[4, 3]")),
    ("permute_affine_backward", pab(grad_b=z(4, 5, dtype=F64)),
     text("same_dtype", name="grad_b", ref="v_b", ref_dtype="float32", dtype="float64")),
    ("permute_affine_backward", pab(grad_b=z(5, 4).t()), text("unit_stride", name="grad_b", strides="[1, 4]")),
]


def _id(case) -> str:
    op, _, expected = case
    return f"{op}: {expected[:60]}"


@needs_cpu_op
@pytest.mark.parametrize("op, args, expected", CASES, ids=[_id(c) for c in CASES])
def test_cpu_kernel_raises_the_contract_text(op, args, expected):
    with pytest.raises(RuntimeError) as info:
        getattr(torch.ops.genad_fast, op)(*args)
    assert str(info.value) == f"genad_fast::{op}: {expected}"


# A tensor on another device handed to the CPU kernel itself (a redispatch to its key: the dispatcher would
# otherwise pick the other device's kernel): the device contract, named for the argument.
DEVICE_CASES = [
    ("coupling_forward", (X, z(4, 6, device=META), 0.0), "h"),
    ("coupling_backward", (X, z(4, device=META), X, H, 0.0, False), "grad_logdet"),
    ("diffusion_step", (XT, z(4, 6, device=META), A, A, A, 0, 0, None), "eps"),
    ("add_noise", (XT, z(4, device=META), A, 0, 0, None), "a"),
    ("recon_error_accumulate_", (z(2, 5, device=META), RX, RX, None, 1.0), "score"),
    ("anogan_residual", (*RES[:3], z(4, 3, device=META), 0.5), "fgx"),
    ("masked_adam_", adam(step=z(3, dtype=torch.int64, device=META)), "step"),
    ("kde_logpdf", (Q, z(10, 3, device=META), 1.0, False), "refs"),
    ("knn_distance", (z(4, 3, device=META), R, 1, False), "queries"),
    ("philox_normal_", (z(4, device=META), 0, 0), "out"),
    ("linear_act", lin(addend=z(3, 4, device=META)), "addend"),
    ("conv1d_act", conv(weight=z(4, 3, 3, device=META)), "weight"),
    ("conv1d_act", conv(bias=z(4, device=META)), "bias"),
    ("gated_tanh", (z(4, 6, device=META), 1), "x"),
    ("gated_tanh_backward", (z(4, 3, device=META), z(4, 6), 1), "grad"),
    ("gated_tanh_backward", (z(4, 3), z(4, 6, device=META), 1), "x"),
    ("bias_gelu", (z(4, 3, device=META), z(3)), "z"),
    ("bias_gelu", (z(4, 3), z(3, device=META)), "bias"),
    ("bias_gelu_backward", (z(4, 3, device=META), z(4, 3), z(3)), "grad"),
    ("bias_gelu_backward", (z(4, 3), z(4, 3), z(3, device=META)), "bias"),
    ("permute_affine", pa(x_a=z(4, 3, device=META)), "x_a"),
    ("permute_affine", pa(x_b=z(4, 4, device=META)), "x_b"),
    ("permute_affine", pa(log_scale=z(7, device=META)), "log_scale"),
    ("permute_affine", pa(perm=PA["perm"].to(META)), "perm"),
    ("permute_affine_backward", pab(grad_a=z(4, 2, device=META)), "grad_a"),
    ("permute_affine_backward", pab(v_b=z(4, 5, device=META)), "v_b"),
]


@needs_cpu_op
@pytest.mark.parametrize("op, args, name", DEVICE_CASES, ids=[f"{c[0]}-{c[2]}" for c in DEVICE_CASES])
def test_cpu_kernel_refuses_a_tensor_on_another_device(op, args, name):
    keyset = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError) as info:
        getattr(torch.ops.genad_fast, op).default.redispatch(keyset, *args)
    assert str(info.value) == f"genad_fast::{op}: " + text("device", name=name, backend="CPU", device="meta")


@needs_cpu_op
def test_written_tensors_that_alias_their_inputs_are_refused():
    # recon_error_accumulate_ writes score in place: overlapping x, or several timestamps sharing one element.
    # (ATen's checks, the same call on both devices; overlaps it cannot judge, e.g. a strided slice of x, are the
    # Python layer's to refuse.)
    buffer = torch.zeros(40)
    x = buffer[:30].view(2, 5, 3)
    with pytest.raises(RuntimeError, match="some elements of the input tensor and the written-to tensor refer to a "
                                           "single memory location"):
        torch.ops.genad_fast.recon_error_accumulate_(buffer[5:15].view(2, 5), x, torch.zeros(2, 5, 3), None, 1.0)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor refers to a single memory "
                                           "location"):
        torch.ops.genad_fast.recon_error_accumulate_(torch.zeros(1, 5).expand(2, 5), x, x, None, 1.0)


@needs_cpu_op
def test_texts_shared_with_the_python_layer_stay_value_errors():
    # Two contracts keep the Python op layer's text (and its ValueError) on every backend: no channels to average
    # over, and a step count that would wrap.
    with pytest.raises(ValueError) as info:
        torch.ops.genad_fast.recon_error_accumulate_(z(2, 5), z(2, 5, 0), z(2, 5, 0), None, 1.0)
    assert str(info.value) == ("x must have at least one channel (C >= 1), got shape (2, 5, 0): the mean over "
                               "channels of an empty set is undefined")
    step = torch.tensor([0, -1, 0])
    with pytest.raises(ValueError) as info:
        torch.ops.genad_fast.masked_adam_(*adam(step=step))
    assert str(info.value) == ("masked_adam_: step must hold update counts in [0, 2^63 - 1) (2^63 - 1 would wrap "
                               "when incremented), got -1")


# ---- static: the device files keep kernels and launch code only -------------------------------------------------

_CHECK_MACRO = re.compile(r"\bTORCH_CHECK\w*\s*\(")
_IMPL = re.compile(r'm\.impl\(\s*"(\w+)"\s*,\s*&([\w:]+)\s*\)')
# csrc/cpu registers each compilation's kernel in its op's stub (genad/cpu_dispatch.h): op "philox_normal_" -> stub
# "philox_normal_stub"; the op registered once with the dispatcher (csrc/cpu_dispatch.cpp) only calls the stub.
_STUB = re.compile(r'GENAD_REGISTER_KERNEL\(\s*(\w+?)_stub\s*,\s*&([\w:]+)\s*\)')
_FUNCTION = re.compile(r"^[A-Za-z_][^;{}()#]*?\b(\w+)\s*\(([^;{}]*?)\)\s*(?:const\s*)?\{", re.M | re.S)
# Checks that belong to one kernel, not to the op's contract: the limits of its own arithmetic.
_CPU_KERNEL_LIMITS = ("is too small for ", "the CPU kernel takes at most 2^31 - 1")


def _functions(source: str) -> dict[str, str]:
    """Each function defined at namespace level in a C++ file, by name: its body."""
    bodies = {}
    for m in _FUNCTION.finditer(source):
        depth, i = 1, m.end()
        while depth and i < len(source):
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        bodies.setdefault(m.group(1), source[m.end():i])
    return bodies


def _reaches_shared_check(name: str, bodies: dict[str, str], seen: set[str]) -> bool:
    body = bodies.get(name, "")
    if re.search(r"\bhost::check_\w+\(", body):
        return True
    seen.add(name)
    called = set(re.findall(r"\b(\w+)\s*(?:<[^<>;]*>)?\s*\(", body)) & bodies.keys()
    return any(_reaches_shared_check(c, bodies, seen) for c in called - seen)


def _device_files(folder: str, *patterns: str) -> list[Path]:
    files = sorted(p for pattern in patterns for p in (CSRC / folder).glob(pattern))
    assert files, f"no sources under csrc/{folder}"
    return files


def test_cuda_files_check_no_argument_of_their_own():
    for path in _device_files("cuda", "*.cu", "*.cuh"):
        source = path.read_text()
        found = [source[:m.start()].count("\n") + 1 for m in _CHECK_MACRO.finditer(source)]
        assert not found, (f"{path.relative_to(CSRC)} lines {found}: argument checks belong in "
                           "csrc/include/genad/host/<op>.h, called by both the CPU and the CUDA entry point")


def test_cpu_files_check_only_their_own_kernel_limits():
    for path in _device_files("cpu", "*.cpp", "*.h"):
        source = path.read_text()
        for m in _CHECK_MACRO.finditer(source):
            statement = source[m.start():source.index(";", m.start())]
            assert any(limit in statement for limit in _CPU_KERNEL_LIMITS), (
                f"{path.relative_to(CSRC)} line {source[:m.start()].count(chr(10)) + 1}: an argument check outside "
                "csrc/include/genad/host/<op>.h")


@pytest.mark.parametrize("folder, patterns", [("cpu", ("*.cpp",)), ("cuda", ("*.cu",))])
def test_every_registered_kernel_calls_the_shared_checks(folder, patterns):
    registered = set()
    for path in _device_files(folder, *patterns):
        source = path.read_text()
        bodies = _functions(source)
        for op, fn in _IMPL.findall(source) + _STUB.findall(source):
            registered.add(op.rstrip("_"))
            assert _reaches_shared_check(fn.rsplit("::", 1)[-1], bodies, set()), (
                f"{path.relative_to(CSRC)}: the kernel of {op} ({fn}) calls no host::check_* function")
    schemas = set(re.findall(r'm\.def\(\s*"(\w+)\(', (CSRC / "ops.cpp").read_text()))
    assert registered == {s.rstrip("_") for s in schemas}  # every op of csrc/ops.cpp has a kernel on this device, and each was looked at
