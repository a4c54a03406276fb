"""genad_fast.nn.adam: torch.optim.Adam's CPU update without torch.optim, checked against it bit for bit."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from genad_fast.nn.adam import Adam, make_adam


def _twins(seed: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (), (3, 4, 2)]
    a = [nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    return a, [nn.Parameter(p.detach().clone()) for p in a]


@pytest.mark.parametrize("kwargs", [{}, {"betas": (0.5, 0.9)}, {"weight_decay": 1e-3}, {"lr": 3e-2, "eps": 1e-6}],
                         ids=["defaults", "gan-betas", "weight-decay", "lr-eps"])
def test_the_same_bits_as_torch_optim_adam_step_for_step(kwargs):
    ours, theirs = _twins(0)
    mine, ref = Adam(ours, **kwargs), torch.optim.Adam(theirs, **kwargs)
    g = torch.Generator().manual_seed(1)
    for step in range(30):
        for k, (p, q) in enumerate(zip(ours, theirs)):
            # a parameter without a gradient in a step (here the second one, every third step) is left alone
            grad = None if (k == 1 and step % 3 == 0) else torch.randn(p.shape, generator=g) * 10 ** (k - 2)
            p.grad, q.grad = grad, None if grad is None else grad.clone()
        mine.step()
        ref.step()
        for p, q in zip(ours, theirs):
            assert torch.equal(p, q), (step, p, q)
    for p, q in zip(ours, theirs):
        m, v, count = mine.state[p]
        assert torch.equal(m, ref.state[q]["exp_avg"]) and torch.equal(v, ref.state[q]["exp_avg_sq"])
        assert count[0] == int(ref.state[q]["step"])


def test_zero_grad_and_make_adam():
    ours, _ = _twins(2)
    for p in ours:
        p.grad = torch.ones_like(p)
    opt = make_adam(ours, lr=1e-2)
    assert isinstance(opt, Adam)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)
    opt.step()  # no gradients: nothing moves, no state
    assert not opt.state


@pytest.mark.parametrize("kwargs, match", [({"lr": -1.0}, "learning rate"), ({"eps": -1e-8}, "epsilon"),
                                           ({"betas": (1.0, 0.999)}, "beta parameter at index 0"),
                                           ({"betas": (0.9, -0.1)}, "beta parameter at index 1"),
                                           ({"weight_decay": -1.0}, "weight_decay")])
def test_bad_hyper_parameters_are_refused_as_torch_refuses_them(kwargs, match):
    params, twins = _twins(3)
    with pytest.raises(ValueError, match=match):
        Adam(params, **kwargs)
    with pytest.raises(ValueError, match=match):
        torch.optim.Adam(twins, **kwargs)
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])


def test_a_parameter_off_the_cpu_is_refused_by_name():
    p = nn.Parameter(torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match="runs on the CPU; got a parameter on meta"):
        Adam([p])
