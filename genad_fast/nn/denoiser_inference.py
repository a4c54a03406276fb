"""Scoring plan of a :class:`~genad_fast.nn.denoiser.Denoiser`: the same ε̂, restructured for inference.

The modules run every layer as ``[B, C, L]`` tensors: a broadcast add of the step projection, a oneDNN
dilated convolution, six element-wise passes for the gated unit, a batched 1×1 product, two passes for the
residual and one for the skip sum, each into a fresh tensor. At scoring the weights are fixed and one
diffusion step t is shared by every tile of a network call, so the plan folds what it can once and runs the
rest as a few large matrix products on a time-major ``[rows, channels]`` layout:

* Layout. The N reads of a call (tiles, windows) are stacked time-major into one buffer with ``p`` gap rows
  before, between and after them (p = the largest dilation·(k-1)/2). A kernel-size-k dilated convolution
  is then k shifted products accumulated with ``addmm`` over all rows at once,
  ``Z = Σ_j U[rows + (j - (k-1)/2)·d] · W_jᵀ`` (on 2 Xeon cores 3 products of K=32 take about 0.6 of
  oneDNN's conv1d here, and there is no im2col copy); the 1×1 convolutions are one product each. Rows in
  the gaps compute garbage that is never read as a result.
* Residual scale. With u_l = 2^{l/2}·h_l - B_l the residual update h_{l+1} = (h_l + r_l)/√2 becomes
  u_{l+1} = u_l + 2^{l/2}·W_r·y_l: the factor goes into the layer's residual weights, 2^{-l/2} into the next
  dilated convolution's weights, and the residual biases into B_l = Σ_{j<l} 2^{j/2}·b_{r,j}. The residual and
  skip halves of the layer's 1×1 convolution are one product added in place to the buffer ``[u | skip]``
  (``addmm_``); the skip biases are summed once into the final skip convolution's bias, and 1/√L into its
  weights.
* Step embedding. The convolution's input is 2^{-l/2}(u_l + Q_l) with Q_l = B_l + 2^{l/2}·P_l·e(t) constant
  over a call, so Σ_j W_j·Q_l goes into the convolution's bias once per step (:meth:`step_constants`), and
  the zero padding of every read is kept exact by filling u's gap rows with -Q_l before the layer: there
  u + Q_l = 0, as the module's padding.
* Gated unit. tanh(f) = 2σ(2f) - 1 (as the module); the factor 2 is folded into the filter half of the
  convolution, so σ runs once in place over both halves and y = 2·σ(g)·σ(2f) - σ(g) is two passes.

All folds are formed in float64 and rounded once to the plan's dtype. The result is the module's ε̂ to
float rounding (the order of sums differs); it is tested against ``Denoiser.forward`` in float32 and
float64, both denoisers. This is restructuring of the pipeline around unchanged ATen/BLAS ops; there is no
new kernel.
"""
from __future__ import annotations

import math

import torch

from genad_fast.nn.denoiser import ConditionalDenoiser, Denoiser

__all__ = ["DenoiserInference"]


