"""AnoGAN's latent search, batched: every sample of a batch optimises its own latent code at once.

AnoGAN (Schlegl et al., IPMI 2017, Sec. 2.2) scores a sample x by looking for the generated sample
closest to it. With a frozen generator G and the frozen critic's intermediate features f, it
minimises over z, with Adam (Kingma & Ba, ICLR 2015), for a fixed number of iterations (500 in the paper):

    L(z) = (1 - lam) * R(z) + lam * F(z),   R(z) = sum |x - G(z)|,   F(z) = sum |f(x) - f(G(z))|

(lam = 0.1 in the paper), and uses the loss reached as the anomaly score. Existing code runs that
search one sample at a time. Here the rows of a batch (times ``restarts``) form one matrix, each row
with its own z, its own Adam moments and its own step count, and one iteration is

    G(z), f(G(z))                    forward through the frozen networks (no parameter gradients)
    anogan_residual(...)             fused op: L per row and dL/dG(z), dL/df(G(z)) (sign sub-gradients)
    dL/dz                            backward through f and G (vector-Jacobian product, see below)
    masked_adam_(z, ...)             fused op: bias-corrected Adam on the rows still active

Backward. For the MLPs of :mod:`genad_fast.nn.gan` (stacks of ``Linear`` and ``LeakyReLU``) the
vector–Jacobian product is written out: ``g <- leaky_relu_backward(g) @ W`` per layer, with the two
incoming gradients joined by one in-place ``addmm_`` (``dL/dG(z) + dL/df · J_f``), into buffers
allocated once and bound to the working set once, so an iteration is a flat list of its ten matrix
products and a handful of element-wise passes (no autograd graph, no slicing, no allocation but the
residual op's outputs). Other networks
(the convolutional ones) go through ``torch.autograd.grad(outputs=(G(z), f(G(z))), inputs=z,
grad_outputs=(dL/dG(z), dL/df))``.

bfloat16 products (``matmul_dtype=torch.bfloat16``): the networks' matrix products run in bfloat16
with float32 accumulation, as autocast would (the hand-written path keeps bfloat16 copies of the
weights; the autograd path uses ``torch.autocast``); z, the Adam state, the residual and the score
stay float32.

On the CPU backend the hand-written path runs each layer, forward and backward, as one call of the
fused op :func:`genad_fast.ops.linear_act` (float32, or bfloat16 through MKL's bfloat16 GEMM): the
input cast and the LeakyReLU backward before the product, bias, the join of the two gradients, the
LeakyReLU and the output cast after it, on each thread's rows while they are in cache. An iteration is
then ten such calls, the residual op and Adam. Other backends (``eager``, CUDA) run the same plan as
ATen calls into preallocated buffers.

Early stopping. Every ``check_every`` iterations a row whose best loss improved by less than
``tol`` (relative) since the previous check, ``patience`` checks in a row, is marked converged: its
``active`` flag is cleared with tensor ops, so ``masked_adam_`` leaves it alone. Converged rows then leave the matrix products:
at the check, once at most ``shrink`` of the working rows are still active, the active rows are
gathered into a smaller working set (finished rows are written back first). Reading the active count
for that decision (and, when it compacts, the row indices) is the only host–device synchronisation
of the loop, once per ``check_every`` iterations, between segments; with ``tol=0`` or ``shrink=0``
there is none at all. Justification: the alternative, masked rows kept in the products, costs a
full-width iteration per iteration; one read per 10 iterations costs nothing on a CPU and one
stream round trip on a GPU, where the segment between two reads is one CUDA-graph replay.

Score. The result is the loss at the best latent code each row reached (over its iterations, and
over the restarts of a sample), recomputed in one final forward pass together with its two parts
``residual`` = R and ``feature`` = F.

CUDA graphs. Between two checks an iteration has static shapes, makes no host–device
synchronisation (no ``.item()``, ``.cpu()``, ``nonzero()`` and no Python branch on tensor values)
and allocates nothing on the hand-written path, so the ``check_every`` iterations of a segment can
be captured in a CUDA graph and replayed; ``cuda_graph=True`` does that on CUDA tensors (one graph per
working-set size, recaptured after a compaction), provided the fused ops' CUDA kernels are capturable
too. This path could not be run on the machines this library was written on (no GPU): it is
written for capture, not tested under it.
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from genad_fast.nn.keyed_noise import keyed_normals, row_keys

__all__ = ["SearchResult", "latent_search", "linear_stack"]


@dataclass
class SearchResult:
    """Per sample: ``loss`` = (1 - lam) * residual + lam * feature at the best code ``z``.

    ``residual`` = sum |x - G(z)|, ``feature`` = sum |f(x) - f(G(z))|, ``iterations`` = the Adam
    steps the chosen restart took (fewer than asked when it stopped early), ``restart`` = which restart won.
    """

    loss: torch.Tensor          # [B] float32
    residual: torch.Tensor      # [B]
    feature: torch.Tensor       # [B]
    z: torch.Tensor             # [B, latent_dim]
    iterations: torch.Tensor    # [B] int64
    restart: torch.Tensor       # [B] int64


# ---------------------------------------------------------------------------- networks as programs

@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor        # [out, in]
    bias: torch.Tensor | None   # [out]
    slope: float | None         # LeakyReLU slope after it (ReLU = 0.0), None for none


def linear_stack(module: nn.Module) -> list[_Layer] | None:
    """The layers of an ``nn.Sequential`` made only of ``Linear`` and ``LeakyReLU``/``ReLU``/``Identity``
    (nested ``Sequential`` allowed), each ``Linear`` followed by at most one activation; else None."""
    layers: list[_Layer] = []

    def walk(m: nn.Module) -> bool:
        for child in m.children() if isinstance(m, nn.Sequential) else [m]:
            if isinstance(child, nn.Sequential):
                if not walk(child):
                    return False
            elif isinstance(child, nn.Linear):
                layers.append(_Layer(child.weight, child.bias, None))
            elif isinstance(child, (nn.LeakyReLU, nn.ReLU)):
                if not layers or layers[-1].slope is not None:
                    return False
                slope = float(child.negative_slope) if isinstance(child, nn.LeakyReLU) else 0.0
                layers[-1] = _Layer(layers[-1].weight, layers[-1].bias, slope)
            elif isinstance(child, nn.Identity):
                continue
            else:
                return False
        return True

    if not isinstance(module, nn.Sequential) or not walk(module) or not layers:
        return None
    return layers


def _layer_op_runs(backend: str | None, device: torch.device) -> bool:
    """Whether the search's backend resolves to the compiled CPU kernels, which include ``linear_act``."""
    from genad_fast import _backend
    from genad_fast.ops import linear

    return (device.type == "cpu" and hasattr(torch.ops.genad_fast, "linear_act")
            and _backend.resolve(backend, device, implemented=linear._IMPLEMENTED) == "cpu")


