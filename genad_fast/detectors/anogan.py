"""AnoGANDetector and FAnoGANDetector: GAN-based anomaly scores, by latent search or by an encoder.

Both train a GAN on normal data only (WGAN-GP, :mod:`genad_fast.nn.gan.training`): a generator
G: z -> x and a critic whose intermediate features f(x) describe what "looks normal"
(:mod:`genad_fast.nn.gan.networks`). This module is the estimator glue; the models live in
:mod:`genad_fast.nn.gan`.

AnoGAN (Schlegl et al., IPMI 2017): score(x) = min_z (1 - lam) * sum |x - G(z)| + lam * sum |f(x) - f(G(z))|,
the loss reached by the batched latent search (:func:`genad_fast.nn.gan.search.latent_search`);
``init="encoder"`` starts it from f-AnoGAN's encoder, which needs far fewer iterations.

f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): score(x) = 1/n ||x - G(E(x))||^2 +
kappa / n_f ||f(x) - f(G(E(x)))||^2, one pass through the izi_f encoder E (:mod:`genad_fast.nn.gan.encoder`).

For series every window of W timestamps is one sample; the base class combines the windows covering a
timestamp (``reduce``, "min" by default: a timestamp scores high only where every window over it is
anomalous, so a window's score stays on the anomaly instead of smearing over W - 1 normal neighbours).
``decision_components(X)`` returns the score together with its two parts.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network, current_call, get_thread_value, thread_value
from genad_fast.detectors._collection import as_collection
from genad_fast.detectors._network import HIDDEN, KERNEL_SIZE, MATMUL_DTYPE, MATMUL_DTYPES, sample_shape
from genad_fast.detectors._training_params import MIN_STEPS, TRAINING_SPECS, epochs_for_steps
from genad_fast.detectors.base import REDUCE, BaseDetector, _stream_seed
from genad_fast.nn import training
from genad_fast.nn.gan.encoder import izif_score, train_izif_encoder
from genad_fast.nn.gan.networks import (default_hidden, default_latent_dim, freeze, make_critic, make_generator,
                                        make_izif_encoder, resolve_architecture)
from genad_fast.nn.gan.search import latent_search
from genad_fast.nn.gan.training import GANConfig, train_wgan_gp

__all__ = ["AnoGANDetector", "FAnoGANDetector"]

_WIDTHS = ("Widths of the {net}'s hidden layers (MLP), or channels of its convolution stages (windows, each stage "
           "halves the length); None: (128, 128) for MLPs, (32, 64) for convolutions.")
_WGAN = (" of the WGAN-GP training (Gulrajani et al. 2017). The paper's lr of 1e-4 is for image networks trained for "
         "10^5 generator steps; these small networks on standardised rows or windows converge in tens of epochs at "
         "1e-3 (make_series: f-AnoGAN AUROC 0.70 after 30 epochs at 1e-4, 0.99 at 1e-3); see "
         ":mod:`genad_fast.nn.gan.training`.")
#: The parameters of the GAN and of the izi_f encoder, shared by AnoGAN and f-AnoGAN.
_GAN_SPECS = (
    Param("latent_dim", "int", "Size of z; None: half the sample size (features, or W·C), at least 2, at most 32.",
          low=1, allow_none=True),
    HIDDEN.but(doc=_WIDTHS.format(net="generator")),
    HIDDEN.but(name="critic_hidden", doc=_WIDTHS.format(net="critic") + " f(x) is the critic's last hidden layer."),
    Param("architecture", "choice", "\"mlp\": multilayer perceptrons (windows are flattened), which also get "
          "AnoGAN's fastest search (the hand-written backward pass). \"conv\": 1-D convolutions over the time axis "
          "of windows. Why \"mlp\" is the default for windows too: a convolutional generator easily makes smooth "
          "and flat windows that normal data never show, so a frozen (stuck) segment is reproduced well and scored "
          "as normal; on :func:`genad_fast.datasets.make_series` (T=4000, C=4, W=16) AnoGAN reaches AUROC 0.98 with "
          "MLPs against 0.64 with convolutions, whose AUROC on the frozen/noise-burst (\"collective\") events "
          "alone is 0.001.", choices=("mlp", "conv")),
    KERNEL_SIZE,
    TRAINING_SPECS["epochs"].but(doc="Critic passes over the data" + _WGAN),
    MIN_STEPS.but(doc="Fewest generator steps of the GAN (one follows every ``n_critic`` critic steps): where "
                  "``epochs`` make fewer (small data: 100 epochs of a 115-row table at batch 64 are 40), the GAN "
                  "trains ceil(min_steps·n_critic / batches per epoch) epochs instead. 1,000: these networks at "
                  "lr 1e-3 settle in a few thousand generator steps (:mod:`genad_fast.nn.gan.training`); on a digits "
                  "class (115 rows) AnoGAN's AUROC was 0.94 after 40 steps, 0.97 after 200, 0.99 after 1,000. "
                  "0: exactly ``epochs``."),
    TRAINING_SPECS["batch_size"].but(doc="Batch size of the GAN and of the encoder's training."),
    TRAINING_SPECS["lr"].but(doc="Adam learning rate (betas 0.5, 0.9)" + _WGAN),
    Param("n_critic", "int", "Critic steps per generator step (paper: 5).", low=1),
    Param("gp_weight", "number", "Gradient-penalty weight (paper: 10).", low=0.0),
    HIDDEN.but(name="encoder_hidden", doc="Widths of the izi_f encoder (f-AnoGAN); None: as ``hidden``'s default."),
    Param("encoder_epochs", "int", "Training epochs of the izi_f encoder.", low=1),
    Param("encoder_lr", "number", "Adam learning rate of the izi_f encoder.", low=0.0, low_open=True),
    Param("kappa", "number", "Feature weight kappa of the izi_f loss and of f-AnoGAN's score.", low=0.0, scoring=True),
    TRAINING_SPECS["val_fraction"].but(doc="Held-out fraction of the encoder's early stopping."),
    TRAINING_SPECS["patience"].but(doc="Patience of the encoder's early stopping."),
    MATMUL_DTYPE.but(doc="Dtype of the networks' matrix products at scoring (bfloat16 is faster on CPUs with bf16 "
                     "instructions; the score and the latent codes stay float32)."),
    REDUCE,
)


class _GANDetector(BaseDetector):
    """What AnoGAN and f-AnoGAN share: the GAN (and encoder), their parameters, training and model files."""

    min_fit_samples = 8
    #: Whether fit also trains the izi_f encoder.
    _needs_encoder: ClassVar[bool] = True

    def _gan_init(self, latent_dim, hidden, critic_hidden, architecture, kernel_size, epochs, min_steps, batch_size,
                  lr, n_critic, gp_weight, encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience,
                  matmul_dtype) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.critic_hidden = critic_hidden
        self.architecture = architecture
        self.kernel_size = kernel_size
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.encoder_hidden = encoder_hidden
        self.encoder_epochs = encoder_epochs
        self.encoder_lr = encoder_lr
        self.kappa = kappa
        self.val_fraction = val_fraction
        self.patience = patience
        self.matmul_dtype = matmul_dtype

    def _build(self, shape: tuple[int, ...], latent: int, with_encoder: bool) -> None:
        arch, k = resolve_architecture(shape, self.architecture), self.kernel_size  # "conv" on rows: an error
        hidden, critic_hidden, encoder_hidden = (default_hidden(arch) if v is None else tuple(int(w) for w in v)
                                                 for v in (self.hidden, self.critic_hidden, self.encoder_hidden))
        self.generator_ = build_network(
            self, lambda: make_generator(shape, latent, hidden, architecture=arch, kernel_size=k), "generator")
        self.critic_ = build_network(
            self, lambda: make_critic(shape, critic_hidden, architecture=arch, kernel_size=k), "critic")
        self.encoder_ = None if not with_encoder else build_network(
            self, lambda: make_izif_encoder(shape, encoder_hidden, latent, architecture=arch, kernel_size=k),
            "encoder")
        self.sample_shape_ = shape
        self.latent_dim_ = latent

    # ---- hooks ---------------------------------------------------------------------------------
    def _fit_model(self, data: torch.Tensor) -> None:
        shape = sample_shape(data)
        latent = int(self.latent_dim) if self.latent_dim is not None else default_latent_dim(data[0].numel())
        self._build(shape, latent, with_encoder=self._needs_encoder)
        name = type(self).__name__
        self.gan_history_ = train_wgan_gp(self.generator_, self.critic_, data, self._gan_config(data.shape[0]),
                                          self._torch_generator("gan"), verbose=self.verbose, desc=f"{name} GAN")
        self.encoder_history_ = None
        if self.encoder_ is not None:
            self.encoder_history_ = train_izif_encoder(
                self.encoder_, self.generator_, self.critic_, data, float(self.kappa), self._encoder_config(),
                self._torch_generator("encoder"), verbose=self.verbose, desc=f"{name} encoder")

    def _gan_config(self, n_samples: int) -> GANConfig:
        """The GAN's training configuration for ``n_samples`` training samples (``min_steps`` raises the epochs)."""
        batch_size = int(self.batch_size)
        critic_steps = max(1, math.ceil(n_samples / max(1, min(batch_size, n_samples))))  # a critic step per batch
        epochs = epochs_for_steps(int(self.epochs), int(self.min_steps) * int(self.n_critic), critic_steps)
        return GANConfig(epochs=epochs, batch_size=batch_size, lr=float(self.lr), n_critic=int(self.n_critic),
                         gp_weight=float(self.gp_weight))

    def _encoder_config(self) -> training.TrainConfig:
        return training.TrainConfig(epochs=int(self.encoder_epochs), batch_size=int(self.batch_size),
                                    lr=float(self.encoder_lr), val_fraction=float(self.val_fraction),
                                    patience=int(self.patience))

    # decision_components collects the two parts of every batch's score on its own thread (several threads
    # may score one detector at once): a list kept for this detector and thread while it runs.
    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        score, residual, feature = self._components(batch)
        collect = get_thread_value(self, "components")
        if collect is not None:
            collect.append((residual.detach(), feature.detach()))
        return score

    def _score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        score = super()._score_batch(batch)
        collect = get_thread_value(self, "components")
        if collect and collect[-1][0].shape[0] != batch.shape[0]:  # a padded batch: drop the copies' parts
            collect[-1] = tuple(part[:batch.shape[0]] for part in collect[-1])
        return score

    def decision_components(self, X, *, by=None) -> dict[str, np.ndarray] | list | dict:
        """``{"score", "residual", "feature"}``: ``decision_function(X)`` with its two parts.

        Per row, or per timestamp for series (each part combined over the windows covering a
        timestamp with ``reduce``, on its own). AnoGAN: residual = sum |x - G(z)|, feature =
        sum |f(x) - f(G(z))|, score = (1 - lam) * residual + lam * feature. f-AnoGAN: residual =
        mean squared error of x, feature = mean squared error of f(x), score = residual + kappa * feature.
        A collection ``X`` (:mod:`genad_fast.detectors._collection`) gives one such dict per part, scored part by
        part (a loop: this is an inspection tool, not the fast path).
        """
        source = as_collection(X, by)
        if source is not None:
            return source.wrap([self.decision_components(part) for part in source.parts])
        with thread_value(self, "components", []) as parts:
            score = self.decision_function(X)
        residual = torch.cat([p[0] for p in parts])
        feature = torch.cat([p[1] for p in parts])
        if self.is_series:
            grid = self._grid(score.shape[0])
            residual, feature = grid.to_timestamps(residual, self.reduce), grid.to_timestamps(feature, self.reduce)
        as_np = (lambda t: t.detach().to(device="cpu", dtype=torch.float64).numpy())
        return {"score": score, "residual": as_np(residual), "feature": as_np(feature)}

    def _get_state(self) -> dict:
        return {"generator": self.generator_.state_dict(), "critic": self.critic_.state_dict(),
                "encoder": None if self.encoder_ is None else self.encoder_.state_dict(),
                "sample_shape": list(self.sample_shape_), "latent_dim": int(self.latent_dim_)}

    def _set_state(self, state: dict) -> None:
        shape = tuple(int(s) for s in state["sample_shape"])
        self._build(shape, int(state["latent_dim"]), with_encoder=state["encoder"] is not None)
        for net, key in ((self.generator_, "generator"), (self.critic_, "critic"), (self.encoder_, "encoder")):
            if net is not None:
                freeze(net).load_state_dict(state[key])


