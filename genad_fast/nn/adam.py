"""Adam on the CPU without ``torch.optim``: the update ``torch.optim.Adam`` runs there by default, the same
operations in the same order, so the same bits (Kingma & Ba, "Adam", ICLR 2015; weight decay as L2 added to the
gradient, as ``torch.optim.Adam``):

    t += 1;   g ← g + λ·θ  (λ > 0 only);   m ← lerp(m, g, 1 − β1);   v ← v·β2 + (1 − β2)·g²
    θ ← θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)

Why: building any ``torch.optim`` optimiser imports ``torch._dynamo`` (its ``add_param_group`` is wrapped by
``torch._disable_dynamo``), and with it sympy: ~1.2 s of CPU at the first fit of every fresh process, i.e. of every
CLI call, more than a small fit's training (a 400 × 4 autoencoder fit: 0.94 s with it, 0.14 s without, on one
Sapphire Rapids core). On the CPU ``torch.optim.Adam`` has no foreach or fused default: it runs this loop, one
parameter at a time (``_single_tensor_adam``), and tests/test_adam.py checks the two step for step, bit for bit.
:func:`make_adam` keeps ``torch.optim.Adam`` for parameters off the CPU (CUDA: its multi-tensor kernels).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["Adam", "Optimiser", "make_adam"]


class Optimiser:
    """What the training loops use of an optimiser: ``params``, ``zero_grad()`` and ``step()``."""

    params: list[nn.Parameter]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        raise NotImplementedError


def check_adam_args(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """``torch.optim.Adam``'s checks of its hyper-parameters, with its messages."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimiser):
    """Adam over CPU ``params`` (module docstring). The state (first and second moments, step count) is created at
    a parameter's first step, and a parameter whose gradient is None in a step is left alone, as in
    ``torch.optim.Adam``."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        check_adam_args(lr, betas, eps, weight_decay)
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if p.device.type != "cpu":
                raise ValueError(f"genad_fast.nn.adam.Adam runs on the CPU; got a parameter on {p.device} "
                                 "(make_adam gives torch.optim.Adam there)")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.state: dict[nn.Parameter, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for p in self.params:
            if p.grad is None:
                continue
            exp_avg, exp_avg_sq, count = self._state(p)
            count[0] += 1
            # torch counts in a float32 tensor and reads it back as a float: the same value below 2^24 steps
            step = float(count[0])
            grad = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = self.lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)

    def _state(self, p: nn.Parameter) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        state = self.state.get(p)
        if state is None:
            state = (torch.zeros_like(p, memory_format=torch.preserve_format),
                     torch.zeros_like(p, memory_format=torch.preserve_format), [0])
            self.state[p] = state
        return state


def make_adam(params: Iterable[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
              weight_decay: float = 0.0) -> Adam | torch.optim.Adam:
    """:class:`Adam` where every parameter is on the CPU, else ``torch.optim.Adam`` (the same update)."""
    params = list(params)
    if params and all(p.device.type == "cpu" for p in params):
        return Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
