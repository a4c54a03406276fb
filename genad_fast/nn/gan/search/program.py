"""The networks as programs: the loss of the latent search and its gradient dL/dz, one call per iteration.

A program binds to a working set of rows (z, x, f(x)) and returns a function of no arguments that
computes ``(loss [n], dL/dz [n, latent_dim])`` at the current z; ``forward(z)`` gives G(z) and f(G(z))
as the iterations computed them (the final pass of :mod:`~genad_fast.nn.gan.search.loss`). Two kinds:

Backward written out (:class:`_MLPProgram`). For the MLPs of :mod:`genad_fast.nn.gan.networks` (stacks of
``Linear`` and ``LeakyReLU``) the vector–Jacobian product is written out: ``g <- leaky_relu_backward(g) @ W``
per layer, with the two incoming gradients joined by one in-place ``addmm_`` (``dL/dG(z) + dL/df · J_f``),
into buffers allocated once and bound to the working set once, so an iteration is a flat list of its ten
matrix products and a handful of element-wise passes (no autograd graph, no slicing, no allocation but the
residual op's outputs). On the compiled CPU kernels the same program runs as ``linear_act`` calls instead
(:mod:`~genad_fast.nn.gan.search.linear_act`).

Autograd (:class:`_AutogradProgram`). Other networks (the convolutional ones) go through
``torch.autograd.grad(outputs=(G(z), f(G(z))), inputs=z, grad_outputs=(dL/dG(z), dL/df))``.

bfloat16 products (``matmul_dtype=torch.bfloat16``): the networks' matrix products run in bfloat16
with float32 accumulation, as autocast would (the hand-written path keeps bfloat16 copies of the
weights; the autograd path uses ``torch.autocast``); z, the Adam state, the residual and the score
stay float32.
"""
from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from genad_fast.nn.gan.search.layers import _Layer, _mlp_layers
from genad_fast.nn.gan.search.linear_act import _layer_op_runs, _LinearActPlan

__all__ = ["make_program"]


_GX, _FGX = "dL/dG(z)", "dL/df(G(z))"   # stand-ins in a plan for the residual op's fresh gradient tensors


