"""AnoGAN's latent search, batched: every sample of a batch optimises its own latent code at once.

AnoGAN (Schlegl et al., IPMI 2017, Sec. 2.2) minimises the loss of :mod:`~genad_fast.nn.gan.search.loss`
over z with Adam (Kingma & Ba, ICLR 2015) for a fixed number of iterations (500 in the paper) and uses
the loss reached as the anomaly score. Existing code runs that search one sample at a time. Here the
rows of a batch (times ``restarts``) form one matrix, each row with its own z, its own Adam moments and
its own step count, and one iteration is

    G(z), f(G(z))                    forward through the frozen networks (no parameter gradients)
    anogan_residual(...)             fused op: L per row and dL/dG(z), dL/df(G(z)) (sign sub-gradients)
    dL/dz                            backward through f and G (:mod:`~genad_fast.nn.gan.search.program`)
    masked_adam_(z, ...)             fused op: bias-corrected Adam on the rows still active

Early stopping. Every ``check_every`` iterations a row whose best loss improved by less than
``tol`` (relative) since the previous check, ``patience`` checks in a row, is marked converged: its
``active`` flag is cleared with tensor ops, so ``masked_adam_`` leaves it alone. Converged rows then leave
the matrix products: at the check, once at most ``shrink`` of the working rows are still active, the
active rows are gathered into a smaller working set (finished rows are written back first). Reading the
active count for that decision (and, when it compacts, the row indices) is the only host–device
synchronisation of the loop, once per ``check_every`` iterations, between segments; with ``tol=0`` or
``shrink=0`` there is none at all. Justification: the alternative, masked rows kept in the products,
costs a full-width iteration per iteration; one read per 10 iterations costs nothing on a CPU and one
stream round trip on a GPU, where the segment between two reads is one CUDA-graph replay
(:mod:`~genad_fast.nn.gan.search.graphs`).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from genad_fast.nn.gan.networks import frozen
from genad_fast.nn.gan.search.graphs import _GraphRunner
from genad_fast.nn.gan.search.loss import SearchResult, final_result
from genad_fast.nn.gan.search.program import make_program
from genad_fast.nn.keyed_noise import keyed_normals, row_keys
from genad_fast.ops import Dispatch

__all__ = ["latent_search"]


def _fused_ops():
    """The residual and masked-Adam ops of :mod:`genad_fast.ops` (an error naming them where they are absent)."""
    import genad_fast.ops as ops

    missing = [name for name in ("anogan_residual", "masked_adam_") if not hasattr(ops, name)]
    if missing:
        raise RuntimeError(f"genad_fast.ops lacks {', '.join(missing)}: the AnoGAN ops are not built into this "
                           f"installation")
    return ops.anogan_residual, ops.masked_adam_


def _check_search_args(x, iterations, lam, lr, restarts, tol, check_every, shrink, patience, vjp,
                       matmul_dtype) -> None:
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
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    if vjp not in ("auto", "manual", "autograd"):
        raise ValueError(f"vjp must be 'auto', 'manual' or 'autograd', got {vjp!r}")
    if matmul_dtype not in (None, torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise ValueError(f"matmul_dtype must be None or a floating dtype, got {matmul_dtype!r}")


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


#: Fewest rows the working set is compacted to: BLAS takes other code paths (gemv) for one or two rows, whose
#: sums round differently, and a sample's result must not depend on which others share its batch.
_MIN_ROWS = 8


def latent_search(generator: nn.Module, critic: nn.Module, x: torch.Tensor, *, iterations: int = 500,
                  lam: float = 0.1, lr: float = 0.05, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                  restarts: int = 1, tol: float = 0.0, check_every: int = 10, patience: int = 2, shrink: float = 0.75,
                  z0: torch.Tensor | None = None, rng: torch.Generator | None = None, start_seed: int | None = None,
                  matmul_dtype: torch.dtype | None = None, backend: "Dispatch | str | None" = None, vjp: str = "auto",
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
        The call's :class:`~genad_fast.ops.Dispatch` (a detector hands its own down), or a backend name for a
        direct call (None = ``GENAD_FAST_BACKEND``, else automatic), resolved once for the whole search.
    vjp
        "auto" (hand-written for the MLPs of :mod:`genad_fast.nn.gan.networks`, autograd otherwise),
        "manual" (error if the networks are not such MLPs) or "autograd".
    cuda_graph
        On CUDA tensors: capture each segment of ``check_every`` iterations in a CUDA graph
        (untested here, see :mod:`~genad_fast.nn.gan.search.graphs`).
    """
    _check_search_args(x, iterations, lam, lr, restarts, tol, check_every, shrink, patience, vjp, matmul_dtype)
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

    # The backend is resolved once for the whole search (a detector hands its call's dispatch down).
    backend = backend if isinstance(backend, Dispatch) else Dispatch.build(backend, device)
    residual = functools.partial(residual_op, backend=backend)
    adam = functools.partial(adam_op, lr=lr, beta1=beta1, beta2=beta2, eps=eps, backend=backend)

    with frozen(generator, critic), torch.no_grad():
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

        program = make_program(generator, critic, vjp=vjp, capacity=N, matmul_dtype=matmul_dtype, device=device,
                               dtype=dtype, backend=backend)

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
            # a stopped row keeps its best (masked rows still in the products must not improve it): its result is
            # the same whether or when it left the working set, so it does not depend on the other rows
            torch.lt(loss, w.best, out=w.improved).logical_and_(w.active)
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
            if n_active <= shrink * ws.rows.shape[0] and (n_active == 0 or max(n_active, _MIN_ROWS) < ws.rows.shape[0]):
                write_back(ws)
                if n_active == 0:
                    ws = None
                    break
                keep = ws.active.clone()
                if n_active < _MIN_ROWS:  # some stopped (masked) rows stay: products never run on fewer rows
                    keep[(~keep).nonzero().squeeze(1)[:_MIN_ROWS - n_active]] = True
                ws = ws.take(keep.nonzero().squeeze(1))
                ws.step_fn = program.bind(ws.z, ws.x, ws.fx, lam, residual)
        if ws is not None:
            write_back(ws)

        # Final pass: the loss and its parts at each row's best code, the best restart of each sample.
        return final_result(program, best_z_all, xr, fxr, lam, restarts, steps_all)
