"""DTEDetector: Diffusion Time Estimation (Livernoche, Jain, Hezaveh & Ravanbakhsh, "On Diffusion Modeling for
Anomaly Detection", ICLR 2024; reference code github.com/vicliv/DTE, ``diffusion/dte.py``).

A diffusion process noises normal data; a network learns to tell, from a noisy sample x_t, the diffusion time t
that produced it. A clean normal point looks like t ≈ 0; a point far from the normal data looks as if it had
diffused for a long time. The anomaly score of x is the time predicted for x itself: one network call per
sample (no reverse chain, unlike DDPM-based scores). The non-parametric form of the same idea ranks points as
kNN does (the paper, section 4.1); the network generalises it and is fast at inference.

    score(x) = log(E[t | x] - c_0),  E[t | x] = Σ_k p_k(x)·c_k,  c_k = (k + 1/2)·T/n_bins
                                                                variant="categorical" (default; the paper's DTE-C)
    score(x) = mode of p(σ² | x) = 2·β(x)/D                     variant="inverse_gamma" (DTE-IG)

with the forward process, objectives and network of :mod:`genad_fast.nn.dte`. Training noises each batch with
the fused :func:`genad_fast.ops.add_noise` (Philox noise drawn in the kernel); scoring runs each MLP layer as
one fused :func:`genad_fast.ops.linear_act` call (product, bias, ReLU) on the CPU and CUDA backends.

Defaults are the reference code's ``DTECategorical``: T = 400 steps of a linear β schedule from 1e-4 to 0.01
(so σ²_T = 1 - ᾱ_T ≈ 0.87), 7 bins, MLP (256, 512, 256) with dropout 0.5, Adam lr 1e-4, weight decay 5e-4,
batch 64, 400 epochs, no gradient clipping (``grad_clip=0``), and the variance-exploding noise x_t = x_0 + σ_t·z.
As in the reference, no early stopping (``val_fraction=0``): the held-out loss is a Monte-Carlo estimate over
random t and noise whose epoch-to-epoch noise is as large as the whole improvement (the cross-entropy moves from
ln 7 ≈ 1.946 to about 1.93), so early stopping ends training on noise: on 600 rows of N(0, I_6) against a
blob shifted by 3, training stopped after 21 of 40 epochs and reached AUROC 0.94, all 40 epochs 1.00.
One addition to the reference: beyond the ball around the training mean that holds every training sample, the
logits get the analytic posterior's distance term (:mod:`genad_fast.nn.dte`, "Out-of-range term"), so a point
far outside the data scores as the latest time instead of wherever the network's linear extrapolation lands.
Training length on small tables: at least ``min_steps`` = 4,000 optimiser steps (epochs are added where the 400
epochs make fewer; the rule the autoencoder, VAE and Deep SVDD follow with 1,000). The reference's budget is counted
in epochs, so it shrinks with the table: 400 epochs of a 124-row digits class at batch 64 are 800 steps at lr 1e-4,
too few for the network to learn the time posterior (the AUROCs below). 4,000 steps are
what the 400 epochs give a table of about 640 rows; on such a table (digits 0-4 against 5-9, 624 training rows)
the reference settings reach AUROC 0.919, and a 10x larger lr, the other way to train more, falls to 0.894, so the
steps grow and the lr stays the reference's. Measured at the defaults, mean of seeds 0-2 (docs/quality_study.md,
"DTE's training length"): digits classes 0.969 -> 0.991, wine 0.681 -> 0.928, wdbc 0.915 -> 0.946. A series of
2,500 windows makes about 16,000 steps in its 400 epochs, so series and tables of 640 rows or more are unchanged.
Cost: about 1.6 MFLOP per training sample and epoch with the default MLP (forward and backward), so 400 epochs
of 1,000 rows is about 0.6 TFLOP (tens of seconds on one core); lower ``epochs`` for large data.
The reference standardises the features (its README: "crucial"); ``normalize=True`` does that here. The
schedule's noise levels (σ²_t up to 0.87) assume that scale: with ``normalize=False`` (features on a common scale
to keep, e.g. pixels) the detector divides the data by one number, the root mean variance of the training
features, s = sqrt(mean_j Var(x_j)) (``data_scale_``), which keeps their relative scales and makes the scores
invariant to the data's units. Without it, digits in [0, 1] (s ≈ 0.2-0.3, so the noise swamped the data from
the first steps) reached AUROC 0.879 on average over the one-class tasks, with it 0.969 (docs/quality_study.md).

Series: a window of W timestamps and C channels is one flattened sample of W·C values; its score goes to each of
its timestamps, combined over the covering windows by ``reduce`` ("min" by default, as kNN, whose ranking the
non-parametric DTE equals: a timestamp scores high only if every window covering it does).

Whitening (not in the reference, which models table rows). The noise is isotropic, so the network learns to read
its level from whatever isotropic noise changes most. The values of a window are lagged copies of a few channels:
a smooth series puts nearly all of its variance in a few directions, and white noise shows most in the others,
the window's roughness. The network then reads the noise level from roughness, and an anomaly that is smooth (a
sawtooth's stretch turned into a sine) reads as cleaner than any normal window however far it lies from them: on
the gutentag series gt-sawtooth-pattern the detector without whitening has AUROC 0.17, its anomalies ranked
lowest. Standardising each feature, which the reference calls crucial, does not touch that correlation;
whitening does: z = Σ̂^(-1/2)·(x - μ) (:mod:`genad_fast.nn.whitening`; Σ̂ the training windows' Ledoit-Wolf
covariance, shrunk by at least 1 %) gives every direction unit scale. Noise then shows equally in all of them, no
direction is quiet enough to read roughness from, and what the network can learn is the one cue that also holds off
the data: how far z lies out, i.e. the Mahalanobis distance, which the non-parametric DTE's squared distance
becomes. Its price is the Mahalanobis distance's: deviations along the directions the signal itself spans count
less, so an anomaly that only scales the signal can drown in the normal windows' noise, now at unit scale
(gt-mls-amplitude, a binary sequence's amplitude: VUS-PR 0.94 without whitening, 0.08 with). ``whiten_power`` p
maps by c·Σ̂^(-p) instead (c: unit mean variance): p = 1/4 is halfway in the logarithm of each direction's scale
(gt-mls-amplitude 0.74). ``whiten="auto"`` (the default) maps windows of up to 2,048 values, where the D x D
product costs less than the network; table rows keep the reference's per-feature standardisation (``whiten=True``
maps them too). Measured at the defaults on the gutentag series (seed 0): docs/quality_study.md, "DTE: whitened
windows".
"""
from __future__ import annotations

