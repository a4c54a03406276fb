"""DeepSVDDDetector: Deep Support Vector Data Description (Ruff et al., "Deep One-Class Classification",
ICML 2018).

A bias-free network φ is trained to map the normal data close to a fixed centre c; the anomaly score
is the squared distance to it (:mod:`genad_fast.nn.svdd` has the objectives and why they do not collapse):

    objective="one-class":      min_W (1/n) Σ ||φ(x_i) - c||²,                 score(x) = ||φ(x) - c||²
    objective="soft-boundary":  min_{W,R} R² + 1/(νn) Σ max(0, ||φ(x_i) - c||² - R²),
                                                                               score(x) = ||φ(x) - c||² - R²

plus weight decay λ/2 Σ||W||² (``weight_decay``). Fitting follows the paper:

1. optional pre-training (``pretrain_epochs`` > 0): a bias-free autoencoder whose encoder is φ is trained
   to reconstruct the data (:mod:`genad_fast.nn.autoencoder`); its encoder weights start φ;
2. c = the mean of φ(x) over the training data from one forward pass, coordinates with |c_j| < ``center_eps``
   set to ±``center_eps``;
3. φ is trained on the objective with Adam (:func:`genad_fast.nn.training.fit`). Soft-boundary: the first
   ``warm_up_epochs`` epochs train with R = 0; from then on, after every epoch, R is solved exactly for the
   current weights (the (1 - ν)-quantile of the distances ||φ(x) - c|| over the training data, as the order
   statistic that leaves at most a fraction ν of them outside), and once
   more at the end for the weights kept.

Rows go through an MLP, windows through 1-D convolutions over time (:mod:`genad_fast.nn.blocks`); a window
gets one score, given to each of its timestamps and combined over the covering windows by ``reduce``.
"""
from __future__ import annotations

import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network
from genad_fast.detectors._fused_score import FusedScoreMixin
from genad_fast.detectors._network import MIN_STEPS, NetworkParamsMixin, default_code_size, sample_shape
from genad_fast.detectors._training_params import TRAINING_SPECS
from genad_fast.detectors.base import REDUCE, BaseDetector
from genad_fast.nn import training
from genad_fast.nn.autoencoder import AutoEncoder, reconstruction_loss
from genad_fast.nn.conv_plan import ConvNetPlan
from genad_fast.nn.svdd import OBJECTIVES, DeepSVDD, svdd_loss, svdd_network
from genad_fast.ops.dispatch import Dispatch


#: Windows per batch from which :class:`FusedSVDDScore` runs the modules: φ alone is two convolutions, which oneDNN's
#: batched kernels run faster than the fused stages from about 32 windows on (one thread; 24 with AVX2 kernels, 96
#: with two threads: 128 windows 1.05 against 1.43 ms, 16 windows 0.27 against 0.17 ms; Sapphire Rapids).
MAX_FUSED_ROWS = 32


class FusedSVDDScore:
    """Deep SVDD's score of windows on a compiled backend, built once per scoring call (a stream holds it): for
    batches under :data:`MAX_FUSED_ROWS` windows (a stream's updates), φ's convolution stages as
    :func:`~genad_fast.ops.conv1d_act` calls (:class:`ConvNetPlan`) and the centre folded into φ's bias-free head,
    φ(x) - c = h Wᵀ - c as one product, then ||φ(x) - c||² (minus R² for the soft boundary); larger batches
    through the modules. The same score as :meth:`DeepSVDD.scores` to float rounding (tests/test_conv_plan.py)."""

    def __init__(self, model: DeepSVDD, dispatch: Dispatch, dtype: torch.dtype) -> None:
        self.model = model
        self.net = ConvNetPlan(model.net, None, dtype, dispatch)
        weight, bias = self.net.encoder_head
        self.head_weight_t = weight.T.contiguous()
        center = model.center.detach().to(torch.float64)
        self.head_bias = (-center if bias is None else bias.to(torch.float64) - center).to(dtype)
        self.radius_sq = float(model.radius) ** 2 if model.objective == "soft-boundary" else None

    def score(self, batch: torch.Tensor) -> torch.Tensor:
        """Scores ``[b]`` of windows ``batch [b, W, C]``."""
        if batch.shape[0] >= MAX_FUSED_ROWS:
            return self.model.scores(batch)
        d = torch.addmm(self.head_bias, self.net.features(batch), self.head_weight_t).square_().sum(-1)
        return d if self.radius_sq is None else d.sub_(self.radius_sq)


