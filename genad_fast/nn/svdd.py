"""Deep Support Vector Data Description (Ruff et al., "Deep One-Class Classification", ICML 2018).

A network φ maps normal data into a small hypersphere of centre c in its output space. With n
training samples and weight decay λ (Adam's ``weight_decay``):

    one-class:      min_W  (1/n) Σ_i ||φ(x_i) - c||²                                   + λ/2 Σ ||W||²
    soft-boundary:  min_{W,R}  R² + 1/(ν n) Σ_i max(0, ||φ(x_i) - c||² - R²)           + λ/2 Σ ||W||²

and the anomaly score is ``s(x) = ||φ(x) - c||²`` (one-class) or ``||φ(x) - c||² - R²`` (soft-boundary:
positive outside the sphere). ν ∈ (0, 1] bounds the fraction of training points outside the sphere
from above (the paper's ν-property, Prop. 4).

What keeps the problem from collapsing to a constant map (every x at c, all scores 0):

- c is fixed, never learned: the mean of φ(x) over the training data from an initial forward pass,
  with coordinates nearer 0 than ``eps`` moved to ±eps — a coordinate at 0 is reached by a unit whose
  weights are all zero, the trivial solution of Prop. 1;
- φ has no bias terms (Prop. 2: with a bias, zero weights and bias = c give every input the centre)
  and no affine batch normalisation (its learned shift is a bias): see :func:`svdd_network`;
- the activation is unbounded (leaky ReLU; Prop. 3: a bounded activation can saturate to a constant).

The radius R of the soft-boundary objective is not trained by gradient steps: the problem in R for
fixed weights is solved exactly (the paper alternates the two: SGD on W, then R by a line search).
With d_i = ||φ(x_i) - c|| sorted ascending, d_(1) <= ... <= d_(n), the objective
R² + 1/(νn) Σ max(0, d_i² - R²) has subgradient in R² equal to 1 - #{d_i > R}/(νn), so it is minimised by
the order statistic R = d_(n - ⌊νn⌋) (0 if ⌊νn⌋ = n): the (1 - ν)-quantile, taken so that at most ⌊νn⌋
training points — a fraction ν at most — lie outside the sphere (:meth:`DeepSVDD.solve_radius`). The
detector solves it after every epoch once the warm-up epochs are over (R = 0 before: the network first
contracts the data towards c).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from genad_fast.nn.blocks import make_encoder

__all__ = ["DeepSVDD", "OBJECTIVES", "assert_bias_free", "guard_center", "svdd_loss", "svdd_network"]

OBJECTIVES = ("one-class", "soft-boundary")


def svdd_network(sample_shape: Sequence[int], hidden: Sequence[int], rep_dim: int, *, kernel_size: int = 5,
                 batch_norm: bool = False) -> nn.Module:
    """φ for Deep SVDD: the shared encoder (:func:`genad_fast.nn.blocks.make_encoder`) without any bias.

    No linear/convolution bias and, with ``batch_norm``, ``affine=False``: any additive parameter would let
    the network output the constant c for every input (Ruff et al., Prop. 2), a hypersphere of radius 0.
    """
    # bias=False is the point: Deep SVDD's loss is minimised to 0 by a network that ignores its input and
    # outputs c through its biases (zero weights). Without any additive parameter that constant map is out
    # of reach (without batch norm, φ(0) = 0 != c: the centre guard keeps every |c_j| >= eps).
    return make_encoder(sample_shape, hidden, rep_dim, kernel_size=kernel_size, bias=False, batch_norm=batch_norm)


def assert_bias_free(module: nn.Module) -> None:
    """Raise ValueError if ``module`` has a bias parameter or an affine normalisation layer."""
    for name, sub in module.named_modules():
        where = f"{name or 'the network'} ({type(sub).__name__})"
        if getattr(sub, "affine", False) or getattr(sub, "elementwise_affine", False):
            raise ValueError(f"Deep SVDD needs a bias-free network, but {where} is an affine normalisation "
                             f"layer (its learned shift is a bias)")
        if getattr(sub, "bias", None) is not None:
            raise ValueError(f"Deep SVDD needs a bias-free network, but {where} has a bias")


def guard_center(c: torch.Tensor, eps: float) -> torch.Tensor:
    """``c`` with every coordinate nearer 0 than ``eps`` moved to ``±eps`` (its sign; 0 goes to +eps)."""
    small = c.abs() < eps
    signed = torch.where(c < 0, torch.full_like(c, -eps), torch.full_like(c, eps))
    return torch.where(small, signed, c)


class DeepSVDD(nn.Module):
    """φ plus the hypersphere: buffers ``center`` (c, ``[rep_dim]``) and ``radius`` (R, a scalar).

    Both are buffers, so they travel with ``state_dict()`` (the training loop's best-epoch snapshot
    keeps R with the weights it belongs to) and are never touched by the optimiser.
    """

    def __init__(self, net: nn.Module, rep_dim: int, objective: str = "one-class", nu: float = 0.1) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if not 0.0 < float(nu) <= 1.0:
            raise ValueError(f"nu must be in (0, 1], got {nu!r}")
        assert_bias_free(net)
        self.net = net
        self.objective = objective
        self.nu = float(nu)
        self.register_buffer("center", torch.zeros(rep_dim))
        self.register_buffer("radius", torch.zeros(()))

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """c = 0 and R = 0 until :meth:`init_center` and :meth:`solve_radius` set them from data
        (:func:`genad_fast.nn.init.init_module_`; φ initialises itself)."""
        self.center.zero_()
        self.radius.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """``||φ(x) - c||²`` per sample, ``[N]``."""
        return (self.net(x) - self.center).square().sum(-1)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly scores ``[N]``: ``||φ(x) - c||²``, minus R² for the soft-boundary objective."""
        d = self.distances(x)
        return d - self.radius.square() if self.objective == "soft-boundary" else d

    @torch.no_grad()
    def _all_distances(self, data: torch.Tensor, batch_size: int) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self.distances(data[i:i + batch_size]) for i in range(0, data.shape[0], batch_size)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def init_center(self, data: torch.Tensor, batch_size: int, eps: float = 0.1) -> None:
        """c = mean of φ(x) over ``data`` (one forward pass, eval mode), then :func:`guard_center`."""
        was_training = self.training
        self.eval()
        try:
            total = torch.zeros_like(self.center, dtype=torch.float64)
            for i in range(0, data.shape[0], batch_size):
                total += self.net(data[i:i + batch_size]).to(torch.float64).sum(0)
        finally:
            self.train(was_training)
        self.center.copy_(guard_center(total / data.shape[0], eps))

    @torch.no_grad()
    def solve_radius(self, data: torch.Tensor, batch_size: int) -> float:
        """Set R to its optimum for the current weights: ``d_(n - ⌊νn⌋)``, d_i = ||φ(x_i) - c|| over ``data``."""
        dist = np.sort(self._all_distances(data, batch_size).to(torch.float64).clamp_min(0).sqrt().cpu().numpy())
        n = dist.shape[0]
        k = n - int(math.floor(self.nu * n))  # 1-based rank of the radius
        r = float(dist[k - 1]) if k >= 1 else 0.0
        self.radius.fill_(r)
        return r


def svdd_loss(model: DeepSVDD, batch: torch.Tensor) -> torch.Tensor:
    """The batch estimate of the objective (without the weight decay, which Adam applies)."""
    d = model.distances(batch)
    if model.objective == "soft-boundary":
        r2 = model.radius.square()
        return r2 + torch.relu(d - r2).mean() / model.nu
    return d.mean()