class AnoGANDetector(_GANDetector):
    """AnoGAN (Schlegl et al., IPMI 2017): the anomaly score is the loss of a latent search.

    Parameters
    ----------
    """

    _param_specs = (
        Param("iterations", "int", "Adam steps of the latent search per sample (the paper: 500).", low=1,
              scoring=True),
        Param("lam", "number", "Weight of the feature term (the paper: 0.1).", low=0.0, high=1.0, scoring=True),
        Param("search_lr", "number", "Adam learning rate on z.", low=0.0, low_open=True, scoring=True),
        Param("restarts", "int", "Random starts per sample; the lowest loss wins.", low=1, scoring=True),
        Param("tol", "number", "Early stopping of the search: a sample stops once its best loss improved by less "
              "than ``tol`` (relative) over each of two consecutive windows of ``check_every`` iterations; 0 runs "
              "every iteration. Stopped samples leave the matrix products (:func:`genad_fast.nn.gan.search."
              "latent_search`).", low=0.0, scoring=True),
        Param("check_every", "int", "Iterations per window of the early-stopping test.", low=1, scoring=True),
        Param("init", "choice", "Start of the search: z ~ N(0, I), or the izi_f encoder's E(x) for the first "
              "restart (fit then also trains the encoder; use far fewer ``iterations``, e.g. 20-50).",
              choices=("random", "encoder"), scoring=True),
        Param("score_batch_size", "int", "Samples searched together.", low=1, scoring=True),
        *_GAN_SPECS,
    )
    score_needs_grad: ClassVar[bool] = True

    def __init__(self, iterations: int = 500, lam: float = 0.1, search_lr: float = 0.05, restarts: int = 1,
                 tol: float = 1e-3, check_every: int = 10, init: str = "random", score_batch_size: int = 1024,
                 latent_dim: int | None = None, hidden: tuple[int, ...] | None = None,
                 critic_hidden: tuple[int, ...] | None = None, architecture: str = "mlp", kernel_size: int = 5,
                 epochs: int = 100, min_steps: int = 1000, batch_size: int = 64, lr: float = 1e-3, n_critic: int = 5,
                 gp_weight: float = 10.0, encoder_hidden: tuple[int, ...] | None = None, encoder_epochs: int = 50,
                 encoder_lr: float = 1e-3, kappa: float = 1.0, val_fraction: float = 0.1, patience: int = 10,
                 matmul_dtype: str = "float32", reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.iterations = iterations
        self.lam = lam
        self.search_lr = search_lr
        self.restarts = restarts
        self.tol = tol
        self.check_every = check_every
        self.init = init
        self.score_batch_size = score_batch_size
        self._gan_init(latent_dim, hidden, critic_hidden, architecture, kernel_size, epochs, min_steps, batch_size, lr,
                       n_critic, gp_weight, encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience,
                       matmul_dtype)

    @property
    def _needs_encoder(self) -> bool:  # type: ignore[override]
        return self.init == "encoder"

    def _components(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z0 = None
        if self.init == "encoder":
            if self.encoder_ is None:
                raise ValueError("init='encoder' needs the izi_f encoder, which this model was fitted without; "
                                 "refit with init='encoder'")
            with torch.no_grad():
                z0 = self.encoder_(batch)
        # z ~ N(0, I) keyed on each row's content: a row scores the same alone, in any batch or stream
        call = current_call(self)
        result = latent_search(self.generator_, self.critic_, batch, iterations=int(self.iterations),
                               lam=float(self.lam), lr=float(self.search_lr), restarts=int(self.restarts),
                               tol=float(self.tol), check_every=int(self.check_every), z0=z0,
                               start_seed=_stream_seed(self.seed_, "latent-start"),
                               matmul_dtype=MATMUL_DTYPES[self.matmul_dtype], backend=call.dispatch)
        return result.loss, result.residual, result.feature


class FAnoGANDetector(_GANDetector):
    """f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): one-pass scores through the izi_f encoder.

    score(x) = 1/n ||x - G(E(x))||^2 + kappa / n_f ||f(x) - f(G(E(x)))||^2

    Parameters
    ----------
    """

    _param_specs = _GAN_SPECS

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None,
                 critic_hidden: tuple[int, ...] | None = None, architecture: str = "mlp", kernel_size: int = 5,
                 epochs: int = 100, min_steps: int = 1000, batch_size: int = 64, lr: float = 1e-3, n_critic: int = 5,
                 gp_weight: float = 10.0, encoder_hidden: tuple[int, ...] | None = None, encoder_epochs: int = 50,
                 encoder_lr: float = 1e-3, kappa: float = 1.0, val_fraction: float = 0.1, patience: int = 10,
                 matmul_dtype: str = "float32", reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self._gan_init(latent_dim, hidden, critic_hidden, architecture, kernel_size, epochs, min_steps, batch_size, lr,
                       n_critic, gp_weight, encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience,
                       matmul_dtype)

    def _components(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return izif_score(self.encoder_, self.generator_, self.critic_, batch, float(self.kappa),
                          MATMUL_DTYPES[self.matmul_dtype])
