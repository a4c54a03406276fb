"""VAEDetector: a Gaussian variational autoencoder (Kingma & Welling, ICLR 2014) scored by the
negative ELBO (the default) or by the reconstruction probability of An & Cho (2015).

Training maximises the β-weighted evidence lower bound (β = 1: the plain VAE; Higgins et al., ICLR 2017)

    ELBO_β(x) = E_q(z|x)[log p(x|z)] - β · KL(q(z|x) || N(0, I)),

with a Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)) and a Gaussian decoder p(x|z) = N(m(z), diag s²(z))
(:class:`genad_fast.nn.vae.GaussianVAE`: an MLP for rows, 1-D convolutions over time for windows).
The anomaly score uses L = ``n_samples`` codes z_l ~ q(z|x), decoded in one batched pass:

    anomaly_score="recon_prob":  -log( (1/L) Σ_l p(x | z_l) )          (An & Cho, 2015: reconstruction probability)
    anomaly_score="elbo":        -(1/L) Σ_l log p(x | z_l) + KL(q(z|x) || N(0, I))     (negative ELBO, β = 1)

The reconstruction probability uses the decoder's variance, so a deviation on a channel the model
reconstructs precisely counts more than one on a noisy channel. On series each window of W timestamps is one
sample and gets one score, the bound above on -log p(window) (the default, ``per_timestamp=False``); ``reduce``
combines the windows covering a timestamp. With ``per_timestamp=True`` the log-densities are instead summed per
timestamp over the channels (the ELBO's KL term spread as KL/W): no longer the default, since the decoder's
learned variance s²(z) depends on where a timestamp sits in a pattern, so per-timestamp terms rank timestamps by
their phase in a beat or a cycle as much as by their anomaly (docs/quality_study.md, "One score per window").
Scores are Monte Carlo estimates: the L draws come from the detector's seeded scoring stream, so the same data
gives the same scores.
"""
from __future__ import annotations

import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network, current_call
from genad_fast.detectors._fused_score import FusedScoreMixin
from genad_fast.detectors._hook_helpers import stream_seed
from genad_fast.detectors._network import MIN_STEPS, NetworkParamsMixin, default_code_size, sample_shape
from genad_fast.detectors._renamed import take_renamed
from genad_fast.detectors._training_params import TRAINING_SPECS
from genad_fast.detectors.base import REDUCE, BaseDetector
from genad_fast.nn import training
from genad_fast.nn.conv_plan import ConvNetPlan
from genad_fast.nn.vae import SCORES, GaussianVAE, elbo_loss
from genad_fast.ops.dispatch import Dispatch

#: Codes decoded per pass at scoring (L x windows), bounding the memory of the batched L samples.
MAX_CODES_PER_PASS = 16384


