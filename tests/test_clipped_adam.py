"""ClippedFusedAdam (genad_fast.nn.clipped_adam): the update of clip_grad_norm_ followed by torch's fused Adam, with
the clip folded into the Adam pass."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from genad_fast.nn.clipped_adam import ClippedFusedAdam


def _model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 3)).to(dtype)


def _grads(model: nn.Module, step: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(step)
    for p in model.parameters():
        p.grad = scale * torch.randn(p.shape, generator=gen, dtype=p.dtype)


def _run_both(dtype: torch.dtype, max_norm: float, scale: float, weight_decay: float = 0.0, steps: int = 6):
    ref, ours = _model(dtype), _model(dtype)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=weight_decay, fused=True)
    our_opt = ClippedFusedAdam(ours.parameters(), lr=1e-2, weight_decay=weight_decay, max_norm=max_norm)
    for k in range(steps):
        _grads(ref, k, scale)
        _grads(ours, k, scale)
        if max_norm > 0:
            nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
        ref_opt.step()
        our_opt.step()
    return ref, ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_equals_clip_then_fused_adam_when_the_clip_acts(dtype, weight_decay):
    ref, ours = _run_both(dtype, max_norm=0.5, scale=3.0, weight_decay=weight_decay)
    for p, q in zip(ref.parameters(), ours.parameters()):
        torch.testing.assert_close(q, p)  # g / c against g · (1 / c): float rounding only
    # the clip did act: without it the parameters move differently
    unclipped, _ = _run_both(dtype, max_norm=0.0, scale=3.0, weight_decay=weight_decay)
    assert any(not torch.allclose(p, q) for p, q in zip(unclipped.parameters(), ours.parameters()))


@pytest.mark.parametrize("max_norm", [0.0, 1e6])
def test_without_a_clip_it_is_torchs_fused_adam_bit_for_bit(max_norm):
    ref, ours = _run_both(torch.float32, max_norm=max_norm, scale=1.0)
    for p, q in zip(ref.parameters(), ours.parameters()):
        assert torch.equal(p, q)


def test_a_parameter_without_gradient_is_left_alone_and_keeps_its_step_count():
    model = _model(torch.float32)
    first, last = model[0].weight, model[2].weight
    opt = ClippedFusedAdam(model.parameters(), lr=1e-2, max_norm=5.0)
    before = last.detach().clone()
    for k in range(3):
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())
        _grads(model, k, 1.0)
        if k < 2:
            last.grad = None
        opt.step()
        if k < 2:  # no gradient: not moved, no state
            assert torch.equal(last, before) and last not in opt.state
    assert int(opt.state[first][2]) == 3 and int(opt.state[last][2]) == 1
    assert not torch.equal(last, before)  # its one step


def test_zero_grad_without_none_zeroes_in_place():
    model = _model(torch.float32)
    opt = ClippedFusedAdam(model.parameters())
    _grads(model, 0, 1.0)
    grad = model[0].weight.grad
    opt.zero_grad(set_to_none=False)
    assert model[0].weight.grad is grad and not grad.any()


def test_refuses_parameters_the_fused_kernel_cannot_take():
    with pytest.raises(ValueError, match="fused Adam kernel.*meta"):
        ClippedFusedAdam([nn.Parameter(torch.zeros(3, device="meta"))])


def test_a_flow_fit_does_not_import_torch_dynamo():
    """torch.optim's first call imports torch._dynamo (~1 s of CPU in a fresh process); the flow's fit avoids it."""
    code = ("import sys, numpy as np\n"
            "from genad_fast.detectors.flow import FlowDetector\n"
            "FlowDetector(epochs=1, verbose=False).fit(np.random.default_rng(0).normal(size=(300, 4)))\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