class DeepSVDDDetector(FusedScoreMixin, NetworkParamsMixin, BaseDetector):
    """Deep SVDD detector (one-class or soft-boundary), tabular or over windows of a series.

    Parameters
    ----------
    """

    min_fit_samples = 8
    _param_specs = (
        MIN_STEPS,
        Param("objective", "choice", "See the module docstring.", choices=OBJECTIVES),
        Param("nu", "number", "Soft-boundary: the upper bound on the fraction of training points outside the "
              "sphere (ν).", low=0.0, high=1.0, low_open=True),
        Param("rep_dim", "int", "Output size of φ; None: half the input size (features, or W·C), at least 2, at "
              "most 16, and below the input size.", low=1, allow_none=True),
        Param("pretrain_epochs", "int", "Epochs of bias-free autoencoder pre-training (same batch size, learning "
              "rate, clipping and early stopping as the main training); 0 starts φ from its random "
              "initialisation.", low=0),
        Param("warm_up_epochs", "int", "Soft-boundary: epochs before the radius is first solved for.", low=0),
        Param("center_eps", "number", "The guard of c: coordinates of |c_j| below it are set to ±center_eps.",
              low=0.0, low_open=True),
        Param("batch_norm", "bool", "Batch normalisation (without affine parameters: φ stays bias-free) after each "
              "hidden layer."),
        TRAINING_SPECS["weight_decay"].but(doc="The λ of the objective (default 1e-6 as in the paper): an L2 "
                                           "penalty on the weights."),
        REDUCE.but(doc="Series: how the scores of the windows covering a timestamp combine; \"min\" keeps a "
                   "window-level score on the anomaly instead of smearing it over the W - 1 timestamps on either "
                   "side."),
    )

    def __init__(self, objective: str = "one-class", nu: float = 0.1, rep_dim: int | None = None,
                 pretrain_epochs: int = 20, warm_up_epochs: int = 10, center_eps: float = 0.1,
                 hidden: tuple[int, ...] | None = None, kernel_size: int = 5, batch_norm: bool = False,
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-6,
                 grad_clip: float = 5.0, val_fraction: float = 0.1, patience: int = 10, min_steps: int = 1000,
                 reduce: str = "min",
                 **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.objective = objective
        self.nu = nu
        self.rep_dim = rep_dim
        self.pretrain_epochs = pretrain_epochs
        self.warm_up_epochs = warm_up_epochs
        self.center_eps = center_eps
        self.hidden = hidden
        self.kernel_size = kernel_size
        self.batch_norm = batch_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience
        self.min_steps = min_steps

    def _build(self, shape: tuple[int, ...], rep_dim: int) -> DeepSVDD:
        hidden = self._hidden_for(shape)

        def make() -> DeepSVDD:
            net = svdd_network(shape, hidden, rep_dim, kernel_size=self.kernel_size, batch_norm=self.batch_norm)
            return DeepSVDD(net, rep_dim, objective=self.objective, nu=float(self.nu))
        return build_network(self, make, "svdd")

    def _pretrain_autoencoder(self, shape: tuple[int, ...], rep_dim: int) -> AutoEncoder:
        """The bias-free autoencoder of the pre-training, its encoder of φ's architecture."""
        hidden = self._hidden_for(shape)
        return build_network(self, lambda: AutoEncoder(shape, rep_dim, hidden, kernel_size=self.kernel_size,
                                                       bias=False, batch_norm=self.batch_norm), "pretrain-autoencoder")

    def _pretrain(self, shape: tuple[int, ...], rep_dim: int, data: torch.Tensor) -> torch.nn.Module:
        """Train a bias-free autoencoder with φ's architecture as its encoder; return that encoder."""
        ae = self._pretrain_autoencoder(shape, rep_dim)
        config = self._fit_config(data.shape[0], self.pretrain_epochs)
        self.pretrain_history_ = training.fit(ae, reconstruction_loss, data, config,
                                              self._torch_generator("pretrain"), verbose=self.verbose,
                                              desc="DeepSVDDDetector pre-training")
        return ae.encoder

    def _fit_model(self, data: torch.Tensor) -> None:
        shape = self.sample_shape_ = sample_shape(data)
        rep_dim = self.rep_dim if self.rep_dim is not None else default_code_size(data[0].numel())
        model = self._build(shape, rep_dim)
        self.pretrain_history_ = None
        if self.pretrain_epochs > 0:
            model.net.load_state_dict(self._pretrain(shape, rep_dim, data).state_dict())
        bs = int(self.score_batch_size)
        model.init_center(data, bs, float(self.center_eps))

        epoch_end = None
        if self.objective == "soft-boundary":
            warm_up = int(self.warm_up_epochs)
            if warm_up == 0:
                model.solve_radius(data, bs)

            def epoch_end(epoch: int) -> None:
                if epoch + 1 >= warm_up:  # epoch is 0-based: the first warm_up epochs train with R = 0
                    model.solve_radius(data, bs)

        self.model_ = model
        self.history_ = training.fit(model, svdd_loss, data, self._fit_config(data.shape[0]),
                                     self._torch_generator("fit"),
                                     verbose=self.verbose, desc="DeepSVDDDetector", epoch_end=epoch_end)
        if self.objective == "soft-boundary":
            model.solve_radius(data, bs)  # the exact R for the weights fit() kept (best epoch)

    @property
    def center_(self) -> torch.Tensor:
        """The hypersphere centre c (``[rep_dim]``)."""
        return self.model_.center

    @property
    def radius_(self) -> float:
        """The soft-boundary radius R (0 for the one-class objective)."""
        return float(self.model_.radius)

    def _fused_score(self, dispatch: Dispatch, dtype: torch.dtype) -> FusedSVDDScore | None:
        """The fused score of windows (:class:`FusedSVDDScore`), or None where the modules score: rows (an MLP), or
        a dispatch without a compiled ``conv1d_act`` (the eager backend runs the modules, its reference)."""
        if not self._fuses(self.model_.net, dispatch, dtype):
            return None
        return FusedSVDDScore(self.model_, dispatch, dtype)

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        fused = self._held_fused_score()  # the call's FusedSVDDScore, where it runs
        return fused.score(batch) if fused is not None else self.model_.scores(batch)

    def _get_state(self) -> dict:
        return {"model": self.model_.state_dict(), "sample_shape": list(self.sample_shape_),
                "rep_dim": int(self.model_.center.numel())}

    def _set_state(self, state: dict) -> None:
        self.sample_shape_ = tuple(int(s) for s in state["sample_shape"])
        self.model_ = self._build(self.sample_shape_, int(state["rep_dim"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
