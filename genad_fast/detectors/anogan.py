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

import numbers
from typing import ClassVar

import numpy as np
import torch

from genad_fast.detectors._call import build_network, current_call, get_thread_value, thread_value
from genad_fast.detectors._network import sample_shape
from genad_fast.detectors.base import BaseDetector, _stream_seed
from genad_fast.nn import training
from genad_fast.nn.gan.encoder import izif_score, train_izif_encoder
from genad_fast.nn.gan.networks import (default_hidden, default_latent_dim, freeze, make_critic, make_generator,
                                        make_izif_encoder, resolve_architecture)
from genad_fast.nn.gan.search import latent_search
from genad_fast.nn.gan.training import GANConfig, train_wgan_gp
from genad_fast.series import windows_to_timestamps

__all__ = ["AnoGANDetector", "FAnoGANDetector"]

MATMUL_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _number(name: str, value, low: float, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (high is None or (v < high if high_open else v <= high))
    if not ok:
        lo, hi = "(" if low_open else "[", "inf)" if high is None else (f"{high:g})" if high_open else f"{high:g}]")
        raise ValueError(f"{name} must be a number in {lo}{low:g}, {hi}, got {value!r}")


def _widths(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or len(tuple(value)) == 0 or any(
            isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1 for w in value):
        raise ValueError(f"{name} must be None or a non-empty sequence of positive ints, got {value!r}")


class _GANDetector(BaseDetector):
    """What AnoGAN and f-AnoGAN share: the GAN (and encoder), their parameters, training and model files."""

    min_fit_samples = 8
    #: Whether fit also trains the izi_f encoder.
    _needs_encoder: ClassVar[bool] = True

    def _gan_init(self, latent_dim, hidden, critic_hidden, architecture, kernel_size, epochs, batch_size, lr,
                  n_critic, gp_weight, encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience,
                  matmul_dtype) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.critic_hidden = critic_hidden
        self.architecture = architecture
        self.kernel_size = kernel_size
        self.epochs = epochs
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

    # ---- parameters ----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.latent_dim is not None:
            _positive_int("latent_dim", self.latent_dim)
        _widths("hidden", self.hidden)
        _widths("critic_hidden", self.critic_hidden)
        _widths("encoder_hidden", self.encoder_hidden)
        if self.architecture not in ("mlp", "conv"):
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {self.architecture!r}")
        _positive_int("kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a 'same' convolution keeps the length), got {self.kernel_size}")
        for name in ("epochs", "batch_size", "n_critic", "encoder_epochs", "patience"):
            _positive_int(name, getattr(self, name))
        _number("lr", self.lr, 0.0, low_open=True)
        _number("encoder_lr", self.encoder_lr, 0.0, low_open=True)
        _number("gp_weight", self.gp_weight, 0.0)
        _number("kappa", self.kappa, 0.0)
        _number("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {tuple(MATMUL_DTYPES)}, got {self.matmul_dtype!r}")

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
        self._check_params()
        self._check_search_params()
        shape = sample_shape(data)
        latent = int(self.latent_dim) if self.latent_dim is not None else default_latent_dim(data[0].numel())
        self._build(shape, latent, with_encoder=self._needs_encoder)
        name = type(self).__name__
        config = GANConfig(epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr),
                           n_critic=int(self.n_critic), gp_weight=float(self.gp_weight))
        self.gan_history_ = train_wgan_gp(self.generator_, self.critic_, data, config, self._torch_generator("gan"),
                                          verbose=self.verbose, desc=f"{name} GAN")
        self.encoder_history_ = None
        if self.encoder_ is not None:
            enc_config = training.TrainConfig(epochs=int(self.encoder_epochs), batch_size=int(self.batch_size),
                                              lr=float(self.encoder_lr), val_fraction=float(self.val_fraction),
                                              patience=int(self.patience))
            self.encoder_history_ = train_izif_encoder(
                self.encoder_, self.generator_, self.critic_, data, float(self.kappa), enc_config,
                self._torch_generator("encoder"), verbose=self.verbose, desc=f"{name} encoder")

    def _check_search_params(self) -> None:
        pass

    # decision_components collects the two parts of every batch's score on its own thread (several threads
    # may score one detector at once): a list kept for this detector and thread while it runs.
    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        score, residual, feature = self._components(batch)
        collect = get_thread_value(self, "components")
        if collect is not None:
            collect.append((residual.detach(), feature.detach()))
        return score

    def decision_components(self, X) -> dict[str, np.ndarray]:
        """``{"score", "residual", "feature"}``: ``decision_function(X)`` with its two parts.

        Per row, or per timestamp for series (each part combined over the windows covering a
        timestamp with ``reduce``, on its own). AnoGAN: residual = sum |x - G(z)|, feature =
        sum |f(x) - f(G(z))|, score = (1 - lam) * residual + lam * feature. f-AnoGAN: residual =
        mean squared error of x, feature = mean squared error of f(x), score = residual + kappa * feature.
        """
        with thread_value(self, "components", []) as parts:
            score = self.decision_function(X)
        residual = torch.cat([p[0] for p in parts])
        feature = torch.cat([p[1] for p in parts])
        if self.is_series:
            T, W, S = score.shape[0], int(self.window), int(self.stride)
            residual = windows_to_timestamps(residual, T, W, S, reduce=self.reduce)
            feature = windows_to_timestamps(feature, T, W, S, reduce=self.reduce)
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


_GAN_DOC = """
    latent_dim : int or None, default None
        Size of z; None: half the sample size (features, or W·C), at least 2, at most 32.
    hidden, critic_hidden : tuple of int or None, default None
        Widths of the generator's and the critic's hidden layers (MLP), or channels of their
        convolution stages (windows, each stage halves the length); None: (128, 128) for MLPs,
        (32, 64) for convolutions. f(x) is the critic's last hidden layer.
    architecture : "mlp" or "conv", default "mlp"
        "mlp": multilayer perceptrons (windows are flattened), which also get AnoGAN's fastest
        search (the hand-written backward pass). "conv": 1-D convolutions over the time axis of
        windows. Why "mlp" is the default for windows too: a convolutional generator easily makes
        smooth and flat windows that normal data never show, so a frozen (stuck) segment is
        reproduced well and scored as normal; on :func:`genad_fast.datasets.make_series`
        (T=4000, C=4, W=16) AnoGAN reaches AUROC 0.98 with MLPs against 0.64 with convolutions,
        whose AUROC on the frozen/noise-burst ("collective") events alone is 0.001.
    kernel_size : int, default 5
        Odd convolution length (windows).
    epochs, batch_size, lr, n_critic, gp_weight
        WGAN-GP training (Gulrajani et al. 2017): critic passes over the data, batch size, Adam
        learning rate (betas 0.5, 0.9), critic steps per generator step (paper: 5),
        gradient-penalty weight (paper: 10). The paper's lr of 1e-4 is for image networks trained
        for 10^5 generator steps; these small networks on standardised rows or windows converge in
        tens of epochs at 1e-3 (make_series above: f-AnoGAN AUROC 0.70 after 30 epochs at 1e-4,
        0.99 at 1e-3); see :mod:`genad_fast.nn.gan_training`.
    encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience
        The izi_f encoder (f-AnoGAN): widths (None: as ``hidden``), training epochs, Adam learning
        rate, feature weight kappa of its loss, held-out fraction and patience of its early stopping.
    matmul_dtype : "float32" or "bfloat16", default "float32"
        Dtype of the networks' matrix products at scoring (bfloat16 is faster on CPUs with bf16
        instructions; the score and the latent codes stay float32)."""


class AnoGANDetector(_GANDetector):
    __doc__ = """AnoGAN (Schlegl et al., IPMI 2017): the anomaly score is the loss of a latent search.

    Parameters
    ----------
    iterations : int, default 500
        Adam steps of the latent search per sample (the paper: 500).
    lam : float in [0, 1], default 0.1
        Weight of the feature term (the paper: 0.1).
    search_lr : float, default 0.05
        Adam learning rate on z.
    restarts : int, default 1
        Random starts per sample; the lowest loss wins.
    tol : float, default 1e-3
        Early stopping of the search: a sample stops once its best loss improved by less than
        ``tol`` (relative) over each of two consecutive windows of ``check_every`` iterations; 0 runs
        every iteration. Stopped samples leave the matrix products
        (:func:`genad_fast.nn.latent_search.latent_search`).
    check_every : int, default 10
    init : "random" or "encoder", default "random"
        Start of the search: z ~ N(0, I), or the izi_f encoder's E(x) for the first restart (fit
        then also trains the encoder; use far fewer ``iterations``, e.g. 20-50).
    score_batch_size : int, default 1024
        Samples searched together.""" + _GAN_DOC + """
    reduce : "min", "mean" or "max", default "min"
        Series: how the scores of the windows covering a timestamp combine.
    **kwargs
        The shared detector parameters (window, stride, contamination, device, backend, seed, ...).
    """

    score_needs_grad: ClassVar[bool] = True

    def __init__(self, iterations: int = 500, lam: float = 0.1, search_lr: float = 0.05, restarts: int = 1,
                 tol: float = 1e-3, check_every: int = 10, init: str = "random", score_batch_size: int = 1024,
                 latent_dim: int | None = None, hidden: tuple[int, ...] | None = None,
                 critic_hidden: tuple[int, ...] | None = None, architecture: str = "mlp", kernel_size: int = 5,
                 epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, n_critic: int = 5,
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
        self._gan_init(latent_dim, hidden, critic_hidden, architecture, kernel_size, epochs, batch_size, lr, n_critic,
                       gp_weight, encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience,
                       matmul_dtype)

    @property
    def _needs_encoder(self) -> bool:  # type: ignore[override]
        return self.init == "encoder"

    def _check_search_params(self) -> None:
        _positive_int("iterations", self.iterations)
        _number("lam", self.lam, 0.0, 1.0)
        _number("search_lr", self.search_lr, 0.0, low_open=True)
        _positive_int("restarts", self.restarts)
        _number("tol", self.tol, 0.0)
        _positive_int("check_every", self.check_every)
        _positive_int("score_batch_size", self.score_batch_size)
        if self.init not in ("random", "encoder"):
            raise ValueError(f"init must be 'random' or 'encoder', got {self.init!r}")

    def _components(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check_search_params()
        self._check_params()
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
                               matmul_dtype=MATMUL_DTYPES[self.matmul_dtype], backend=call.backend)
        return result.loss, result.residual, result.feature


class FAnoGANDetector(_GANDetector):
    __doc__ = """f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): one-pass scores through the izi_f encoder.

    score(x) = 1/n ||x - G(E(x))||^2 + kappa / n_f ||f(x) - f(G(E(x)))||^2

    Parameters
    ----------""" + _GAN_DOC + """
    reduce : "min", "mean" or "max", default "min"
        Series: how the scores of the windows covering a timestamp combine.
    **kwargs
        The shared detector parameters (window, stride, contamination, device, backend, seed, ...).
    """

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None,
                 critic_hidden: tuple[int, ...] | None = None, architecture: str = "mlp", kernel_size: int = 5,
                 epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, n_critic: int = 5,
                 gp_weight: float = 10.0, encoder_hidden: tuple[int, ...] | None = None, encoder_epochs: int = 50,
                 encoder_lr: float = 1e-3, kappa: float = 1.0, val_fraction: float = 0.1, patience: int = 10,
                 matmul_dtype: str = "float32", reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self._gan_init(latent_dim, hidden, critic_hidden, architecture, kernel_size, epochs, batch_size, lr, n_critic,
                       gp_weight, encoder_hidden, encoder_epochs, encoder_lr, kappa, val_fraction, patience,
                       matmul_dtype)

    def _components(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check_params()
        return izif_score(self.encoder_, self.generator_, self.critic_, batch, float(self.kappa),
                          MATMUL_DTYPES[self.matmul_dtype])
