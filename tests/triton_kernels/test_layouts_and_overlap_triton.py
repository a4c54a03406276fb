"""Issue #12 on the Triton backend (interpreter): in-place arguments that overlap are refused with the message of the
other backends, and so are bad step counts and zero channels. (Inputs of any layout equal the reference: the
spec's layout checks, run by test_<op>_triton.py.)"""
from __future__ import annotations

import pytest
import torch

from genad_fast import ops

pytestmark = pytest.mark.triton


def _adam_args(B=4, L=5):
    return dict(z=torch.zeros(B, L), grad=torch.zeros(B, L), m=torch.zeros(B, L), v=torch.zeros(B, L),
                step=torch.zeros(B, dtype=torch.int64), active=torch.ones(B, dtype=torch.bool))


@pytest.mark.parametrize("change, match", [
    (dict(z=torch.zeros(1, 5).expand(4, 5)), "z is written in place but several of its elements share"),
    (dict(step=torch.zeros(1, dtype=torch.int64).expand(4)), "step is written in place but several of its"),
    (dict(m=torch.zeros(4, 12)[:, :5], v=None), "m is written in place and overlaps v"),
])
def test_masked_adam_refuses_overlapping_arguments(change, match):
    args = _adam_args()
    args.update(change)
    if "v" in change:
        args["v"] = args["m"]
    with pytest.raises(ValueError, match=match):
        ops.masked_adam_(**args, lr=0.1, backend="triton")


@pytest.mark.parametrize("bad", [-1, 2**63 - 1])
def test_masked_adam_refuses_step_counts_out_of_range(bad):
    args = _adam_args()
    args["step"][1] = bad
    with pytest.raises(ValueError, match=r"step must hold update counts in \[0, 2\^63 - 1\)"):
        ops.masked_adam_(**args, lr=0.1, backend="triton")
    assert (args["z"] == 0).all() and (args["step"][[0, 2, 3]] == 0).all()


def test_recon_error_refuses_aliased_scores_and_zero_channels():
    x = torch.arange(30.0).reshape(2, 5, 3)
    with pytest.raises(ValueError, match="score is written in place and overlaps x"):
        ops.recon_error_accumulate_(x[:, :, 0], x, torch.zeros(2, 5, 3), backend="triton")
    with pytest.raises(ValueError, match="score is written in place but several of its elements share"):
        ops.recon_error_accumulate_(torch.zeros(1, 5).expand(2, 5), x, x, backend="triton")
    with pytest.raises(ValueError, match=r"x must have at least one channel \(C >= 1\)"):
        ops.recon_error_accumulate_(torch.zeros(2, 5), x[:, :, :0], x[:, :, :0], backend="triton")

