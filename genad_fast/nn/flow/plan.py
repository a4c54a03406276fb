"""Inference plan of a :class:`~genad_fast.nn.flow.RealNVP`: the same log-density, restructured for scoring.

The modules compute, per step k, ActNorm -> mixing -> affine coupling, each layer a fresh tensor
(plus a ``torch.cat`` of the two coupling halves), and rebuild the LU product W = P·L·U on every call.
At scoring the parameters are fixed, so the plan precomputes, once per scoring call:

* ActNorm and LU mixing folded into one affine map (Glow's layers, Kingma & Dhariwal 2018, §3.1-3.2)::

      LU(ActNorm(x)) = ((x + b)·e^ℓ) Wᵀ = x·M + c,   M = diag(e^ℓ)·Wᵀ,  c = (b·e^ℓ)·Wᵀ

  (one ``addmm`` per step; M and c are formed in float64 and rounded once);
* ActNorm and a fixed permutation: z = x[:, π]·e^{ℓ_π} + (b·e^ℓ)_π (a gather and one scale-shift);
* the log-determinants of those layers, Σ_k (Σℓ_k + Σ log s_k), which do not depend on x: one
  constant, added once at the end together with −D/2·log 2π.

Then it streams the rows in chunks small enough that a chunk's activations stay in the last-level cache,
through ping-pong buffers written in place (``out=``), the coupling's untouched half read where it lies
and its transformed half copied back into the buffer (no ``torch.cat``). The conditioner MLPs run as
``addmm`` (bias folded into the product) with in-place GELU and residual adds; on the CPU each block's
GELU(Linear(·)) is one prepacked oneDNN linear with the GELU in its epilogue (:mod:`genad_fast.nn.flow.onednn`).
The coupling is the fused op's kernel, taken from the call's :class:`~genad_fast.ops.Dispatch`
(``dispatch.kernel("coupling_forward")``) and called directly on the plan's own [rows, D] buffers.

The result is log p(x) of the flow to float rounding (the order of the sums differs); it is tested
against ``RealNVP.log_prob`` in float32 and float64. Which of these are op fusion and which are pipeline
restructuring: the coupling transform + its log-determinant is the one fused kernel; the affine
folding, the constant log-determinant, the buffers and the chunking are restructuring of the
pipeline around unchanged ATen/BLAS ops.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from genad_fast.nn.flow import onednn
from genad_fast.nn.flow.realnvp import LOG_2PI, ActNorm, AffineCoupling, LULinear, Permutation, RealNVP
from genad_fast.ops import Dispatch

__all__ = ["FlowInference", "chunk_rows", "scoring_log_prob"]

#: Bytes of activations a chunk of rows may occupy: a share of the last-level cache, not L2. Smaller chunks
#: keep activations closer but pay the ~15 ATen calls per step (dispatch, thread fork/join) once more per
#: chunk; measured on 2 Xeon (Sapphire Rapids) cores, tabular 65,536 × 64, hidden 128 (2 KiB per row):
#: 2,048 / 4,096 / 8,192 / 16,384 rows per chunk 565 / 533 / 491 / 493 ms float32, 382 / 327 / 282 / 252 ms
#: with bfloat16 products; 65,536 rows (128 MiB) 902 / 389 ms.
CHUNK_TARGET_BYTES = 32 << 20
#: Fewest rows per chunk: the conditioners' GEMMs reuse each weight panel over the chunk's rows, and
#: below about a thousand rows packing the weights no longer amortises (a 1,600-feature window's
#: conditioner holds 1.2 MB of weights per step; measured on 2 Xeon cores: 512 rows 5% slower than
#: 1,024 for such windows, 4,096 rows 45% slower).
MIN_CHUNK_ROWS = 1024


def chunk_rows(dim: int, hidden: int, itemsize: int, target_bytes: int = CHUNK_TARGET_BYTES) -> int:
    """Rows per chunk on the CPU: as many as keep one chunk's live activations in ``target_bytes``,
    at least :data:`MIN_CHUNK_ROWS`, a multiple of 64.

    Live per row: two state buffers (2·D), the conditioner's hidden state and its block temporary
    (2·H) and the conditioner output and the coupling's result (2·D): ≈ (4·D + 2·H) values.
    """
    per_row = (4 * dim + 2 * hidden) * itemsize
    return max(MIN_CHUNK_ROWS, (target_bytes // per_row) // 64 * 64)


@dataclass
class _Affine:          # z = x·M + c           (ActNorm + LU mixing)
    matrix: torch.Tensor    # [D, D]
    shift: torch.Tensor     # [D]


@dataclass
class _Gather:          # z = x[:, π]·s + c     (ActNorm + permutation)
    index: torch.Tensor     # [D] int64
    scale: torch.Tensor     # [D]
    shift: torch.Tensor     # [D]


@dataclass
class _Conditioner:     # ResidualMLP weights, [out, in] as nn.Linear holds them
    inp: tuple[torch.Tensor, torch.Tensor]
    blocks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    out: tuple[torch.Tensor, torch.Tensor]
    packed_first: list[torch.Tensor] | None = None   # each block's first weight prepacked for oneDNN


@dataclass
class _Coupling:
    d_cond: int
    clamp: float
    net: _Conditioner


def _linear(layer: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.weight.detach().to(dtype), layer.bias.detach().to(dtype)


class FlowInference:
    """log p(x) of a fixed ``RealNVP`` with its layers folded for scoring (see the module docstring).

    ``backend``: the :class:`~genad_fast.ops.Dispatch` of the scoring call, or a backend name (None:
    ``GENAD_FAST_BACKEND``) from which one is built; its coupling kernel must be compiled (``"cpu"``,
    ``"cuda"``, ``"triton"``; not ``"eager"``: the eager backend is the modules themselves).
    ``matmul_dtype``: dtype of the conditioners' products (None: the data dtype; ``torch.bfloat16`` as the
    modules' autocast option). ``chunk``: rows per chunk (default: :func:`chunk_rows` on the CPU, whole
    batches on a GPU). ``prepacked``: run each block's GELU(Linear(·)) as the prepacked oneDNN linear (None:
    where it runs, the default; False: ``addmm`` and GELU, cheaper for a row or two, as a stream's updates bring:
    measured 1.1 against 1.5 ms for one window of 256 values, hidden 128, 4 steps, same values to rounding). Build
    it after the parameters are final; it copies them.
    """

    def __init__(self, flow: RealNVP, dtype: torch.dtype = torch.float32, *, backend: Dispatch | str | None = None,
                 matmul_dtype: torch.dtype | None = None, chunk: int | None = None, prepacked: bool | None = None):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"FlowInference runs in float32 or float64, got {dtype}")
        device = next(flow.parameters()).device
        dispatch = backend if isinstance(backend, Dispatch) else Dispatch.build(backend, device)
        dispatch.backend_of("coupling_forward", device)  # ValueError: a dispatch for another device type
        if not dispatch.has("coupling_forward"):
            raise ValueError("FlowInference runs the fused coupling op; the eager backend is RealNVP.log_prob itself")
        self._coupling_op = dispatch.kernel("coupling_forward")
        self.dim = flow.dim
        self.dtype = dtype
        self.mdtype = dtype if matmul_dtype is None else matmul_dtype
        self.steps: list[tuple[_Affine | _Gather, _Coupling]] = []
        hidden = 1
        const = 0.0   # Σ of the data-independent log-determinants, in float64
        layers = list(flow.layers)
        if len(layers) % 3:
            raise ValueError("FlowInference expects (ActNorm, mixing, coupling) steps")
        with torch.no_grad():
            for k in range(0, len(layers), 3):
                norm, mix, coup = layers[k:k + 3]
                if not (isinstance(norm, ActNorm) and isinstance(coup, AffineCoupling)):
                    raise ValueError(f"step {k // 3}: expected ActNorm, mixing, AffineCoupling, got "
                                     f"{type(norm).__name__}, {type(mix).__name__}, {type(coup).__name__}")
                log_scale = norm.log_scale.detach().double()
                scale = log_scale.exp()
                shift = norm.bias.detach().double() * scale
                const += float(log_scale.sum())
                if isinstance(mix, LULinear):
                    w = _lu_weight64(mix)
                    head = _Affine((scale[:, None] * w.T).to(dtype), (shift @ w.T).to(dtype))
                    const += float(mix.log_s.detach().double().sum())
                elif isinstance(mix, Permutation):
                    head = _Gather(mix.perm.clone(), scale[mix.perm].to(dtype), shift[mix.perm].to(dtype))
                else:
                    raise ValueError(f"step {k // 3}: unknown mixing layer {type(mix).__name__}")
                net = coup.conditioner
                hidden = net.inp.out_features
                cond = _Conditioner(_linear(net.inp, self.mdtype),
                                    [(*_linear(b[1], self.mdtype), *_linear(b[3], self.mdtype)) for b in net.blocks],
                                    _linear(net.out, self.mdtype))
                self.steps.append((head, _Coupling(coup.d_cond, coup.clamp, cond)))
        self.const = const - 0.5 * self.dim * LOG_2PI
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
        if chunk is None and device.type == "cpu":
            chunk = chunk_rows(self.dim, hidden, torch.finfo(dtype).bits // 8)
        self.chunk = chunk  # None: one chunk per call
        # GELU(Linear(·)) inside a block as one oneDNN linear with the GELU in its epilogue (CPU)
        self.onednn = device.type == "cpu" and onednn.available(self.mdtype) and prepacked is not False
        if self.onednn:
            for _, coup in self.steps:
                coup.net.packed_first = [onednn.pack(w1, chunk) for w1, _, _, _ in coup.net.blocks]
        self._bufs: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- the pipeline -------------------------------------------------------------------------
    def _conditioner(self, x_a: torch.Tensor, net: _Conditioner) -> torch.Tensor:
        if x_a.dtype != self.mdtype:
            x_a = x_a.to(self.mdtype)
        w, b = net.inp
        h = torch.addmm(b, x_a, w.T)
        for i, (w1, b1, w2, b2) in enumerate(net.blocks):
            if net.packed_first is not None:
                g = onednn.linear(torch.nn.functional.gelu(h), net.packed_first[i], b1, "gelu")
            else:
                g = torch.addmm(b1, torch.nn.functional.gelu(h), w1.T)
                torch.ops.aten.gelu_(g)
            h.add_(b2).addmm_(g, w2.T)          # h + Linear(GELU(Linear(GELU(h))))
        w, b = net.out
        out = torch.addmm(b, torch.ops.aten.gelu_(h), w.T)
        return out if out.dtype == self.dtype else out.to(self.dtype)

    def _chunk(self, x: torch.Tensor, bufs: tuple[torch.Tensor, torch.Tensor], out: torch.Tensor) -> None:
        src, (a, b) = x, bufs
        logdet = None
        last = len(self.steps) - 1
        for k, (head, coup) in enumerate(self.steps):
            if isinstance(head, _Affine):
                torch.addmm(head.shift, src, head.matrix, out=a)
            else:
                torch.index_select(src, 1, head.index, out=a)
                a.mul_(head.scale).add_(head.shift)
            dc = coup.d_cond
            y_b, ld = self._coupling_op(a[:, dc:], self._conditioner(a[:, :dc], coup.net), coup.clamp)
            logdet = ld if logdet is None else logdet.add_(ld)
            if k == last:
                sq = torch.linalg.vecdot(a[:, :dc], a[:, :dc]).add_(torch.linalg.vecdot(y_b, y_b))
            else:
                a[:, dc:].copy_(y_b)
                src, a, b = a, b, a
        # log p = -½(Σ z² + D log 2π) + Σ logdet
        torch.add(logdet.add_(self.const), sq, alpha=-0.5, out=out)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density log p(x) in nats, one value per row of ``x`` [N, D] (any row stride)."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [N, {self.dim}], got shape {tuple(x.shape)}")
        if x.dtype != self.dtype:
            raise ValueError(f"x must be {self.dtype} (the plan's dtype), got {x.dtype}")
        n = x.shape[0]
        out = x.new_empty(n)
        if n == 0:
            return out
        rows = n if self.chunk is None else min(self.chunk, n)
        if self._bufs is None or self._bufs[0].shape[0] < rows or self._bufs[0].device != x.device:
            self._bufs = (x.new_empty(rows, self.dim), x.new_empty(rows, self.dim))  # reused by later calls
        bufs = self._bufs
        for i in range(0, n, rows):
            m = min(rows, n - i)
            self._chunk(x[i:i + m], (bufs[0][:m], bufs[1][:m]), out[i:i + m])
        return out


def scoring_log_prob(flow: RealNVP, dtype: torch.dtype, dispatch: Dispatch,
                     matmul_dtype: torch.dtype | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """log p(x) of ``flow`` for one scoring call: its :class:`FlowInference` plan where a compiled coupling kernel
    runs (``dispatch.has("coupling_forward")``), else the modules themselves (``RealNVP.log_prob``, the eager
    reference), with the call's dispatch and product dtype. Build it after the parameters are final."""
    if dispatch.has("coupling_forward"):
        return FlowInference(flow, dtype, backend=dispatch, matmul_dtype=matmul_dtype).log_prob
    return functools.partial(flow.log_prob, backend=dispatch, matmul_dtype=matmul_dtype)


def _lu_weight64(mix: LULinear) -> torch.Tensor:
    """W = P·L·U of :meth:`LULinear.weight`, formed in float64."""
    lower_mask = mix.lower_mask.double()
    lower = mix.lower.detach().double() * lower_mask + torch.eye(lower_mask.shape[0], dtype=torch.float64,
                                                                   device=lower_mask.device)
    upper = (mix.upper.detach().double() * lower_mask.T
             + torch.diag(mix.sign_s.double() * mix.log_s.detach().double().exp()))
    return mix.perm.double() @ lower @ upper