import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network, current_call
from genad_fast.detectors._training_params import MIN_STEPS, TrainingParamsMixin
from genad_fast.detectors.base import REDUCE, BaseDetector
from genad_fast.nn import training
from genad_fast.nn.diffusion.schedules import NoiseSchedule
from genad_fast.nn.dte import DTE_VARIANTS, DTELoss, DTENet, bin_variances, check_log_shape
from genad_fast.nn.whitening import Whitening, float64_rows

__all__ = ["DTEDetector"]

#: ``whiten="auto"`` whitens windows of at most this many values: the whitening's eigendecomposition (O(D³)) and
#: its D x D product per scored window stay below the network's cost there.
WHITEN_AUTO_MAX_DIMS = 2048


class DTEDetector(TrainingParamsMixin, BaseDetector):
    """Diffusion Time Estimation detector, tabular or over windows of a series (see the module docstring).

    Fitted attributes: ``model_`` (the :class:`~genad_fast.nn.dte.DTENet`), ``history_`` (training losses), and
    the base's.

    Parameters
    ----------
    """

    min_fit_samples = 8
    _param_specs = (
        MIN_STEPS,
        Param("variant", "choice", "What the network predicts: the time's bin (cross-entropy, DTE-C) or the "
              "inverse-gamma posterior of the noise variance (DTE-IG; needs at least 3 input values).",
              choices=DTE_VARIANTS),
        Param("n_steps", "int", "Diffusion steps T; training draws t uniformly from 0 .. T-1 (reference: 400).",
              low=2),
        Param("beta_start", "number", "β_0 of the linear schedule (reference: 1e-4).", low=0.0, high=1.0,
              low_open=True, high_open=True),
        Param("beta_end", "number", "β_{T-1} of the linear schedule (reference: 0.01).", low=0.0, high=1.0,
              low_open=True, high_open=True),
        Param("n_bins", "int", "Categorical: bins of the diffusion time (reference: 7).", low=2),
        Param("drift", "bool", "False: x_t = x_0 + σ_t·z (the reference's form, whose posterior is inverse-gamma); "
              "True: the DDPM form x_t = sqrt(ᾱ_t)·x_0 + σ_t·z (categorical only)."),
        Param("hidden", "widths", "Hidden widths of the MLP (reference: (256, 512, 256))."),
        Param("dropout", "number", "Dropout after every hidden layer but the first, in training (reference: 0.5).",
              low=0.0, high=1.0, high_open=True),
        REDUCE.but(doc="Series: how the scores of the windows covering a timestamp combine (\"min\": a timestamp "
                   "scores high only if every window covering it does, as for kNN)."),
        Param("whiten", "choice", "Whiten the samples with their Ledoit-Wolf shrunk covariance before noising "
              "(module docstring, \"Whitening\"): \"auto\" does for windows of a series of at most "
              f"{WHITEN_AUTO_MAX_DIMS} values (W·C), not for table rows.", choices=("auto", True, False)),
        Param("whiten_power", "number", "The whitening's exponent p: windows mapped by c·Σ̂^(-p) (1/2: whitened; "
              "1/4: halfway in the logarithm of each direction's scale, less sensitive to the data's noise-only "
              "directions and more to anomalies along its signal).", low=0.0, high=0.5, low_open=True),
    )

    def __init__(self, variant: str = "categorical", n_steps: int = 400, beta_start: float = 1e-4,
                 beta_end: float = 0.01, n_bins: int = 7, drift: bool = False,
                 hidden: tuple[int, ...] = (256, 512, 256), dropout: float = 0.5, epochs: int = 400,
                 batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 5e-4, grad_clip: float = 0.0,
                 val_fraction: float = 0.0, patience: int = 10, min_steps: int = 4000, reduce: str = "min",
                 whiten: str | bool = "auto", whiten_power: float = 0.5, **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.variant = variant
        self.n_steps = n_steps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.n_bins = n_bins
        self.drift = drift
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience
        self.min_steps = min_steps
        self.whiten = whiten
        self.whiten_power = whiten_power

    # ---- parameters ------------------------------------------------------------------------------
    def _check_params(self, scoring: bool = False) -> None:
        super()._check_params(scoring)
        if scoring:
            return
        if self.beta_start > self.beta_end:
            raise ValueError(f"beta_start={self.beta_start} is larger than beta_end={self.beta_end}; the linear "
                             f"schedule needs beta_start <= beta_end")
        if self.variant == "categorical" and self.n_bins > self.n_steps:
            raise ValueError(f"n_bins={self.n_bins} is larger than n_steps={self.n_steps}: some bins would hold "
                             f"no diffusion step")
        if self.variant == "inverse_gamma" and self.drift:
            raise ValueError("variant='inverse_gamma' needs drift=False: the inverse-gamma posterior of the noise "
                             "variance holds for x_t = x_0 + σ_t·z only")

    def _schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_name("linear", int(self.n_steps), float(self.beta_start), float(self.beta_end))

    def _build(self, n_dims: int) -> DTENet:
        out = int(self.n_bins) if self.variant_ == "categorical" else 1
        hidden = tuple(int(h) for h in self.hidden)
        return build_network(self, lambda: DTENet(n_dims, hidden, out, float(self.dropout)), "dte")

    # ---- hooks -----------------------------------------------------------------------------------
    def _fit_model(self, data: torch.Tensor) -> None:
        n_dims = int(data[0].numel())
        if self.variant == "inverse_gamma":
            check_log_shape(n_dims)
        # what scoring reads, fixed at fit: set_params may change the parameters of a fitted model
        self.variant_, self.n_steps_ = str(self.variant), int(self.n_steps)
        self.model_ = self._build(n_dims)
        self.whitening_ = Whitening.fit(data, power=float(self.whiten_power)) if self._whitens(data) else None
        if self.whitening_ is not None:  # unit variance in every direction: no scale of its own
            # one [n, W·C] float32 copy of the mapped windows (training draws its batches from it): one product
            # of the whole set instead of a D x D product per batch of every one of the ~16,000 steps
            data, self.data_scale_ = self.whitening_.transform_all(data), 1.0
        else:
            self.data_scale_ = 1.0 if self.normalizer_ is not None else _root_mean_variance(data)
        alpha_bar = self._schedule().alpha_bars.to(device=self.device_, dtype=torch.float32)
        bin_var = bin_variances(alpha_bar, self.model_.out_dim) if self.variant_ == "categorical" else \
            torch.ones(1, device=self.device_)
        self.model_.set_support(data, bin_var, scale=self.data_scale_)
        call = current_call(self, "fit")
        loss = DTELoss(self.variant, alpha_bar, bool(self.drift), call.dispatch,
                       call.generator("training-noise", self.device_))
        if self.data_scale_ != 1.0:  # each batch scaled as it is drawn: a view of windows is never copied whole
            loss = _ScaledBatches(loss, self.data_scale_)
        self.history_ = training.fit(self.model_, loss, data, self._fit_config(data.shape[0]),
                                     self._torch_generator("fit"), verbose=self.verbose, desc="DTEDetector")

    def _whitens(self, data: torch.Tensor) -> bool:
        """``whiten``, "auto" resolved: windows (``data [n, W, C]``) of at most WHITEN_AUTO_MAX_DIMS values."""
        if self.whiten == "auto":
            return data.dim() == 3 and data[0].numel() <= WHITEN_AUTO_MAX_DIMS
        return bool(self.whiten)

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        rows = batch.reshape(batch.shape[0], -1)
        if self.whitening_ is not None:
            rows = self.whitening_(rows)
        elif self.data_scale_ != 1.0:
            rows = rows / self.data_scale_
        return self.model_.predict(rows, self.n_steps_, current_call(self).dispatch)

    def _get_state(self) -> dict:
        w = self.whitening_
        return {"model": self.model_.state_dict(), "n_dims": int(self.model_.in_dim), "variant": self.variant_,
                "n_steps": self.n_steps_, "data_scale": float(self.data_scale_),
                "whitening": None if w is None else {"mean": w.mean, "matrix": w.matrix, "shrinkage": w.shrinkage}}

    def _set_state(self, state: dict) -> None:
        self.variant_, self.n_steps_ = str(state["variant"]), int(state["n_steps"])
        # files from before the scale: their models were trained on the data as it came
        self.data_scale_ = float(state.get("data_scale", 1.0))
        w = state.get("whitening")  # files from before the whitening: none
        self.whitening_ = None if w is None else Whitening(w["mean"], w["matrix"], float(w["shrinkage"]))
        if self.variant_ not in DTE_VARIANTS:
            raise ValueError(f"unknown DTE variant {self.variant_!r} in the state")
        self.model_ = self._build(int(state["n_dims"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()


class _ScaledBatches:
    """``loss(model, batch / scale)``: the training loss on the data divided by the detector's ``data_scale_``."""

    def __init__(self, loss, scale: float):
        self.loss, self.scale = loss, scale

    def __call__(self, model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return self.loss(model, batch / self.scale)


def _root_mean_variance(data: torch.Tensor, chunk: int = 4096) -> float:
    """sqrt(mean over the features of their variance over the training samples ``data [N, ...]``), accumulated in
    float64 over chunks of rows (a view of windows is never copied whole); 1.0 where it is 0 or not finite
    (constant data: nothing to scale)."""
    n = data.shape[0]
    shift = data[:1].reshape(1, -1).to(torch.float64)  # a training row: no cancellation of large offsets
    total = sq = None
    for rows in float64_rows(data, chunk):
        part = rows - shift
        total = part.sum(0) if total is None else total + part.sum(0)
        sq = (part * part).sum(0) if sq is None else sq + (part * part).sum(0)
    mean = total / n
    var = (sq / n - mean * mean).clamp_min(0.0).mean()
    scale = float(var.sqrt())
    return scale if 0.0 < scale < float("inf") else 1.0