def _mlp_layers(generator: nn.Module, critic: nn.Module) -> tuple[list[_Layer], list[_Layer]] | None:
    from genad_fast.nn.gan import MLPCritic, MLPGenerator

    if not (isinstance(generator, MLPGenerator) and isinstance(critic, MLPCritic)):
        return None
    g, f = linear_stack(generator.net), linear_stack(critic.body)
    if g is None or f is None:
        return None
    return g, f


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
        # the fused op linear_act (the casts, bias, LeakyReLU and its backward around the product; see
        # genad_fast.ops.linear). It allocates its outputs, so none of the plan's buffers below are needed.
        self.layer_op = (self.mdtype in (torch.float32, torch.bfloat16) and dtype == torch.float32
                         and device.type == "cpu" and layer_op)
        if self.layer_op:
            self._init_layer_op(g_layers, f_layers, device)
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

    def _init_layer_op(self, g_layers: list[_Layer], f_layers: list[_Layer], device: torch.device) -> None:
        """The arguments of every ``linear_act`` call, fixed once: the last layers of G and f write float32
        (the residual op reads them as they are), the first layers read float32 (z; G(z)) and the backward
        starts from the residual op's float32 gradients, so there are no casts between calls."""
        data, prod = self.dtype, self.mdtype

        def forward(prog, layers):
            return [(w, None if l.bias is None else l.bias.detach().to(device, data), slope,
                     data if i == len(prog) - 1 else prod)
                    for i, ((_, w, _, slope), l) in enumerate(zip(prog, layers))]

        self.fwd_g, self.fwd_f = forward(self.g, g_layers), forward(self.f, f_layers)
        # backward: weight Wᵀ, the LeakyReLU's slope as gate slope (gated by the layer's output), output dtype
        self.bwd_f = [(wt, 0.0 if slope is None else slope, slope is not None, prod) for wt, _, _, slope in self.f]
        self.bwd_g = [(wt, 0.0 if slope is None else slope, slope is not None, data if i == 0 else prod)
                      for i, (wt, _, _, slope) in enumerate(self.g)]

    def _layer_op_forward(self, z: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's output through G, then f, by ``linear_act`` (the last of each in float32)."""
        op = torch.ops.genad_fast.linear_act.default
        h, acts_g, acts_f = z, [], []
        for w, b, slope, out in self.fwd_g:
            h = op(h, w, b, None, 0.0, None, slope, out)
            acts_g.append(h)
        for w, b, slope, out in self.fwd_f:
            h = op(h, w, b, None, 0.0, None, slope, out)
            acts_f.append(h)
        return acts_g, acts_f

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

    def _bind_layer_op(self, z: torch.Tensor, x: torch.Tensor, fx: torch.Tensor, lam: float, residual_op):
        """:meth:`bind` on the CPU kernels: ten ``linear_act`` calls an iteration, the residual op between."""
        op = torch.ops.genad_fast.linear_act.default

        def step() -> tuple[torch.Tensor, torch.Tensor]:
            acts_g, acts_f = self._layer_op_forward(z)
            loss, r_gx, r_fgx = residual_op(x, acts_g[-1], fx, acts_f[-1], lam)
            g = r_fgx
            for i in reversed(range(len(self.bwd_f))):   # through f; its first layer adds dL/dG(z) (the join)
                wt, slope, gated, out = self.bwd_f[i]
                g = op(g, wt, None, acts_f[i] if gated else None, slope, r_gx if i == 0 else None, None, out)
            for i in reversed(range(len(self.bwd_g))):   # through G, down to dL/dz in float32
                wt, slope, gated, out = self.bwd_g[i]
                g = op(g, wt, None, acts_g[i] if gated else None, slope, None, None, out)
            return loss, g
        return step

    def bind(self, z: torch.Tensor, x: torch.Tensor, fx: torch.Tensor, lam: float, residual_op):
        """A function of no arguments returning ``(loss [n], dL/dz [n, L])`` at the current values of ``z``.

        Every view of the buffers and every argument is fixed here, once per working set, so an iteration
        is a flat list of calls: no slicing, no allocation besides the residual op's three outputs.
        """
        if self.layer_op:
            return self._bind_layer_op(z, x, fx, lam, residual_op)
        n = z.shape[0]
        fwd: list = []
        h = z
        if self.mixed:
            h = self.z_m[:n]
            fwd.append((h.copy_, (z,), {}))
        gx = self._forward_plan(self.g, h, self.acts_g, n, fwd)
        fgx = self._forward_plan(self.f, gx, self.acts_f, n, fwd)
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
            acts_g, acts_f = self._layer_op_forward(z)
            return acts_g[-1], acts_f[-1]
        n = z.shape[0]
        plan: list = []
        h = z
        if self.mixed:
            h = self.z_m[:n]
            plan.append((h.copy_, (z,), {}))
        gx = self._forward_plan(self.g, h, self.acts_g, n, plan)
        fgx = self._forward_plan(self.f, gx, self.acts_f, n, plan)
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


@contextlib.contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration of the search, restored afterwards.

    Networks that are frozen already are not touched at all (the detectors freeze theirs once, at fit and at
    load): such networks may be searched by several threads at once, and one search restoring a mode would
    change it under another."""
    saved = [(m, m.training, [(p, p.requires_grad) for p in m.parameters()]) for m in modules
             if not _is_frozen(m)]
    try:
        for m, _, params in saved:
            m.eval()
            for p, _ in params:
                p.requires_grad_(False)
        yield
    finally:
        for m, training, params in saved:
            m.train(training)
            for p, rg in params:
                p.requires_grad_(rg)


def _is_frozen(module: nn.Module) -> bool:
    return not any(m.training for m in module.modules()) and not any(p.requires_grad for p in module.parameters())


# ---------------------------------------------------------------------------- the search

def _fused_ops():
    import genad_fast.ops as ops

    missing = [name for name in ("anogan_residual", "masked_adam_") if not hasattr(ops, name)]
    if missing:
        raise RuntimeError(f"genad_fast.ops lacks {', '.join(missing)}: the AnoGAN ops are not built into this "
                           f"installation")
    return ops.anogan_residual, ops.masked_adam_


def _check_search_args(x, iterations, lam, lr, restarts, tol, check_every, shrink) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor [B, *sample_shape] with at least 2 dimensions, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    if not float(lr) > 0.0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r}")
    if not float(tol) >= 0.0:
        raise ValueError(f"tol must be >= 0 (0 = no early stopping), got {tol!r}")
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every must be an int >= 1, got {check_every!r}")
    if not 0.0 <= float(shrink) <= 1.0:
        raise ValueError(f"shrink must be in [0, 1], got {shrink!r}")


class _WorkingSet:
    """The rows still being optimised, with their Adam state; ``rows`` index the full [restarts * B] arrays."""

    STATE = ("rows", "z", "x", "fx", "m", "v", "step", "active", "best", "best_z", "ref", "strikes")

    def __init__(self, rows, z, x, fx, dtype):
        n = rows.shape[0]
        self.rows, self.z, self.x, self.fx = rows, z, x, fx
        self.m = torch.zeros_like(z)
        self.v = torch.zeros_like(z)
        self.step = torch.zeros(n, dtype=torch.int64, device=z.device)       # Adam steps taken, per row
        self.active = torch.ones(n, dtype=torch.bool, device=z.device)
        self.best = torch.full((n,), math.inf, dtype=dtype, device=z.device)
        self.best_z = z.clone()
        self.ref = torch.full((n,), math.inf, dtype=dtype, device=z.device)   # best at the last check
        self.strikes = torch.zeros(n, dtype=torch.int32, device=z.device)     # checks in a row without progress
        self.improved = torch.empty(n, dtype=torch.bool, device=z.device)
        self.improved_col = self.improved.unsqueeze(1)
        self.step_fn = None                                                   # the bound iteration, see bind

    def take(self, keep: torch.Tensor) -> "_WorkingSet":
        new = object.__new__(_WorkingSet)
        for name in self.STATE:
            setattr(new, name, getattr(self, name).index_select(0, keep))
        new.improved = torch.empty(keep.shape[0], dtype=torch.bool, device=keep.device)
        new.improved_col = new.improved.unsqueeze(1)
        new.step_fn = None
        return new


def latent_search(generator: nn.Module, critic: nn.Module, x: torch.Tensor, *, iterations: int = 500,
                  lam: float = 0.1, lr: float = 0.05, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                  restarts: int = 1, tol: float = 0.0, check_every: int = 10, patience: int = 2, shrink: float = 0.75,
                  z0: torch.Tensor | None = None, rng: torch.Generator | None = None, start_seed: int | None = None,
                  matmul_dtype: torch.dtype | None = None, backend: str | None = None, vjp: str = "auto",
                  cuda_graph: bool = False) -> SearchResult:
    """AnoGAN's latent search for every sample of ``x`` [B, *sample_shape] at once (module docstring).

    ``generator``: z [n, latent_dim] -> [n, *sample_shape], with a ``latent_dim`` attribute;
    ``critic``: has ``features(x) -> [n, F]`` (f). Both are frozen for the search (eval mode, no
    parameter gradients; their state is restored afterwards).

    iterations, lam, lr, beta1, beta2, eps
        Adam steps per restart (the paper: 500), the feature weight (paper: 0.1), Adam's settings.
    restarts
        Independent starts per sample, z ~ N(0, I); the lowest final loss wins. With ``start_seed`` the
        starts are keyed on each sample's content (:mod:`genad_fast.nn.keyed_noise`): a sample gets the same
        starts, and so the same result, alone or among any others; else they come from ``rng``.
    z0
        [B, latent_dim] start of the first restart (e.g. f-AnoGAN's encoder output); the others are random.
    tol, check_every, patience, shrink
        Early stopping: a row stops once its best loss improved by less than ``tol`` (relative) over
        each of ``patience`` consecutive windows of ``check_every`` iterations (tol = 0: never; one
        window is not enough: Adam on these sign sub-gradients overshoots, and the best loss can stay
        flat for 10 iterations and then fall by a fifth); the working set is compacted when at most
        ``shrink`` of its rows are active (0 = never compact: stopped rows stay in the products, masked).
    matmul_dtype
        None (the networks' dtype) or ``torch.bfloat16`` for the products.
    backend
        Backend of the fused ops (None = automatic).
    vjp
        "auto" (hand-written for the MLPs of :mod:`genad_fast.nn.gan`, autograd otherwise),
        "manual" (error if the networks are not such MLPs) or "autograd".
    cuda_graph
        On CUDA tensors: capture each segment of ``check_every`` iterations in a CUDA graph
        (untested here, see the module docstring).
    """
    _check_search_args(x, iterations, lam, lr, restarts, tol, check_every, shrink)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    if vjp not in ("auto", "manual", "autograd"):
        raise ValueError(f"vjp must be 'auto', 'manual' or 'autograd', got {vjp!r}")
    if matmul_dtype not in (None, torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise ValueError(f"matmul_dtype must be None or a floating dtype, got {matmul_dtype!r}")
    residual_op, adam_op = _fused_ops()
    param = next(iter(generator.parameters()))
    device, dtype = param.device, param.dtype
    if x.device != device:
        raise ValueError(f"x is on {x.device} but the generator is on {device}")
    if cuda_graph and device.type != "cuda":
        raise ValueError("cuda_graph=True needs the networks and data on a CUDA device")
    B = x.shape[0]
    latent_dim = int(generator.latent_dim)
    if z0 is not None and tuple(z0.shape) != (B, latent_dim):
        raise ValueError(f"z0 must have shape [{B}, {latent_dim}], got {list(z0.shape)}")
    lam = float(lam)

    residual = functools.partial(residual_op, backend=backend)
    adam = functools.partial(adam_op, lr=lr, beta1=beta1, beta2=beta2, eps=eps, backend=backend)

    with _frozen(generator, critic), torch.no_grad():
        xf = x.flatten(1).to(dtype)
        fx = critic.features(x.to(dtype)).flatten(1)
        N = B * restarts
        if start_seed is not None:
            keys = row_keys(x)
            z = torch.cat([keyed_normals(keys, start_seed + r, latent_dim, dtype) for r in range(restarts)]) \
                if B else torch.empty(0, latent_dim, device=device, dtype=dtype)
        else:
            z = torch.randn(N, latent_dim, generator=rng, device=device, dtype=dtype)
        if z0 is not None:
            z[:B] = z0.to(dtype)
        if N == 0:
            empty = torch.empty(0, device=device, dtype=dtype)
            return SearchResult(empty, empty.clone(), empty.clone(), z[:0], torch.empty(0, dtype=torch.int64,
                                device=device), torch.empty(0, dtype=torch.int64, device=device))

        layers = _mlp_layers(generator, critic) if vjp != "autograd" else None
        if vjp == "manual" and layers is None:
            raise ValueError("vjp='manual' needs an MLPGenerator and MLPCritic (stacks of Linear and LeakyReLU)")
        if layers is not None:
            program = _MLPProgram(*layers, capacity=N, matmul_dtype=matmul_dtype, device=device, dtype=dtype,
                                  layer_op=_layer_op_runs(backend, device))
        else:
            program = _AutogradProgram(generator, critic, matmul_dtype, device, dtype)

        xr = xf.repeat(restarts, 1) if restarts > 1 else xf
        fxr = fx.repeat(restarts, 1) if restarts > 1 else fx
        rows = torch.arange(N, device=device)
        ws = _WorkingSet(rows, z, xr, fxr, dtype)
        ws.step_fn = program.bind(ws.z, ws.x, ws.fx, lam, residual)
        best_all = torch.full((N,), math.inf, dtype=dtype, device=device)
        best_z_all = z.clone()
        steps_all = torch.zeros(N, dtype=torch.int64, device=device)

        def iterate(w: _WorkingSet) -> None:
            loss, grad = w.step_fn()
            torch.lt(loss, w.best, out=w.improved)
            torch.where(w.improved, loss, w.best, out=w.best)
            torch.where(w.improved_col, w.z, w.best_z, out=w.best_z)
            adam(w.z, grad, w.m, w.v, w.step, w.active)

        def check(w: _WorkingSet) -> None:
            # relative improvement of the best loss since the last check; the first check (ref = inf) gives NaN
            rel = (w.ref - w.best) / w.ref.abs()
            w.strikes.add_(1).mul_(rel < tol)           # +1 without progress, back to 0 with it
            w.active &= w.strikes < patience
            w.ref.copy_(w.best)

        def segment(w: _WorkingSet, n_iter: int, with_check: bool) -> None:
            for _ in range(n_iter):
                iterate(w)
            if with_check:
                check(w)

        def write_back(w: _WorkingSet) -> None:
            best_all.index_copy_(0, w.rows, w.best)
            best_z_all.index_copy_(0, w.rows, w.best_z)
            steps_all.index_copy_(0, w.rows, w.step)

        early = tol > 0
        seg_len = check_every if early else iterations
        graphs = _GraphRunner(segment) if cuda_graph else None
        done = 0
        while done < iterations:
            n_iter = min(seg_len, iterations - done)
            with_check = early and n_iter == seg_len
            if graphs is not None:
                graphs.run(ws, n_iter, with_check)
            else:
                segment(ws, n_iter, with_check)
            done += n_iter
            if not with_check or done >= iterations or shrink <= 0:
                continue
            # The one host-device sync of the loop, once per segment: is it worth shrinking the products?
            n_active = int(ws.active.sum())
            if n_active <= shrink * ws.rows.shape[0]:
                write_back(ws)
                if n_active == 0:
                    ws = None
                    break
                ws = ws.take(ws.active.nonzero().squeeze(1))
                ws.step_fn = program.bind(ws.z, ws.x, ws.fx, lam, residual)
        if ws is not None:
            write_back(ws)

        # Final pass: the loss and its parts at each row's best code.
        gx, fgx = program.forward(best_z_all)   # (on the MLP path: views of its buffers, read at once)
        gx, fgx = gx.to(dtype), fgx.to(dtype)
        res = (xr - gx).abs().sum(1)
        feat = (fxr - fgx).abs().sum(1)
        loss = (1 - lam) * res + lam * feat
        if restarts > 1:
            pick = loss.view(restarts, B).argmin(0)
            sel = pick * B + torch.arange(B, device=device)
        else:
            pick = torch.zeros(B, dtype=torch.int64, device=device)
            sel = torch.arange(B, device=device)
        return SearchResult(loss[sel], res[sel], feat[sel], best_z_all[sel], steps_all[sel], pick)


class _GraphRunner:
    """Runs segments through CUDA graphs, one per (working-set size, segment length, check) (untested here).

    The first segment of each shape runs eagerly on a side stream (warm-up: cuBLAS workspaces, autograd
    state), the next one is captured and every later one replays it. The working set's tensors are the
    graph's static inputs and outputs; a compaction makes a new working set and so a new capture.
    """

    def __init__(self, segment):
        self.segment = segment
        self.ws: _WorkingSet | None = None
        self.graphs: dict = {}
        self.warm: set = set()

    def run(self, ws: _WorkingSet, n_iter: int, with_check: bool) -> None:
        if ws is not self.ws:           # a new working set: the old graphs point at its predecessor's memory
            self.ws, self.graphs, self.warm = ws, {}, set()
        key = (n_iter, with_check)
        graph = self.graphs.get(key)
        if graph is not None:
            graph.replay()
            return
        if key not in self.warm:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self.segment(ws, n_iter, with_check)
            torch.cuda.current_stream().wait_stream(stream)
            self.warm.add(key)
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.segment(ws, n_iter, with_check)
        graph.replay()                  # capture records the work; replay does it
        self.graphs[key] = graph
