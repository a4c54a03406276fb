"""FlowDetector: a RealNVP/Glow normalizing flow whose anomaly score is the exact negative log-likelihood.

A flow fitted to normal data gives every point its exact density p(x) (Dinh et al., ICLR 2017;
Kingma & Dhariwal, NeurIPS 2018); points the model finds unlikely are anomalous:

    score(x) = -log p(x) / D          (nats per dimension; D = features, or W·C for a window)

Raw likelihood is known to mis-rank some inputs: a flow can give *higher* density to data that are
simpler than the training data (Nalisnick et al., ICLR 2019; Kirichenko, Izmailov & Wilson, NeurIPS 2020)
— for series, a frozen sensor or a flat segment is the classic case. ``anomaly_score="typicality"`` instead
measures how far a point's NLL lies from the NLL typical of the training data, on either side
(the typicality test of Nalisnick et al., arXiv:1906.02994, for one sample):

    score(x) = | -log p(x)/D  -  mean over training data of (-log p/D) |

Use it when anomalies may be *too regular* (stuck values, dropped-out channels, constant segments);
keep ``"nll"`` (the default) when anomalies are spikes, shifts and noise bursts, which it ranks best.

Two more corrections subtract an estimate of the likelihood that simple inputs share
(:mod:`genad_fast.detectors._flow_scores` states them, their sources and the choices made):

    "likelihood_ratio":  ( -log p(x) + log p_general(x) ) / D      p_general: the training data's Gaussian
                         (Schirrmeister et al., NeurIPS 2020; Ren et al., NeurIPS 2019)
    "complexity":        NLL_bits(x) - L(x) / D                    L: coded length of x in 8 bits per value
                         (Serrà et al., ICLR 2020), bits per dimension

Each reuses the one flow pass of the NLL. The background Gaussian is fitted with the flow only when
``anomaly_score="likelihood_ratio"`` at fit (a D x D covariance: the default fit does no extra work); the
complexity score's quantisation range is fitted always (a few quantiles). docs/flow_scores.md compares the four:
on constant, smoothed and scaled-down windows of a noisy series the NLL's AUROC is 0.00 and each correction's
0.93-1.00, but on the evaluation's data sets (spikes, shifts, UCR 135, wdbc, digits) no correction beats the NLL
and the likelihood ratio falls far below it (a ratio cancels what the general model also finds unlikely). Pick a
correction only for anomalies that are too simple; ``"complexity"`` stays closest to the NLL elsewhere.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from genad_fast.detectors import _flow_scores as corrections
from genad_fast.detectors._call import build_network, current_call, get_thread_value, thread_value
from genad_fast._params import Param
from genad_fast.detectors._network import MATMUL_DTYPE, MATMUL_DTYPES
from genad_fast.detectors._renamed import take_renamed
from genad_fast.detectors._training_params import TRAINING_SPECS, TrainingParamsMixin, train_autocast, training_window
from genad_fast.detectors.base import REDUCE, BaseDetector
from genad_fast.nn import training
from genad_fast.nn.flow.mlp_function import bf16_products_available
from genad_fast.nn.flow import RealNVP
from genad_fast.nn.flow.plan import scoring_log_prob

SCORES = ("nll", "typicality", "likelihood_ratio", "complexity")
_LN2 = math.log(2.0)


class FlowDetector(TrainingParamsMixin, BaseDetector):
    """Normalizing-flow detector (exact likelihood), tabular or over windows of a series.

    Parameters
    ----------
    """

    _param_specs = (
        Param("n_steps", "int", "Flow steps, each ActNorm -> invertible mixing -> affine coupling.", low=1),
        Param("hidden", "int", "Width of the residual-MLP conditioners.", low=1),
        Param("n_blocks", "int", "Residual blocks per conditioner.", low=1),
        Param("clamp", "number", "Bound on the coupling log-scale, s = clamp·tanh(s_raw/clamp): keeps training "
              "stable (exp(s) in [e^-2, e^2] per step). 0 disables it.", low=0.0),
        Param("mixing", "choice", "Invertible mixing between couplings: LU-parametrised linear maps (Glow) up to 256 "
              "features, fixed permutations above (where D² products would dominate).",
              choices=("auto", "lu", "permutation")),
        Param("anomaly_score", "choice", "Anomaly score, see the module docstring. Formerly ``score`` (still "
              "accepted, with a DeprecationWarning: an attribute ``score`` hid scikit-learn's ``score()`` method).",
              choices=SCORES, scoring=True),
        REDUCE.but(doc="Series: how the scores of the windows covering a timestamp combine. A flow scores whole "
                   "windows, so \"mean\" and \"max\" smear an anomaly's score over the W - 1 normal timestamps on "
                   "either side; \"min\" keeps it where every covering window is anomalous, i.e. on the anomaly."),
        MATMUL_DTYPE.but(doc="Dtype of the conditioners' matrix products at scoring (bfloat16 is faster on CPUs "
                         "with bf16 instructions; the coupling transform and log-determinants stay float32)."),
        TRAINING_SPECS["train_dtype"].but(doc="Dtype of the conditioners' products in training (the coupling, "
                                          "log-determinants, weights, gradients and losses stay float32): "
                                          "\"bfloat16\" rounds the products' operands to bfloat16 and keeps their "
                                          "results float32 (the fused node on the CPU). \"auto\": bfloat16 on CPUs "
                                          "with AMX tiles, where it measured faster; float32 elsewhere."),
        TRAINING_SPECS["batch_size"].but(doc="Training samples per optimiser step. None: 64 windows of a series "
                                         "(Glow's reference batch), 256 rows of a table.", allow_none=True),
        TRAINING_SPECS["patience"].but(doc="Early stopping's patience in optimiser steps: training stops after "
                                       "``patience`` · 8 steps (rounded up to whole epochs) without improvement "
                                       "of the held-out loss, and the best epoch's weights are kept; an epoch "
                                       "holds at most half of those steps (10: ten epochs of 8 batches on a "
                                       "series, two of 40 on a 20,000-row table)."),
    )

    min_fit_samples = 16
    _loss_applies_train_dtype = True  # _training_loss: bfloat16 conditioner products only (train_dtype)
    _fused_adam = True  # docs/training_speed.md: the per-tensor Adam loop was ~20 % of a step
    _patience_in_steps = True  # docs/training_speed.md, "Patience in steps on long epochs"
    # Training defaults for speed (docs/training_speed.md, "FlowDetector"): windows sampled per epoch
    # (train_stride=None: window // 8, epochs of at least 8 batches); train_dtype="auto", bfloat16 conditioner
    # products where they measured faster (_train_matmul_dtype: AMX), in one C++ node per conditioner on MKL's
    # bfloat16 GEMM (under autocast's modules they had gained <= 5 %); batches of 1,024 (lr 2e-3) lost AUROC on the
    # small sets, where they only raise the rate.
    #: ``batch_size=None``: windows of a series train in batches of SERIES_BATCH_SIZE, the batch of Glow's reference
    #: code (openai/glow train.py: n_batch_train 64 at lr 1e-3). A series' windows overlap (256 random windows of W
    #: timestamps repeat each training timestamp ~256·W/T times), and a step of 64 moved the flow nearly as far as a
    #: step of 256 at a quarter of the products: the reference series fit 54.6 -> 24.7 CPU s (AVX2), mean AUROC over
    #: 60 GutenTAG fits 0.8488 -> 0.8512 (VUS-PR 0.6756 -> 0.6702). Rows of a table are independent samples and keep
    #: TABLE_BATCH_SIZE: on four 5,000-20,000-row tables batches of 64 ended on a worse held-out likelihood (AUROC
    #: -0.002 to -0.004) in 0.8-2x the time (a 32-feature step costs ~6 ms whatever its rows). docs/training_speed.md,
    #: "tenth pass".
    SERIES_BATCH_SIZE = 64
    TABLE_BATCH_SIZE = 256
    #: Rows or windows per scoring call: the fused plan streams each call in cache-sized chunks
    #: (:func:`~genad_fast.nn.flow.plan.chunk_rows`), and its per-call set-up amortises over more
    #: chunks; the eager modules run whole calls (measured, 65,536 × 64 on 2 Xeon cores: eager 670 /
    #: 624 / 667 ms at 4,096 / 8,192 / 16,384 rows per call, fused 536 / 494 / 488 ms).
    score_batch_size = 16384

    def __init__(self, n_steps: int = 8, hidden: int = 128, n_blocks: int = 2, clamp: float = 2.0,
                 mixing: str = "auto", anomaly_score: str = "nll", epochs: int = 100, batch_size: int | None = None,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float = 5.0, val_fraction: float = 0.1,
                 patience: int = 10, matmul_dtype: str = "float32", reduce: str = "min",
                 train_stride: int | None = None, train_dtype: str = "auto", **kwargs):
        anomaly_score = take_renamed(kwargs, "score", "anomaly_score", anomaly_score, "nll", type(self).__name__)
        super().__init__(reduce=reduce, **kwargs)
        self.n_steps = n_steps
        self.hidden = hidden
        self.n_blocks = n_blocks
        self.clamp = clamp
        self.mixing = mixing
        self.anomaly_score = anomaly_score
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience
        self.matmul_dtype = matmul_dtype
        self.train_stride = train_stride
        self.train_dtype = train_dtype

    def _train_batch_size(self) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        return self.TABLE_BATCH_SIZE if training_window(self) is None else self.SERIES_BATCH_SIZE

    # ---- hooks -------------------------------------------------------------------------------
    def _build(self, dim: int) -> RealNVP:
        return build_network(self, lambda: RealNVP(dim, n_steps=self.n_steps, hidden=self.hidden,
                                                   n_blocks=self.n_blocks, clamp=self.clamp, mixing=self.mixing),
                             "flow")

    def _fit_model(self, data: torch.Tensor) -> None:
        dim = data[0].numel()
        if dim < 2:
            raise ValueError("FlowDetector needs at least 2 dimensions per sample (features, or window x channels); "
                             f"got {dim}: use a window of 2 or more for a one-channel series")
        self.dim_ = dim
        self._freeze_constant_dims(data)
        self.model_ = self._build(self._n_active())
        self._initialize_actnorm(data)
        self.history_ = training.fit(self.model_, self._training_loss, data, self._train_config(),
                                     self._torch_generator("fit"), verbose=self.verbose, desc="FlowDetector")
        nll = self._training_nll(data)
        self.train_nll_mean_ = float(nll.double().mean())
        self._fit_nll = nll
        self._fit_corrections(data)

    # ---- the corrections' fitted parts (genad_fast.detectors._flow_scores) -------------------------------
    def _fit_corrections(self, data: torch.Tensor) -> None:
        """The complexity score's quantisation range (always: a few quantiles), the background Gaussian when the
        likelihood ratio is the score, and the chosen correction's values on the training data, for the
        training scores (no second flow pass)."""
        self.quant_lo_, self.quant_hi_ = corrections.robust_range(data, self._torch_generator("quant-range",
                                                                                                 device="cpu"))
        self.background_ = None
        if self.anomaly_score == "likelihood_ratio":
            def batches():
                for i in range(0, data.shape[0], self.score_batch_size):
                    yield self._active(data[i:i + self.score_batch_size].reshape(-1, self.dim_))
            self.background_ = corrections.GaussianBackground.fit(batches, self._n_active(), data.device)
        if self.anomaly_score in ("likelihood_ratio", "complexity"):
            with torch.inference_mode():
                self._fit_correction = torch.cat([self._correction(data[i:i + self.score_batch_size])
                                                  for i in range(0, data.shape[0], self.score_batch_size)])

    def _correction(self, batch: torch.Tensor) -> torch.Tensor:
        """What the score subtracts from the NLL (nats/dim) for ``"likelihood_ratio"`` (the background's NLL,
        nats/dim) or, for ``"complexity"``, from the NLL in bits/dim (L(x)/D minus the bin width's bits/dim):
        float64 ``[b]``."""
        x = batch.reshape(batch.shape[0], -1)
        if self.anomaly_score == "likelihood_ratio":
            return self.background_.nll(self._active(x)) / x.shape[1]
        return (corrections.rice_bits(batch, self.quant_lo_, self.quant_hi_) / x.shape[1]
                - corrections.quantization_bits(self.quant_lo_, self.quant_hi_))

    def _corrected(self, nll: torch.Tensor, correction: torch.Tensor | None) -> torch.Tensor:
        """The score from the NLL (nats/dim) and the correction of the score (:meth:`_correction`)."""
        kind = self.anomaly_score
        if kind == "nll":
            return nll
        if kind == "typicality":
            return (nll - self.train_nll_mean_).abs()
        if kind == "complexity":
            return (nll.double() / _LN2 - correction).to(nll.dtype)
        return (nll.double() - correction).to(nll.dtype)

    def _check_params(self, scoring: bool = False) -> None:
        super()._check_params(scoring)
        if scoring and hasattr(self, "model_"):
            if self.anomaly_score == "likelihood_ratio" and getattr(self, "background_", None) is None:
                raise ValueError("anomaly_score='likelihood_ratio' needs the background Gaussian, which is fitted "
                                 "with the flow only when that is the score at fit (and not by the sharded fit of "
                                 "genad_fast.distributed); this FlowDetector has none: refit it with "
                                 "anomaly_score='likelihood_ratio'")
            if self.anomaly_score == "complexity" and getattr(self, "quant_lo_", None) is None:
                raise ValueError("anomaly_score='complexity' needs the quantisation range of the training data, "
                                 "which this model lacks (saved by an older genad_fast, or fitted by the sharded "
                                 "fit of genad_fast.distributed): refit it")

    def _training_nll(self, data: torch.Tensor) -> torch.Tensor:
        """The NLL of the training data, for typicality's mean; in the batches of a scoring pass, so that with
        float32 products they are the training scores too (_training_scores): no second pass."""
        with torch.inference_mode(), self._scoring(data.dtype, matmul_dtype=None):
            return torch.cat([self._nll(data[i:i + self.score_batch_size])
                              for i in range(0, data.shape[0], self.score_batch_size)])

    @contextlib.contextmanager
    def _scoring(self, dtype: torch.dtype, matmul_dtype: torch.dtype | None) -> Iterator[None]:
        """Scoring set-up for one call: log p(x) by the flow's inference plan where the call's dispatch has a
        compiled coupling kernel (layers folded once per call, rows streamed in cache-sized chunks), else by the
        modules themselves, the plain reference (:func:`~genad_fast.nn.flow.plan.scoring_log_prob`). The
        set-up is this thread's, for the block (several threads may score one detector): the model is never
        changed."""
        log_prob = scoring_log_prob(self.model_, dtype, current_call(self).dispatch, matmul_dtype)
        with thread_value(self, "scoring", log_prob):
            yield

    def _nll(self, batch: torch.Tensor) -> torch.Tensor:
        """-log p(x)/D per sample, nats per dimension (D counts the frozen dimensions too)."""
        x = batch.reshape(batch.shape[0], -1)
        active = self._active(x)
        log_prob = get_thread_value(self, "scoring")
        log_p = log_prob(active) if log_prob is not None else \
            self.model_.log_prob(active, backend=current_call(self).dispatch)
        return -(log_p + self._frozen_log_prob(x)) / x.shape[1]

    # ---- constant dimensions -------------------------------------------------------------------
    # A dimension that is constant in the training data (a stuck sensor, an image pixel that is never lit)
    # has no density: a flow maximises its likelihood by shrinking it without bound (ActNorm starts by
    # dividing it by ~0), so training diverges or scores explode. Such dimensions are "frozen": the flow
    # models the others, and each frozen one gets a fixed standard normal around its training value, in
    # the units the flow sees (the Normalizer leaves constant columns unscaled, i.e. in their own units):
    #     log p(x) = log p_flow(x_active) + Σ_frozen log N(x_j; c_j, 1).
    def _freeze_constant_dims(self, data: torch.Tensor) -> None:
        # reductions of the window view: no copy
        self._freeze_outside_range(data.amax(dim=0).flatten(), data.amin(dim=0).flatten())

    def _freeze_outside_range(self, hi: torch.Tensor, lo: torch.Tensor) -> None:
        """Freeze the dimensions whose training range ``[lo, hi]`` (per dimension of a flattened sample) is empty."""
        frozen = (hi - lo) <= 1e-9 * torch.clamp(hi.abs(), min=1.0)
        n_active = int((~frozen).sum())
        if n_active < 2:
            raise ValueError(f"FlowDetector: {int(frozen.sum())} of {frozen.numel()} dimensions per sample are "
                             f"constant in the training data, leaving {n_active}; a flow needs at least 2 that vary")
        if bool(frozen.any()):
            self.active_dims_ = (~frozen).nonzero().flatten()
            self.frozen_dims_ = frozen.nonzero().flatten()
            self.frozen_values_ = lo[self.frozen_dims_].clone()
        else:
            self.active_dims_ = self.frozen_dims_ = self.frozen_values_ = None

    def _n_active(self) -> int:
        return int(self.active_dims_.numel()) if self.active_dims_ is not None else int(self.dim_)

    def _active(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.active_dims_ is None else x.index_select(1, self.active_dims_)

    def _frozen_log_prob(self, x: torch.Tensor) -> torch.Tensor | float:
        if self.frozen_dims_ is None:
            return 0.0
        d = x.index_select(1, self.frozen_dims_) - self.frozen_values_.to(x.dtype)
        return -0.5 * (d.double().pow(2).sum(dim=1) + d.shape[1] * math.log(2 * math.pi)).to(x.dtype)

    def _initialize_actnorm(self, data: torch.Tensor) -> None:
        """Glow's data-dependent ActNorm initialisation, on up to 4,096 training samples instead of the first
        batch: a dimension that happens to be constant within one batch would start scaled by 1/eps."""
        idx = self._actnorm_indices(int(data.shape[0])).to(data.device)
        self._initialize_actnorm_on(data[idx].reshape(idx.numel(), -1))

    def _actnorm_indices(self, n: int) -> torch.Tensor:
        """Which of ``n`` training samples initialise ActNorm: up to 4,096, drawn from the detector's seed."""
        return torch.randperm(n, generator=self._torch_generator("actnorm-init", device="cpu"),
                              device="cpu")[:min(n, 4096)]

    def _initialize_actnorm_on(self, samples: torch.Tensor) -> None:
        """ActNorm's data-dependent start from flattened samples ``[n, dim_]``: one forward pass in train mode."""
        self.model_.train()
        with torch.no_grad():
            self.model_.log_prob(self._active(samples), backend=current_call(self, "fit").dispatch)

    def _training_loss(self, model: RealNVP, batch: torch.Tensor) -> torch.Tensor:
        # The frozen dimensions hold their training value exactly: their term is a constant, left out.
        # train_dtype: the conditioners' product operands (_train_matmul_dtype); the coupling and log-determinants
        # stay float32
        x = self._active(batch.reshape(batch.shape[0], -1))
        return -model.log_prob(x, backend=current_call(self, "fit").dispatch,
                               matmul_dtype=self._train_matmul_dtype()).mean() / x.shape[1]

    def _train_matmul_dtype(self) -> torch.dtype | None:
        """``train_dtype`` resolved: the dtype of the conditioners' product operands in training (None: float32).
        "auto" is bfloat16 where that measured faster at every width: on a CPU with AMX tiles, with MKL's bfloat16
        GEMM in this torch build (docs/training_speed.md, ninth pass); float32 elsewhere (AVX2 and AVX512-BF16 alone
        unmeasured or slower, CUDA)."""
        if self.train_dtype != "auto":
            return train_autocast(self)
        device = getattr(self, "device_", None)
        on_cpu = device is None or torch.device(device).type == "cpu"
        return torch.bfloat16 if on_cpu and training.cpu_has_amx() and bf16_products_available() else None

    def _score_context(self, dtype: torch.dtype) -> contextlib.AbstractContextManager:
        return self._scoring(dtype, MATMUL_DTYPES[self.matmul_dtype])

    def _training_scores(self) -> torch.Tensor | None:
        nll, correction = self.__dict__.pop("_fit_nll", None), self.__dict__.pop("_fit_correction", None)
        if nll is None or MATMUL_DTYPES[self.matmul_dtype] is not None:  # bfloat16 products score otherwise
            return None
        return self._corrected(nll, correction)

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        nll = self._nll(batch)
        return self._corrected(nll, self._correction(batch) if self.anomaly_score in
                               ("likelihood_ratio", "complexity") else None)

    def _get_state(self) -> dict:
        return {"model": self.model_.state_dict(), "dim": self.model_.dim, "train_nll_mean": self.train_nll_mean_,
                "input_dim": self.dim_, "active_dims": self.active_dims_, "frozen_dims": self.frozen_dims_,
                "frozen_values": self.frozen_values_, "quant_lo": getattr(self, "quant_lo_", None),
                "quant_hi": getattr(self, "quant_hi_", None), "background": None if getattr(self, "background_", None)
                is None else self.background_.state_dict()}

    def _set_state(self, state: dict) -> None:
        self.model_ = self._build(int(state["dim"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        self.train_nll_mean_ = float(state["train_nll_mean"])
        # files from before constant dimensions were frozen: every dimension is active
        self.dim_ = int(state.get("input_dim", state["dim"]))
        self.active_dims_ = state.get("active_dims")
        self.frozen_dims_ = state.get("frozen_dims")
        self.frozen_values_ = state.get("frozen_values")
        # files from before the corrected scores: no quantisation range, no background
        self.quant_lo_, self.quant_hi_ = state.get("quant_lo"), state.get("quant_hi")
        background = state.get("background")
        self.background_ = None if background is None else corrections.GaussianBackground.from_state_dict(background)

