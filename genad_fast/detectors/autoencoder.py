"""AutoEncoderDetector: the reconstruction error of a deterministic autoencoder (the DCAE baseline of
Ruff et al., "Deep One-Class Classification", ICML 2018).

An autoencoder trained on normal data to reconstruct it through a ``latent_dim`` bottleneck
reconstructs normal samples well and anomalies badly (Sakurada & Yairi, 2014):

    anomaly_score="reconstruction":
        score(x)   = ||x - D(E(x))||² / D                    (rows: mean over the D features)
        score(x)_t = Σ_c (x_tc - x̂_tc)² / C                   (windows, per timestamp; ``per_timestamp=True``)

The reconstruction error alone misses an anomaly that moves along the directions the autoencoder learned: a
level shift or a frequency change shared by all channels stays on the normal manifold and is reconstructed well
(the quality study, docs/quality_study.md: AUROC 0.94 on such frequency changes, where PCA's likelihood reaches
0.99). ``anomaly_score="latent_gaussian"`` adds the code's distance from the training codes, as the
probabilistic-PCA likelihood adds the in-subspace term to the residual (Tipping & Bishop, 1999): with the mean μ
and covariance Σ of the training codes z = E(x), and σ² the mean squared reconstruction error per element of the
training data,

        score(x)   = ( ||x - x̂||² / σ² + (z - μ)ᵀ Σ⁻¹ (z - μ) ) / D
        score(x)_t = ( Σ_c (x_tc - x̂_tc)² / σ² + (z - μ)ᵀ Σ⁻¹ (z - μ) / W ) / C     (per timestamp)

(twice the negative log-density of a Gaussian code with an isotropic Gaussian residual, up to constants, per
element; the per-timestamp scores of a window sum to its score). One Gaussian misses a gap in the codes: an outlier
cluster between two normal clusters sits at the Gaussian's centre (AUROC 0.52 in the study's constructed case).
``anomaly_score="latent_density"`` (the default) puts a Gaussian kernel density estimate of the whitened training codes
u_i = W (z_i - μ) in place of the Gaussian, with Scott's bandwidth h = m^(-1/(k+4)) (k = latent_dim, m the
reference codes: every training code, or :data:`MAX_REFERENCE_CODES` of them evenly spaced):

        t(z) = -2 log( (1/m) Σ_i exp(-||W (z - μ) - u_i||² / (2 h²)) )
        score(x) = ( ||x - x̂||² / σ² + t(z) ) / D,    score(x)_t = ( Σ_c (x_tc - x̂_tc)² / σ² + t(z) / W ) / C

Windows are encoded with 1-D convolutions over time, rows with an MLP
(:mod:`genad_fast.nn.blocks`). By default (``per_timestamp=False``) each window gets its score, the mean of
its per-timestamp scores, and each timestamp the mean over the windows covering it (``reduce``). With
``per_timestamp=True`` each timestamp gets the mean over the covering windows of its own error instead: sharper
on a one-timestamp spike, but the error of a timestamp depends on where it sits in a pattern (a sharp beat is
reconstructed worse than a flat stretch), so normal timestamps rank by their phase, and a changed pattern that a
window reconstructs as a normal one is missed (docs/quality_study.md, "One score per window").
"""
from __future__ import annotations

import math

import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network
from genad_fast.detectors._fused_score import FusedScoreMixin
from genad_fast.detectors._network import MIN_STEPS, HIDDEN, NetworkParamsMixin, default_code_size, sample_shape
from genad_fast.detectors.base import REDUCE, BaseDetector
from genad_fast.nn import training
from genad_fast.nn.autoencoder import AutoEncoder, reconstruction_loss
from genad_fast.nn.conv_plan import ConvNetPlan
from genad_fast.ops.dispatch import Dispatch
from genad_fast.ops.distance import hold_refs

#: ``anomaly_score`` values (module docstring).
AE_SCORES = ("latent_density", "latent_gaussian", "reconstruction")
#: The most training codes the ``"latent_density"`` score keeps (evenly spaced over the training samples): the
#: kernel sum costs m·k per scored sample.
MAX_REFERENCE_CODES = 2048


