"""Inference plan of a :class:`~genad_fast.nn.diffusion.Denoiser`: the same ε̂, restructured for scoring.

The modules run every layer as ``[B, C, L]`` tensors: a broadcast add of the step projection, a oneDNN
dilated convolution, six element-wise passes for the gated unit, a batched 1×1 product, two passes for the
residual and one for the skip sum, each into a fresh tensor. At scoring the weights are fixed and one
diffusion step t is shared by every tile of a network call, so the plan folds what it can once and runs the
rest as a few large matrix products on a time-major ``[rows, channels]`` layout:

* Layout. The N reads of a call (tiles, windows) are stacked time-major into one buffer with ``p`` gap rows
  before, between and after them (p = the largest dilation·(k-1)/2). A kernel-size-k dilated convolution
  is then k shifted products accumulated with ``addmm`` over all rows at once,
  ``Z = Σ_j U[rows + (j - (k-1)/2)·d] · W_jᵀ`` (on 2 Xeon cores 3 products of K=32 take about 0.6 of
  oneDNN's conv1d here, and there is no im2col copy); the 1×1 convolutions are plain products. Rows in
  the gaps compute garbage that is never read as a result.
* Residual scale. With u_l = 2^{l/2}·h_l - B_l the residual update h_{l+1} = (h_l + r_l)/√2 becomes
  u_{l+1} = u_l + 2^{l/2}·W_r·y_l: the factor goes into the layer's residual weights, 2^{-l/2} into the next
  dilated convolution's weights, and the residual biases into B_l = Σ_{j<l} 2^{j/2}·b_{r,j}. The residual and
  skip halves of the layer's 1×1 convolution are two products added in place (``addmm_``) to contiguous
  buffers u and skip (reading u out of one strided ``[u | skip]`` buffer makes each convolution product about
  30 % slower, which costs more than the second ``addmm_``); the skip biases are summed once into the final
  skip convolution's bias, and 1/√L into its weights.
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

from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser

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
        self._bufs: dict = {}

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
        """Buffers and their views for n reads of ``length``, kept for the last two shapes (a series' full groups
        of tiles and its last, smaller group alternate).

        Rows: read i occupies rows [i·seg + p, (i + 1)·seg) with seg = length + p; gaps of p rows sit before
        each read and after the last (the buffers have n + 1 segments so that all gaps are one strided view).
        """
        key = (n, length, like.device)
        if key in self._bufs:
            return self._bufs[key]
        p, cr, half = self.pad, self.hidden, (self.kernel_size - 1) // 2
        seg = length + p
        alloc, end = (n + 1) * seg, n * seg                      # rows allocated; the last read ends at row end
        dev = like.device
        new = lambda c: torch.empty(alloc, c, dtype=self.dtype, device=dev)  # noqa: E731
        X = torch.zeros(alloc, self.in_channels, dtype=self.dtype, device=dev)
        U, S, Z, Y, O = new(cr), new(cr), new(2 * cr), new(cr), new(self.channels)
        mid = slice(p, end)                                       # every read's rows and the gaps between them
        taps = {d: [U[p + (j - half) * d:end + (j - half) * d] for j in range(self.kernel_size)]
                for d in set(self.dilations)}
        bufs = {"x_reads": X.view(n + 1, seg, -1)[:n, p:], "x": X[mid],
                "u": U[mid], "u_gaps": U.view(n + 1, seg, -1)[:, :p], "taps": taps, "s": S[mid],
                "z": Z[mid], "gate": Z[mid, :cr], "filt": Z[mid, cr:], "y": Y[mid], "o": O[mid],
                "out": O.view(n + 1, seg, -1)[:n, p:].transpose(1, 2)}
        if len(self._bufs) >= 2:
            self._bufs.pop(next(iter(self._bufs)))
        self._bufs[key] = bufs
        return bufs

    def __call__(self, x: torch.Tensor | list[torch.Tensor], consts: list[tuple[torch.Tensor, torch.Tensor]]
                 ) -> torch.Tensor:
        """ε̂ ``[N, channels, L]`` of the network input ``x`` ``[N, in_channels, L]`` at the step of ``consts``.

        ``x`` may also be a list of reads ``[b_i, in_channels, L]`` (N = Σ b_i, stacked in order): they are
        copied into the plan's buffer directly, without stacking them first."""
        reads = list(x) if isinstance(x, (list, tuple)) else [x]
        if not reads:
            raise ValueError("x is an empty list of reads")
        length = reads[0].shape[-1]
        for r in reads:
            if r.dim() != 3 or r.shape[1] != self.in_channels or r.shape[2] != length:
                raise ValueError(f"x must be [N, {self.in_channels}, L] (one L for all reads), got {tuple(r.shape)}")
            if r.dtype != self.dtype:
                raise ValueError(f"x must be {self.dtype} (the plan's dtype), got {r.dtype}")
        if len(consts) != len(self.conv_w):
            raise ValueError(f"consts has {len(consts)} layers, the network {len(self.conv_w)}: use step_constants")
        n = sum(r.shape[0] for r in reads)
        v = self._buffers(n, length, reads[0])
        i = 0
        for r in reads:
            v["x_reads"][i:i + r.shape[0]].copy_(r.transpose(1, 2))
            i += r.shape[0]
        Z, Y, U, S, gate, filt = v["z"], v["y"], v["u"], v["s"], v["gate"], v["filt"]
        torch.addmm(self.inp[1], v["x"], self.inp[0], out=U).relu_()   # h_0 = ReLU(W_in x + b_in) = u_0
        S.zero_()
        u_gaps = v["u_gaps"]
        for d, ws, (wr, wsk), (bias, fill) in zip(self.dilations, self.conv_w, self.out_w, consts):
            u_gaps.copy_(fill.expand_as(u_gaps))                # u + Q_l = 0 outside the reads: zero padding
            taps = v["taps"][d]
            torch.addmm(bias, taps[0], ws[0], out=Z)            # Σ_j U[rows + (j - half)·d] · W_j + bias
            for src, w in zip(taps[1:], ws[1:]):
                Z.addmm_(src, w)
            Z.sigmoid_()                                        # σ(g), σ(2f)
            torch.neg(gate, out=Y)
            Y.addcmul_(gate, filt, value=2.0)                   # σ(g)·(2σ(2f) - 1) = σ(g)·tanh(f)
            U.addmm_(Y, wr)                                     # u += 2^{l/2} W_r y
            S.addmm_(Y, wsk)                                    # skip += W_s y
        torch.addmm(self.skip[1], S, self.skip[0], out=Y)
        torch.addmm(self.out[1], Y.relu_(), self.out[0], out=v["o"])
        return v["out"]