class DenoiserInference:
    """ε̂ of a fixed :class:`Denoiser` (or :class:`ConditionalDenoiser`) with its layers folded for scoring.

    Build it after the parameters are final (it copies them); ``dtype`` is the dtype of inputs, products and
    outputs (float32 or float64). Per diffusion step, :meth:`step_constants` turns the step embedding into
    the per-layer constants; :meth:`__call__` runs the network input ``[N, in_channels, L]`` (for the
    conditional denoiser, :meth:`ConditionalDenoiser.inputs`) and returns ``[N, channels, L]``: a view into
    a buffer the next call overwrites.
    """

    def __init__(self, model: Denoiser, dtype: torch.dtype = torch.float32):
        if not isinstance(model, Denoiser):
            raise ValueError(f"DenoiserInference needs a Denoiser, got {type(model).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"DenoiserInference runs in float32 or float64, got {dtype}")
        self.dtype = dtype
        self.conditional = isinstance(model, ConditionalDenoiser)
        self.channels, self.in_channels = model.channels, model.in_channels
        self.kernel_size = model.kernel_size
        self.receptive_radius = model.receptive_radius
        self._model = model  # its step MLP and step projections run once per step (step_constants)
        layers = list(model.layers)
        n = len(layers)
        half = (self.kernel_size - 1) // 2
        self.pad = max(layer.dilation for layer in layers) * half
        self.dilations = [layer.dilation for layer in layers]

        def f64(t: torch.Tensor) -> torch.Tensor:
            return t.detach().double()

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype).contiguous()

        with torch.no_grad():
            w_in = f64(model.inp.weight)[:, :, 0]
            self.inp = (cast(w_in.T), cast(f64(model.inp.bias)))
            cr = w_in.shape[0]
            self.hidden = cr
            self._conv_w64, self._conv_b, self.conv_w, self.out_w = [], [], [], []
            self._step_w64, self._res_bias_sum = [], []       # P_l, b_l of the step projection; B_l
            res_bias = torch.zeros(cr, dtype=torch.float64, device=w_in.device)
            skip_bias = torch.zeros(cr, dtype=torch.float64, device=w_in.device)
            for l, layer in enumerate(layers):
                up = 2.0 ** (l / 2)
                w = f64(layer.conv.weight) / up                  # [2Cr, Cr, k], input scale 2^{-l/2}
                b = f64(layer.conv.bias).clone()
                w[cr:] *= 2.0                                   # filter half: σ(2f)
                b[cr:] *= 2.0
                self._conv_w64.append(w)
                self._conv_b.append(b)
                self.conv_w.append([cast(w[:, :, j].T) for j in range(self.kernel_size)])   # [Cr, 2Cr] each
                wo, bo = f64(layer.out.weight)[:, :, 0].clone(), f64(layer.out.bias)
                wo[:cr] *= up                                   # residual half: 2^{l/2}·W_r
                self.out_w.append((cast(wo[:cr].T), cast(wo[cr:].T)))   # [Cr, Cr] each: residual, skip
                self._step_w64.append((f64(layer.step_proj.weight), f64(layer.step_proj.bias), up))
                self._res_bias_sum.append(res_bias.clone())     # B_l = Σ_{j<l} 2^{j/2} b_{r,j}
                res_bias += up * bo[:cr]
                skip_bias += bo[cr:]
            w_sk = f64(model.skip.weight)[:, :, 0] / math.sqrt(n)
            self.skip = (cast(w_sk.T), cast(f64(model.skip.bias) + w_sk @ skip_bias))
            self.out = (cast(f64(model.out.weight)[:, :, 0].T), cast(f64(model.out.bias)))
        self._bufs: dict | None = None

    # ---- per step -------------------------------------------------------------------------------------
    def step_constants(self, step: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (convolution bias, gap fill) for one step embedding ``step`` ``[1, E]`` (or ``[E]``)."""
        step = step.detach().reshape(-1).double()
        out = []
        with torch.no_grad():
            for w64, b, (pw, pb, up), base in zip(self._conv_w64, self._conv_b, self._step_w64, self._res_bias_sum):
                q = base + up * (pw @ step + pb)                 # Q_l
                bias = b + w64.sum(2) @ q                        # b_c + Σ_j W_j·Q_l (W already scaled)
                out.append((bias.to(self.dtype), (-q).to(self.dtype)))
        return out

    # ---- the network ----------------------------------------------------------------------------------
    def _buffers(self, n: int, length: int, like: torch.Tensor) -> dict:
        key = (n, length, like.device)
        if self._bufs is None or self._bufs["key"] != key:
            p, cr = self.pad, self.hidden
            rows = n * (length + p) + p
            new = lambda *s: torch.empty(*s, dtype=self.dtype, device=like.device)  # noqa: E731
            self._bufs = {"key": key, "x": torch.zeros(rows, self.in_channels, dtype=self.dtype, device=like.device),
                          "u": new(rows, cr), "s": new(rows, cr), "z": new(rows, 2 * cr), "y": new(rows, cr),
                          "o": new(rows, self.channels)}
        return self._bufs

    def __call__(self, x: torch.Tensor, consts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """ε̂ ``[N, channels, L]`` of the network input ``x`` ``[N, in_channels, L]`` at the step of ``consts``."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [N, {self.in_channels}, L], got {tuple(x.shape)}")
        if x.dtype != self.dtype:
            raise ValueError(f"x must be {self.dtype} (the plan's dtype), got {x.dtype}")
        if len(consts) != len(self.conv_w):
            raise ValueError(f"consts has {len(consts)} layers, the network {len(self.conv_w)}: use step_constants")
        n, _, length = x.shape
        p, cr, half = self.pad, self.hidden, (self.kernel_size - 1) // 2
        seg = length + p
        buf = self._buffers(n, length, x)
        X, U, S, Z, Y, O = buf["x"], buf["u"], buf["s"], buf["z"], buf["y"], buf["o"]
        rows = X.shape[0]
        X[:n * seg].view(n, seg, -1)[:, p:].copy_(x.transpose(1, 2))
        mid = slice(p, rows - p)                                # every read's rows (and the gaps between them)
        u_gaps, u_last = U[:n * seg].view(n, seg, -1)[:, :p], U[n * seg:]
        Zm, Ym, Um, Sm = Z[mid], Y[mid], U[mid], S[mid]
        torch.addmm(self.inp[1], X[mid], self.inp[0], out=Um).relu_()   # h_0 = ReLU(W_in x + b_in) = u_0
        Sm.zero_()
        gate, filt = Zm[:, :cr], Zm[:, cr:]
        for d, ws, (wr, wsk), (bias, fill) in zip(self.dilations, self.conv_w, self.out_w, consts):
            u_gaps.copy_(fill.expand_as(u_gaps))               # u + Q_l = 0 outside the reads: zero padding
            u_last.copy_(fill.expand_as(u_last))
            for j, w in enumerate(ws):
                shift = (j - half) * d
                src = U[p + shift:rows - p + shift]
                if j == 0:
                    torch.addmm(bias, src, w, out=Zm)
                else:
                    Zm.addmm_(src, w)
            Zm.sigmoid_()                                       # σ(g), σ(2f)
            torch.neg(gate, out=Ym)
            Ym.addcmul_(gate, filt, value=2.0)                  # σ(g)·(2σ(2f) - 1) = σ(g)·tanh(f)
            Um.addmm_(Ym, wr)                                   # u += 2^{l/2} W_r y
            Sm.addmm_(Ym, wsk)                                  # skip += W_s y
        torch.addmm(self.skip[1], Sm, self.skip[0], out=Ym)
        torch.addmm(self.out[1], Ym.relu_(), self.out[0], out=O[mid])
        return O[:n * seg].view(n, seg, -1)[:, p:].transpose(1, 2)