def reference_rows(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The indices of the reference codes among n training samples: min(n, :data:`MAX_REFERENCE_CODES`) evenly
    spaced ones (deterministic, and spread over the whole series for windows)."""
    return torch.linspace(0, n - 1, min(n, MAX_REFERENCE_CODES), device=device).round().long().unique()


@torch.inference_mode()
def training_codes(model: AutoEncoder, data: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes ``[n, k]`` (float64) of ``data`` and the sum of its squared reconstruction errors, in batches."""
    codes, sq_sum = [], torch.zeros((), dtype=torch.float64, device=data.device)
    for i in range(0, data.shape[0], batch_size):
        x = data[i:i + batch_size]
        z = model.encoder(x)
        sq_sum += (x - model.decoder(z)).square().sum().to(torch.float64)
        codes.append(z.to(torch.float64))
    return torch.cat(codes), sq_sum


class FusedWindowScore:
    """The autoencoder's score of windows on a compiled backend, built once per scoring call (a stream holds it for
    all its updates): the same formulas as the modules' path of :meth:`AutoEncoderDetector._score_model` (module
    docstring) in fewer, fused calls:

    - the convolutional networks as :func:`~genad_fast.ops.conv1d_act` calls (:class:`ConvNetPlan`);
    - the code z = H h + b and its whitened form u = W (z - μ) as one product, the whitening folded into the
      encoder's head (``[H; W H]``, bias ``[b; W (b - μ)]``, in float64, then the data dtype);
    - the code density's kernel sum as one :func:`~genad_fast.ops.kde_logpdf` call against the whitened reference
      codes, held packed (:func:`~genad_fast.ops.distance.hold_refs`):
      t(z) = -2 log( (1/m) Σ_i exp(-||u - u_i||² / (2 h²)) ) = -2 ( kde_logpdf(u) - log_norm ),
      log_norm = -(k/2) log(2π h²).

    Equal to the modules' path to float rounding (another summation order; tests/test_conv_plan.py), and faster at
    every batch size measured: one window 0.055 against 0.22 ms, 16 windows 0.29 against 0.97 ms, 1,024 windows 18
    against 24 ms (AVX-512; AVX2: 0.058, 0.40, 26 against 0.22, 0.92, 27 ms; one thread, docs/streaming.md). Built
    for one dispatch whose ``conv1d_act`` and ``kde_logpdf`` are compiled, from the detector's fitted state and
    scoring parameters at that time (a stream's detector must not change while it is open)."""

    def __init__(self, det: "AutoEncoderDetector", dispatch: Dispatch, dtype: torch.dtype) -> None:
        self.net = ConvNetPlan(det.model_.encoder, det.model_.decoder, dtype, dispatch)
        self.per_timestamp = det.is_series and det.per_timestamp
        self.kind = det.anomaly_score
        head_w, head_b = (t.to(torch.float64) for t in self.net.encoder_head)
        self.k = head_w.shape[0]
        if self.kind != "reconstruction":
            whiten, mean = det.code_whiten_.to(torch.float64), det.code_mean_.to(torch.float64)
            head_w = torch.cat([head_w, whiten @ head_w])
            head_b = torch.cat([head_b, (head_b - mean) @ whiten.T])
            self.inv_var = 1.0 / float(det.residual_var_)
        self.head_weight_t = head_w.T.to(dtype).contiguous()
        self.head_bias = head_b.to(dtype)
        if self.kind == "latent_density":
            self._kde = dispatch.kernel("kde_logpdf")
            with torch.inference_mode(False):  # a tensor with a version counter, so that it can be held
                self.refs = det.code_ref_.detach().to(dtype).clone()
            self.held = hold_refs(self.refs)
            self.bandwidth = float(det.code_bandwidth_)
            self.log_norm = -0.5 * self.k * (math.log(2.0 * math.pi) + 2.0 * math.log(self.bandwidth))

    def score(self, batch: torch.Tensor) -> torch.Tensor:
        """Scores of windows ``batch [b, W, C]``: ``[b]``, or ``[b, W]`` per timestamp."""
        zu = torch.addmm(self.head_bias, self.net.features(batch), self.head_weight_t)
        sq = torch.sub(batch, self.net.decode(zu[:, :self.k])).square_()
        if self.kind == "reconstruction":
            return sq.mean(-1) if self.per_timestamp else sq.flatten(1).mean(1)
        u = zu[:, self.k:]
        W, C = batch.shape[1], batch.shape[2]
        # (Σ sq / σ² + term) / (W·C), term = Σ u² or -2 (kde_logpdf(u) - log_norm); per timestamp the term's
        # W-th part goes to each timestamp: (Σ_c sq / σ² + term / W) / C
        if self.kind == "latent_gaussian":
            term, scale, shift = u.square().sum(-1), 1.0, 0.0
        else:
            term, scale, shift = self._kde(u, self.refs, self.bandwidth, False), -2.0, 2.0 * self.log_norm
        if self.per_timestamp:
            out = torch.add(sq.sum(-1), term.unsqueeze(-1), alpha=scale / (W * self.inv_var))
            return out.mul_(self.inv_var / C).add_(shift / (W * C))
        # flatten(1): each row reduced as one contiguous run, in the same order whatever the batch (a sum over two
        # dims of this strided layout is ordered by the batch's size: scores would depend on the batch)
        out = torch.add(sq.flatten(1).sum(1), term, alpha=scale / self.inv_var)
        return out.mul_(self.inv_var / (W * C)).add_(shift / (W * C))


class AutoEncoderDetector(FusedScoreMixin, NetworkParamsMixin, BaseDetector):
    """Autoencoder reconstruction-error detector, tabular or over windows of a series.

    Parameters
    ----------
    """

    min_fit_samples = 8
    #: Model files without the parameter predate the per-window default: they scored per timestamp.
    _params_before = {"per_timestamp": True}
    _param_specs = (
        MIN_STEPS,
        Param("latent_dim", "int", "Bottleneck size; None: half the input size (features, or W·C), at least 2, at "
              "most 16, and below the input size (:func:`~genad_fast.detectors._network.default_code_size`): an "
              "autoencoder as wide as its input can learn the identity and reconstruct anomalies too.", low=1,
              allow_none=True),
        HIDDEN.but(doc="Hidden widths of the MLP (rows) or channels of the convolution stages (windows, each stage "
                   "halves the length); None: (128, 64) for rows, (32, 64) for windows."),
        Param("anomaly_score", "choice", "The score (see the module docstring): the reconstruction error, or "
              "with the code's Mahalanobis distance from the training codes added. Models saved before this "
              "parameter existed load with \"reconstruction\", the score they were fitted for.",
              choices=AE_SCORES, scoring=True),
        Param("per_timestamp", "bool", "Windows: score each timestamp by its own reconstruction error, else each "
              "window by its mean error (the default since the quality study, docs/quality_study.md: GutenTAG "
              "series, seed 0, mean VUS-PR 0.621 -> 0.752, mean AUROC 0.864 -> 0.923). Per window spreads a "
              "one-timestamp spike over the windows around it (the study's synthetic series of spikes: AUROC "
              "0.986 -> 0.946): keep True for such data. Model files keep the value they were saved with.",
              scoring=True),
        REDUCE.but(doc="Series: how the per-timestamp scores of the windows covering a timestamp combine (see "
                   ":data:`genad_fast.series.REDUCTIONS`). \"mean\" (the default since the quality study, "
                   "docs/quality_study.md): \"min\" keeps a score only where every covering window finds the "
                   "timestamp anomalous, which localises a spike but loses an anomaly seen in context only (a "
                   "changed heart beat: the windows that hold a few of its timestamps reconstruct them; ECG AUROC "
                   "0.733 with \"min\", 0.872 with \"mean\"); with per-timestamp errors the mean also scored the "
                   "synthetic series better (0.978 -> 0.986; its VUS-PR fell, 0.926 -> 0.841)."),
    )

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None, kernel_size: int = 5,
                 batch_norm: bool = False, per_timestamp: bool = False, epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float = 5.0, val_fraction: float = 0.1,
                 patience: int = 10, min_steps: int = 1000, reduce: str = "mean",
                 anomaly_score: str = "latent_density", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.kernel_size = kernel_size
        self.batch_norm = batch_norm
        self.per_timestamp = per_timestamp
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience
        self.min_steps = min_steps
        self.anomaly_score = anomaly_score

    def _build(self, shape: tuple[int, ...], latent: int) -> AutoEncoder:
        hidden = self._hidden_for(shape)
        return build_network(self, lambda: AutoEncoder(shape, latent, hidden, kernel_size=self.kernel_size,
                                                       batch_norm=self.batch_norm), "autoencoder")

    def _fit_model(self, data: torch.Tensor) -> None:
        shape = sample_shape(data)
        n_dims = data[0].numel()
        latent = self.latent_dim if self.latent_dim is not None else default_code_size(n_dims)
        self.model_ = self._build(shape, latent)
        self.history_ = training.fit(self.model_, reconstruction_loss, data, self._fit_config(data.shape[0]),
                                     self._torch_generator("fit"), verbose=self.verbose, desc="AutoEncoderDetector")
        self._fit_code_stats(data)

    def _fit_code_stats(self, data: torch.Tensor) -> None:
        """The code statistics of the scores from the training ``data`` (one pass: :func:`training_codes`)."""
        n = data.shape[0]
        z, sq_sum = training_codes(self.model_, data, int(self.score_batch_size))
        self._set_code_stats(n, z.sum(0), z.T @ z, float(sq_sum), data[0].numel(),
                             self.reference_codes(data[reference_rows(n, data.device)]), data.dtype)

    @torch.inference_mode()
    def reference_codes(self, rows: torch.Tensor) -> torch.Tensor:
        """The codes (float64) of the reference samples, in one encoder call (a data-parallel fit gathers the same
        rows and gets the same numbers)."""
        return self.model_.encoder(rows).to(torch.float64)

    def _set_code_stats(self, n: int, z_sum: torch.Tensor, zz_sum: torch.Tensor, sq_sum: float, n_dims: int,
                        reference: torch.Tensor, dtype: torch.dtype) -> None:
        """μ and a whitening W (W Σ Wᵀ = I) of the training codes, σ², and the whitened reference codes, from
        the sums over the n training samples (float64: Σ z, Σ z zᵀ, Σ ||x - x̂||²) and the codes at
        :func:`reference_rows` (a data-parallel fit sums these over its processes)."""
        mean = z_sum / n
        cov = zz_sum / n - torch.outer(mean, mean)
        eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        # A ridge of 1e-6 of the mean variance (at least 1e-12): codes that collapsed onto fewer dimensions than
        # latent_dim still give a finite, if very narrow, Gaussian across the missing ones.
        ridge = max(float(torch.diagonal(cov).mean()) * 1e-6, 1e-12)
        chol = torch.linalg.cholesky(cov + ridge * eye)
        whiten = torch.linalg.solve_triangular(chol, eye, upper=False)
        self.code_mean_ = mean.to(dtype)
        self.code_whiten_ = whiten.to(dtype)
        self.residual_var_ = max(sq_sum / n_dims / n, 1e-12)
        self.code_ref_ = ((reference - mean) @ whiten.T).to(dtype)
        self.code_bandwidth_ = float(reference.shape[0]) ** (-1.0 / (reference.shape[1] + 4))

    def _fused_score(self, dispatch: Dispatch, dtype: torch.dtype) -> FusedWindowScore | None:
        """The fused score of windows (:class:`FusedWindowScore`), or None where the modules score: rows (an MLP), a
        dispatch without compiled ``conv1d_act`` and ``kde_logpdf`` kernels (the eager backend runs the modules, its
        reference), or a model without the code statistics its score needs (``_score_model`` says so)."""
        if not self._fuses(self.model_.encoder, dispatch, dtype, "kde_logpdf") or \
                (self.anomaly_score != "reconstruction" and self.code_mean_ is None):
            return None
        return FusedWindowScore(self, dispatch, dtype)

    def _code_term(self, z: torch.Tensor) -> torch.Tensor:
        """The code's term of the score ``[b]``: Mahalanobis distance, or -2 log of the kernel density."""
        u = (z - self.code_mean_) @ self.code_whiten_.T
        if self.anomaly_score == "latent_gaussian":
            return u.square().sum(-1)
        ref = self.code_ref_
        # ||u - r||² by the expansion (matmul; torch.cdist does not export to ONNX), clamped at 0 against rounding
        d2 = (u.square().sum(-1, keepdim=True) + ref.square().sum(-1) - 2.0 * u @ ref.T).clamp_min(0.0)
        h2 = self.code_bandwidth_ ** 2
        return -2.0 * (torch.logsumexp(-d2 / (2.0 * h2), dim=-1) - math.log(ref.shape[0]))

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        fused = self._held_fused_score()  # the call's FusedWindowScore, where it runs
        if fused is not None:
            return fused.score(batch)
        per_t = self.is_series and self.per_timestamp
        if self.anomaly_score == "reconstruction":
            return self.model_.errors(batch, per_timestamp=per_t)
        if self.code_mean_ is None:
            raise ValueError(f"anomaly_score={self.anomaly_score!r} needs the training codes' statistics, which "
                             "this model (saved before the option existed) lacks; score it with "
                             "anomaly_score='reconstruction' or refit it")
        z = self.model_.encoder(batch)
        sq = (batch - self.model_.decoder(z)).square() / self.residual_var_
        term = self._code_term(z)   # [b]
        if per_t:
            return (sq.sum(-1) + (term / batch.shape[1]).unsqueeze(-1)) / batch.shape[2]
        return (sq.flatten(1).sum(1) + term) / sq[0].numel()

    def _get_state(self) -> dict:
        state = {"model": self.model_.state_dict(), "sample_shape": list(self.model_.sample_shape),
                 "latent_dim": int(self.model_.encoder.out_dim)}
        if self.code_mean_ is not None:
            state.update(code_mean=self.code_mean_, code_whiten=self.code_whiten_,
                         residual_var=float(self.residual_var_), code_ref=self.code_ref_,
                         code_bandwidth=float(self.code_bandwidth_))
        return state

    def _set_state(self, state: dict) -> None:
        self.model_ = self._build(tuple(int(s) for s in state["sample_shape"]), int(state["latent_dim"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        if "code_mean" not in state:
            # A file from before anomaly_score existed: its params do not name one, so the constructor's default
            # came in; the model was fitted (and thresholded) for the reconstruction error, which needs no more.
            self.anomaly_score = "reconstruction"
            self.code_mean_ = self.code_whiten_ = self.residual_var_ = self.code_ref_ = self.code_bandwidth_ = None
            return
        self.code_mean_ = state["code_mean"]
        self.code_whiten_ = state["code_whiten"]
        self.residual_var_ = float(state["residual_var"])
        self.code_ref_ = state["code_ref"]
        self.code_bandwidth_ = float(state["code_bandwidth"])