class _MLPProgram:
    """Loss and dL/dz of an MLP generator and MLP critic features, backward written out.

    Buffers for ``capacity`` rows are allocated once; a working set of n rows uses their first n
    rows (contiguous views), so compaction allocates nothing and a segment's tensors are static.
    :meth:`bind` turns one iteration into a flat list of calls with every view fixed.
    """

    def __init__(self, g_layers: list[_Layer], f_layers: list[_Layer], capacity: int,
                 matmul_dtype: torch.dtype | None, device: torch.device, dtype: torch.dtype,
                 layer_op: bool = False) -> None:
        self.dtype = dtype
        self.mdtype = matmul_dtype or dtype
        cast = (lambda t: None if t is None else t.detach().to(device=device, dtype=self.mdtype))
        # Weights stored as W^T [in, out] (contiguous) for the forward product and W [out, in] for the backward.
        self.g = [(cast(l.weight).t().contiguous(), cast(l.weight).contiguous(), cast(l.bias), l.slope)
                  for l in g_layers]
        self.f = [(cast(l.weight).t().contiguous(), cast(l.weight).contiguous(), cast(l.bias), l.slope)
                  for l in f_layers]
        self.latent_dim = g_layers[0].weight.shape[1]
        self.out_dim = g_layers[-1].weight.shape[0]
        if f_layers[0].weight.shape[1] != self.out_dim:
            raise ValueError(f"the critic's first layer takes {f_layers[0].weight.shape[1]} inputs, "
                             f"the generator makes {self.out_dim}")
        self.n_features = f_layers[-1].weight.shape[0]
        self.mixed = self.mdtype != dtype
        # On the CPU kernels (float32 data, float32 or bfloat16 products): every layer, both ways, one call of
        # the fused op linear_act (see linear_act.py). It allocates its outputs, so none of the plan's buffers
        # below are needed.
        self.layer_op = (self.mdtype in (torch.float32, torch.bfloat16) and dtype == torch.float32
                         and device.type == "cpu" and layer_op)
        if self.layer_op:
            self.plan = _LinearActPlan(self.g, self.f, g_layers, f_layers, device, dtype, self.mdtype)
            return

        def buf(cols: int, dt: torch.dtype = self.mdtype) -> torch.Tensor:
            return torch.empty(capacity, cols, device=device, dtype=dt)

        self.acts_g = [buf(w.shape[1]) for w, _, _, _ in self.g]      # post-activation outputs
        self.acts_f = [buf(w.shape[1]) for w, _, _, _ in self.f]
        self.grads_g = [buf(w.shape[0]) for w, _, _, _ in self.g]     # dL/d(input of layer i)
        self.grads_f = [buf(w.shape[0]) for w, _, _, _ in self.f]
        self.tmp_g = [buf(w.shape[1]) for w, _, _, _ in self.g]       # dL/d(pre-activation)
        self.tmp_f = [buf(w.shape[1]) for w, _, _, _ in self.f]
        if self.mixed:  # float32 copies around the residual op, product-dtype copies of its gradients
            self.z_m = buf(self.latent_dim)
            self.gx32, self.fgx32 = buf(self.out_dim, dtype), buf(self.n_features, dtype)
            self.ggx_m, self.gfgx_m = buf(self.out_dim), buf(self.n_features)
            self.gz32 = buf(self.latent_dim, dtype)

    @staticmethod
    def _forward_plan(layers, h, acts: list[torch.Tensor], n: int, plan: list) -> torch.Tensor:
        for (wt, _, b, slope), out in zip(layers, acts):
            o = out[:n]
            if b is None:
                plan.append((torch.mm, (h, wt), {"out": o}))
            else:
                plan.append((torch.addmm, (b, h, wt), {"out": o}))
            if slope is not None:
                plan.append((torch.nn.functional.leaky_relu_, (o, slope), {}) if slope else (torch.relu_, (o,), {}))
            h = o
        return h

    def _networks_plan(self, z: torch.Tensor, plan: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends the calls computing G(z) and f(G(z)) into the buffers (z first copied to the product dtype
        when it differs) to ``plan``; returns the views they will hold."""
        n = z.shape[0]
        h = z
        if self.mixed:
            h = self.z_m[:n]
            plan.append((h.copy_, (z,), {}))
        gx = self._forward_plan(self.g, h, self.acts_g, n, plan)
        return gx, self._forward_plan(self.f, gx, self.acts_f, n, plan)

    @staticmethod
    def _backward_plan(layers, g, acts, grads, tmps, n: int, plan: list, join=None) -> torch.Tensor:
        """``g`` = dL/d(output of the last layer) -> dL/d(input of the first), plus ``join`` if given."""
        for i in reversed(range(len(layers))):
            _, w, _, slope = layers[i]
            if slope is not None:  # the activation's derivative, read from its output (same sign as its input)
                t = tmps[i][:n]
                plan.append((torch.ops.aten.leaky_relu_backward.grad_input, (g, acts[i][:n], slope, True),
                             {"grad_input": t}))
                g = t
            if i == 0 and join is not None:
                # dL/dG(z) + (dL/df)·J_f in one product, accumulated in place into join (a buffer this
                # program owns, or the residual op's fresh gradient tensor): no copy of it
                plan.append((torch.Tensor.addmm_, (join, g, w), {}))
                return join
            out = grads[i][:n]
            plan.append((torch.mm, (g, w), {"out": out}))
            g = out
        return g

    @staticmethod
    def _finish(plan: list) -> list:
        """(fn, args, kwargs, substitutions): where an argument is a stand-in for a residual gradient."""
        out = []
        for fn, args, kwargs in plan:
            subs = tuple((i, 0 if a is _GX else 1) for i, a in enumerate(args) if a is _GX or a is _FGX)
            out.append((fn, args, kwargs, subs))
        return out

    def bind(self, z: torch.Tensor, x: torch.Tensor, fx: torch.Tensor, lam: float, residual_op):
        """A function of no arguments returning ``(loss [n], dL/dz [n, L])`` at the current values of ``z``.

        Every view of the buffers and every argument is fixed here, once per working set, so an iteration
        is a flat list of calls: no slicing, no allocation besides the residual op's three outputs.
        """
        if self.layer_op:
            return self.plan.bind(z, x, fx, lam, residual_op)
        n = z.shape[0]
        fwd: list = []
        gx, fgx = self._networks_plan(z, fwd)
        bwd: list = []
        if self.mixed:  # the residual in float32, its gradients back in the product dtype
            gx32, fgx32 = self.gx32[:n], self.fgx32[:n]
            fwd += [(gx32.copy_, (gx,), {}), (fgx32.copy_, (fgx,), {})]
            res_args = (x, gx32, fx, fgx32, lam)
            g_gx, g_fgx = self.ggx_m[:n], self.gfgx_m[:n]
            bwd += [(g_gx.copy_, (_GX,), {}), (g_fgx.copy_, (_FGX,), {})]
        else:
            res_args = (x, gx, fx, fgx, lam)
            g_gx, g_fgx = _GX, _FGX
        d_gx = self._backward_plan(self.f, g_fgx, self.acts_f, self.grads_f, self.tmp_f, n, bwd, join=g_gx)
        d_z = self._backward_plan(self.g, d_gx, self.acts_g, self.grads_g, self.tmp_g, n, bwd)
        if self.mixed:
            out = self.gz32[:n]
            bwd.append((out.copy_, (d_z,), {}))
            d_z = out
        bwd = self._finish(bwd)

        def step() -> tuple[torch.Tensor, torch.Tensor]:
            for fn, args, kwargs in fwd:
                fn(*args, **kwargs)
            loss, *grads = residual_op(*res_args)
            for fn, args, kwargs, subs in bwd:
                if subs:
                    args = list(args)
                    for i, which in subs:
                        args[i] = grads[which]
                fn(*args, **kwargs)
            return loss, d_z
        return step

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G(z) [n, out_dim] and f(G(z)) [n, n_features] in the working dtype (views into the buffers), computed
        as the search computes them."""
        if self.layer_op:
            acts_g, acts_f = self.plan.forward(z)
            return acts_g[-1], acts_f[-1]
        plan: list = []
        gx, fgx = self._networks_plan(z, plan)
        for fn, args, kwargs in plan:
            fn(*args, **kwargs)
        return gx, fgx

    @torch.no_grad()
    def loss_and_grad(self, z, x, fx, lam, residual_op) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bind(z, x, fx, lam, residual_op)()


class _AutogradProgram:
    """Loss and dL/dz of any generator and critic through ``torch.autograd.grad`` (autocast for bfloat16)."""

    def __init__(self, generator: nn.Module, critic: nn.Module, matmul_dtype: torch.dtype | None,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.generator, self.critic = generator, critic
        self.dtype, self.mdtype, self.device = dtype, matmul_dtype, device

    def _autocast(self):
        if self.mdtype is None or self.mdtype == self.dtype:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.mdtype)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            gx = self.generator(z)
            fgx = self.critic.features(gx)
        return gx.reshape(z.shape[0], -1), fgx

    def bind(self, z, x, fx, lam, residual_op):
        return functools.partial(self.loss_and_grad, z, x, fx, lam, residual_op)

    def loss_and_grad(self, z, x, fx, lam, residual_op) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            gx, fgx = self.forward(zz)
            loss, g_gx, g_fgx = residual_op(x, gx.detach().to(self.dtype), fx, fgx.detach().to(self.dtype), lam)
            (d_z,) = torch.autograd.grad((gx, fgx), zz, (g_gx.to(gx.dtype), g_fgx.to(fgx.dtype)))
        return loss, d_z


def make_program(generator: nn.Module, critic: nn.Module, *, vjp: str, capacity: int,
                 matmul_dtype: torch.dtype | None, device: torch.device, dtype: torch.dtype,
                 backend) -> _MLPProgram | _AutogradProgram:
    """The program of the search: written out for the MLP pair (``vjp`` "auto" or "manual"; on the compiled
    CPU kernels when the backend resolves to them), autograd otherwise (``vjp`` "autograd", or other networks;
    ``vjp="manual"`` then is an error)."""
    layers = _mlp_layers(generator, critic) if vjp != "autograd" else None
    if vjp == "manual" and layers is None:
        raise ValueError("vjp='manual' needs an MLPGenerator and MLPCritic (stacks of Linear and LeakyReLU)")
    if layers is not None:
        return _MLPProgram(*layers, capacity=capacity, matmul_dtype=matmul_dtype, device=device, dtype=dtype,
                           layer_op=_layer_op_runs(backend, device))
    return _AutogradProgram(generator, critic, matmul_dtype, device, dtype)
