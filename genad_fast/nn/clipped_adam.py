"""Adam with the global-norm gradient clip folded into torch's fused Adam kernel: one training step's tail.

The update is Adam's (Kingma & Ba, ICLR 2015; weight decay as L2 added to the gradient, as ``torch.optim.Adam``)
on gradients clipped to a global norm (Pascanu, Mikolov & Bengio, ICML 2013), i.e. what

    torch.nn.utils.clip_grad_norm_(params, max_norm);  torch.optim.Adam(params, fused=True).step()

computes, with the clip applied inside the Adam pass instead of as a pass of its own:

    n = ‖(‖g_1‖, …, ‖g_k‖)‖₂          (one ``_foreach_norm`` over the gradients)
    c = max(1, (n + 1e-6) / max_norm)  (clip_grad_norm_'s coefficient, inverted: 1 when no clip is needed)
    Adam step on g_i / c              (``torch._fused_adam_``'s ``grad_scale``, which divides each gradient by c)

The results equal the two calls' to float rounding (g / c against g · (1 / c)). What it saves is a pass that rescales
every gradient and ``torch.optim``'s per-step Python, ~0.6 ms of a ~22 ms step of the flow at 32 features and ~1.4 ms
at 1,544 (docs/training_speed.md), and ``torch.optim``'s import of ``torch._dynamo`` on its first use, ~1 s of CPU in
a fresh process (each CLI call).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from genad_fast.nn.adam import Optimiser

__all__ = ["ClippedFusedAdam"]

_EPS_NORM = 1e-6  # clip_grad_norm_'s guard against a zero norm


class ClippedFusedAdam(Optimiser):
    """Adam over ``params`` with gradients clipped to the global norm ``max_norm`` (0: no clip), on CPU or CUDA.

    ``zero_grad()`` and ``step()`` as a ``torch.optim`` optimiser; parameters whose gradient is None in a step are
    left alone, as ``torch.optim.Adam`` leaves them. The state (step counts, first and second moments) is created on
    a parameter's first step, so the step count is per parameter, as there.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, max_norm: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        for p in self.params:
            if p.device.type not in ("cpu", "cuda") or not p.dtype.is_floating_point:
                raise ValueError(f"ClippedFusedAdam runs torch's fused Adam kernel, for floating-point parameters "
                                 f"on CPU or CUDA; got a {p.dtype} parameter on {p.device}")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.max_norm = float(max_norm)
        self._devices = len({p.device for p in self.params})
        self.state: dict[nn.Parameter, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self) -> None:
        live = [p for p in self.params if p.grad is not None]
        if not live:
            return
        scale = self._clip_scale([p.grad for p in live])
        groups: dict[tuple[torch.device, torch.dtype], list[nn.Parameter]] = {}
        for p in live:
            groups.setdefault((p.device, p.dtype), []).append(p)
        for (device, _), group in groups.items():
            states = [self._state(p) for p in group]
            steps = [s[2] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(group, [p.grad for p in group], [s[0] for s in states], [s[1] for s in states], [],
                               steps, lr=self.lr, beta1=self.betas[0], beta2=self.betas[1],
                               weight_decay=self.weight_decay, eps=self.eps, amsgrad=False, maximize=False,
                               grad_scale=None if scale is None else scale.to(device), found_inf=None)

    def _clip_scale(self, grads: list[torch.Tensor]) -> torch.Tensor | None:
        """c = max(1, (‖g‖ + 1e-6) / max_norm) as a float32 scalar tensor (the fused kernel divides by it), or None
        when there is no clip."""
        if self.max_norm <= 0:
            return None
        norms = torch._foreach_norm(grads)
        if self._devices > 1:  # the norms of each device's gradients, gathered on the first one
            norms = [n.to(norms[0].device) for n in norms]
        total = torch.linalg.vector_norm(torch.stack(norms))
        return torch.clamp((total.float() + _EPS_NORM) / self.max_norm, min=1.0)

    def _state(self, p: nn.Parameter) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = self.state.get(p)
        if state is None:
            state = (torch.zeros_like(p, memory_format=torch.preserve_format),
                     torch.zeros_like(p, memory_format=torch.preserve_format),
                     torch.zeros((), dtype=torch.float32, device=p.device))
            self.state[p] = state
        return state