class VAEDetector(FusedScoreMixin, NetworkParamsMixin, BaseDetector):
    """Gaussian VAE detector, tabular or over windows of a series.

    Parameters
    ----------
    """

    min_fit_samples = 8
    #: Model files without the parameter predate the per-window default: they scored per timestamp.
    _params_before = {"per_timestamp": True}
    _param_specs = (
        MIN_STEPS,
        Param("latent_dim", "int", "Size of z; None: half the input size (features, or W·C), at least 2, at most 16, "
              "and below the input size.",
              low=1, allow_none=True),
        Param("beta", "number", "Weight of the KL term in the training objective (β-VAE). The ``\"elbo\"`` score "
              "always uses β = 1 (the bound on -log p(x)).", low=0.0, low_open=True),
        Param("anomaly_score", "choice", "Anomaly score, see the module docstring; \"elbo\" by default since the "
              "quality study (docs/quality_study.md): its KL term sees a code far from the prior, which the "
              "reconstruction probability ignores (AUROC wdbc 0.872 -> 0.917, ECG 0.619 -> 0.633, no data set "
              "worse by more than 0.004). Formerly ``score`` (still accepted, with a DeprecationWarning: an "
              "attribute ``score`` hid scikit-learn's ``score()`` method).",
              choices=SCORES, scoring=True),
        Param("n_samples", "int", "L, the latent samples per input at scoring.", low=1, scoring=True),
        Param("min_variance", "number", "Floor of the decoder variance s² (in units of the normalised data).",
              low=0.0, low_open=True),
        Param("per_timestamp", "bool", "Windows: one score per timestamp of each window, else one per window (the "
              "default since the quality study, docs/quality_study.md: a per-timestamp share of the window's density "
              "carries the decoder variance of that timestamp's phase; suite `full`, seed 0: mean VUS-PR of the 31 "
              "series 0.547 -> 0.676, gt-ecg-pattern 0.371 -> 0.986). Per window spreads a one-timestamp spike "
              "over the windows around it (the study's synthetic series of spikes: AUROC 0.987 -> 0.921): keep "
              "True for such data. Model files keep the value they were saved with.",
              scoring=True),
        TRAINING_SPECS["epochs"].but(doc="Training epochs (:func:`genad_fast.nn.training.fit`) on -ELBO_β / D with "
                                     "one latent sample per input; at most, early stopping may end sooner."),
        REDUCE.but(doc="Series: how the scores of the windows covering a timestamp combine (see "
                   ":data:`genad_fast.series.REDUCTIONS`). \"mean\" (the default since the quality study, "
                   "docs/quality_study.md): \"min\" keeps a score only where every covering window finds the "
                   "timestamp anomalous, which loses an anomaly seen in context only (ECG AUROC 0.543 with "
                   "\"min\", 0.619 with \"mean\"; kdd135 0.881 -> 0.964; the synthetic series 0.975 -> 0.987)."),
    )

    def __init__(self, latent_dim: int | None = None, beta: float = 1.0, anomaly_score: str = "elbo",
                 n_samples: int = 16, hidden: tuple[int, ...] | None = None, kernel_size: int = 5,
                 batch_norm: bool = False, min_variance: float = 1e-3, per_timestamp: bool = False,
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
                 grad_clip: float = 5.0, val_fraction: float = 0.1, patience: int = 10, min_steps: int = 1000,
                 reduce: str = "mean",
                 **kwargs):
        anomaly_score = take_renamed(kwargs, "score", "anomaly_score", anomaly_score, "elbo",
                                     type(self).__name__)
        super().__init__(reduce=reduce, **kwargs)
        self.latent_dim = latent_dim
        self.beta = beta
        self.anomaly_score = anomaly_score
        self.n_samples = n_samples
        self.hidden = hidden
        self.kernel_size = kernel_size
        self.batch_norm = batch_norm
        self.min_variance = min_variance
        self.per_timestamp = per_timestamp
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience
        self.min_steps = min_steps

    def _build(self, shape: tuple[int, ...], latent: int) -> GaussianVAE:
        hidden = self._hidden_for(shape)
        return build_network(self, lambda: GaussianVAE(shape, latent, hidden, kernel_size=self.kernel_size,
                                                       batch_norm=self.batch_norm,
                                                       min_variance=float(self.min_variance)), "vae")

    def _fit_model(self, data: torch.Tensor) -> None:
        shape = sample_shape(data)
        latent = self.latent_dim if self.latent_dim is not None else default_code_size(data[0].numel())
        self.model_ = self._build(shape, latent)
        beta = float(self.beta)
        noise = current_call(self, "fit").generator("elbo", self.device_)  # the reparameterisation's ε

        def loss(model: GaussianVAE, batch: torch.Tensor) -> torch.Tensor:
            return elbo_loss(model, batch, beta, noise)

        self.history_ = training.fit(self.model_, loss, data, self._fit_config(data.shape[0]),
                                     self._torch_generator("fit"), verbose=self.verbose, desc="VAEDetector")

    def _fused_score(self, dispatch: Dispatch, dtype: torch.dtype) -> ConvNetPlan | None:
        """The encoder and decoder as fused stages (:class:`ConvNetPlan`; the decoder, which runs L codes per window,
        is most of a pass: 16 codes 0.11 against 0.30 ms, 4,096 codes 25 against 54 ms; with AVX2 kernels 0.27
        against 0.51 and 64 against 112 ms, and within 8 % of the modules from 256 to 1,024 codes), or None where
        the modules score: rows (an MLP), or a dispatch without a compiled ``conv1d_act`` (the eager backend, the
        reference)."""
        if not self._fuses(self.model_.encoder, dispatch, dtype):
            return None
        return ConvNetPlan(self.model_.encoder, self.model_.decoder, dtype, dispatch)

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        nets = self._held_fused_score()  # the call's ConvNetPlan, where it runs
        L = int(self.n_samples)
        per_t = self.is_series and self.per_timestamp
        step = max(1, MAX_CODES_PER_PASS // L)
        # ε keyed on each row's content: a row scores the same alone, in any batch or stream
        seed = stream_seed(self.seed_, "latent-samples")
        return torch.cat([self.model_.scores(batch[i:i + step], self.anomaly_score, L, per_timestamp=per_t,
                                             noise_seed=seed, nets=nets)
                          for i in range(0, batch.shape[0], step)])

    def _get_state(self) -> dict:
        return {"model": self.model_.state_dict(), "sample_shape": list(self.model_.sample_shape),
                "latent_dim": self.model_.latent_dim}

    def _set_state(self, state: dict) -> None:
        self.model_ = self._build(tuple(int(s) for s in state["sample_shape"]), int(state["latent_dim"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
