"""DiffusionDetector: denoising diffusion over long multivariate series, scored in tiles.

A denoising diffusion model (DDPM, Ho et al., NeurIPS 2020) learns the normal behaviour of a series: a
convolutional denoiser ε_θ (:mod:`genad_fast.nn.diffusion.denoiser`) is trained to predict the noise z in
x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 - ᾱ_t)·z on windows of the normalised training series (ε-prediction MSE,
t uniform over the N steps). Points the model cannot restore are anomalous. Two scores:

``mode="reconstruct"`` (default; reconstruction-based, as DiffusionAE, Pintilie et al., ICDM-W 2023)
    Noise the series to level t0 (``noise_level``), denoise back to x̂_0 in k <= t0 steps with DDPM
    (ancestral, the posterior variance) or DDIM (η configurable), and score each timestamp by

        score[t] = 1/K Σ_draws mean_c (x[t, c] - x̂_0[t, c])²

``mode="impute"`` (imputation-based, ImDiffusion, Chen et al., VLDB 2023)
    Complementary masks: a grid mask (alternating blocks of window/``mask_split`` timestamps, all channels,
    as ImDiffusion) and a random one (each point with probability 1/2), each with its complement. The
    conditional denoiser imputes the masked points from pure noise, conditioned on the observed ones, in k
    steps. Every point is masked exactly once per complementary pair, so

        score[t] = 1/(K·P) Σ_draws Σ_masks mean_c (mask·(x - x̂_mask)²)[t, c]      (P pairs of masks)

Scoring
    The detector keeps only the fit/score glue. Training is :mod:`genad_fast.nn.diffusion.losses` on windows;
    scoring runs the reverse process over the whole series in tiles, with no host-device synchronisation in
    the loop (:class:`genad_fast.nn.diffusion.sampler.SeriesSampler`, which says how), with the call's backend
    choice (:class:`genad_fast.ops.Dispatch`) handed to every op and plan.

Training windows use ``window`` and ``stride``; ``reduce`` does not apply (scores are per timestamp).
"""
from __future__ import annotations

import torch

from genad_fast.detectors._call import build_network, current_call
from genad_fast.detectors.base import BaseDetector
from genad_fast.nn import training
from genad_fast.nn.diffusion import SAMPLERS, SCHEDULES, ConditionalDenoiser, Denoiser, NoiseSchedule
from genad_fast.nn.diffusion.losses import ImputeLoss, ReconstructLoss
from genad_fast.nn.diffusion.sampler import SeriesSampler

MODES = ("reconstruct", "impute")
MASKS = ("grid", "random")
MATMUL_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}
_U63 = 1 << 63


class DiffusionDetector(BaseDetector):
    """Denoising-diffusion detector for multivariate series (see the module docstring).

    Parameters
    ----------
    window : int, default 100
        Training window length (ImDiffusion: 100); must cover the denoiser's receptive field. Scoring is tiled
        and does not use windows.
    mode : "reconstruct" or "impute", default "reconstruct"
    n_steps : int, default 50
        Diffusion steps N (CSDI, ImDiffusion: 50).
    schedule : "quadratic", "linear" or "cosine", default "quadratic" (CSDI, ImDiffusion)
    beta_start, beta_end : float or None
        Override the schedule's end points (quadratic: 1e-4, 0.5; linear: 1e-4, 0.02 scaled by 1000/N).
    noise_level : int or None, default None
        Reconstruct: the level t0 in [1, n_steps] the series is noised to. None: n_steps // 5 (with the
        quadratic schedule ᾱ ≈ 0.93, a noise std of about 0.27 of a normalised channel: enough to wash out an
        anomaly's detail, little enough to keep the normal pattern recoverable).
    denoise_steps : int or None, default None
        Reverse steps k: <= noise_level (reconstruct) or <= n_steps (impute). None: the full chain.
    sampler : "ddpm" or "ddim", default "ddpm" (ancestral sampling, as DDPM, CSDI and ImDiffusion)
    eta : float in [0, 1], default 0.0
        DDIM's stochasticity (0: deterministic; 1: the DDPM posterior). Used by ``sampler="ddim"`` only.
    n_draws : int, default 2
        Noise draws K averaged per timestamp.
    masks : tuple of "grid" and/or "random", default both
        Impute: the mask kinds, each used with its complement.
    mask_split : int, default 4
        Impute: a window holds ``mask_split`` grid blocks (ImDiffusion's ``split``), block = window // mask_split.
    residual_channels, n_layers, dilation_cycle, kernel_size, embedding_dim
        Denoiser architecture (:class:`genad_fast.nn.denoiser.Denoiser`); defaults give a receptive field of 61.
    epochs, batch_size, lr, weight_decay, grad_clip, val_fraction, patience
        Training (:func:`genad_fast.nn.training.fit`): Adam, clipping, early stopping on a held-out split.
    tile_size : int, default 1024
        Timestamps a tile owns at scoring; it reads a halo of the receptive radius more on each side.
    tile_batch : int, default 4
        Tiles per network call (batched, since all tile reads have one length). Memory of the network at scoring
        is about tile_batch x draws (x masks) x (tile_size + 2 halo) x 2 residual_channels floats per tensor;
        the defaults keep one call's activations near a CPU core's L2 cache.
    matmul_dtype : "float32" or "bfloat16", default "float32"
        Dtype of the denoiser's products at scoring (autocast); the state, steps and scores stay float32.
    **kwargs
        The shared detector parameters (stride, contamination, device, backend, seed, verbose, ...).
    """

    min_fit_samples = 16

    def __init__(self, window: int = 100, mode: str = "reconstruct", n_steps: int = 50, schedule: str = "quadratic",
                 beta_start: float | None = None, beta_end: float | None = None, noise_level: int | None = None,
                 denoise_steps: int | None = None, sampler: str = "ddpm", eta: float = 0.0, n_draws: int = 2,
                 masks: tuple = MASKS, mask_split: int = 4, residual_channels: int = 64, n_layers: int = 8,
                 dilation_cycle: int = 4, kernel_size: int = 3, embedding_dim: int = 128, epochs: int = 100,
                 batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float = 1.0,
                 val_fraction: float = 0.1, patience: int = 10, tile_size: int = 1024, tile_batch: int = 4,
                 matmul_dtype: str = "float32",
                 **kwargs):
        super().__init__(window=window, **kwargs)
        self.mode = mode
        self.n_steps = n_steps
        self.schedule = schedule
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.noise_level = noise_level
        self.denoise_steps = denoise_steps
        self.sampler = sampler
        self.eta = eta
        self.n_draws = n_draws
        self.masks = masks
        self.mask_split = mask_split
        self.residual_channels = residual_channels
        self.n_layers = n_layers
        self.dilation_cycle = dilation_cycle
        self.kernel_size = kernel_size
        self.embedding_dim = embedding_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience
        self.tile_size = tile_size
        self.tile_batch = tile_batch
        self.matmul_dtype = matmul_dtype

    # ---- parameters ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.window is None:
            raise ValueError("DiffusionDetector models series: window must be an int (the training window), not None")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {tuple(MATMUL_DTYPES)}, got {self.matmul_dtype!r}")
        for name in ("n_steps", "n_draws", "mask_split", "residual_channels", "n_layers", "dilation_cycle",
                     "kernel_size", "embedding_dim", "epochs", "batch_size", "tile_size", "tile_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)) or not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be a number in [0, 1], got {self.eta!r}")
        masks = (self.masks,) if isinstance(self.masks, str) else tuple(self.masks)
        if not masks or any(m not in MASKS for m in masks) or len(set(masks)) != len(masks):
            raise ValueError(f"masks must be a non-empty selection of {MASKS} without repeats, got {self.masks!r}")
        if self.mode == "impute" and self.window // self.mask_split < 1:
            raise ValueError(f"mask_split={self.mask_split} leaves grid blocks of 0 timestamps in window={self.window}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        self._noise_level()
        self._chain_length()

    def _noise_level(self) -> int:
        """t0 in [1, n_steps] (reconstruct)."""
        level = max(1, self.n_steps // 5) if self.noise_level is None else self.noise_level
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= self.n_steps:
            raise ValueError(f"noise_level must be an int in [1, n_steps={self.n_steps}], got {self.noise_level!r}")
        return level

    def _chain_length(self) -> int:
        """k reverse steps, starting from t0 (reconstruct) or from pure noise at step N (impute)."""
        top = self._noise_level() if self.mode == "reconstruct" else self.n_steps
        k = top if self.denoise_steps is None else self.denoise_steps
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= top:
            what = "noise_level" if self.mode == "reconstruct" else "n_steps"
            raise ValueError(f"denoise_steps must be an int in [1, {what}={top}] (mode={self.mode!r}), "
                             f"got {self.denoise_steps!r}")
        return k

    def _mask_kinds(self) -> tuple[str, ...]:
        return (self.masks,) if isinstance(self.masks, str) else tuple(self.masks)

    def _noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_name(self.schedule, self.n_steps, self.beta_start, self.beta_end)

    def _build(self, channels: int) -> Denoiser:
        cls = ConditionalDenoiser if self.mode == "impute" else Denoiser
        return build_network(self, lambda: cls(channels, residual_channels=self.residual_channels,
                                               n_layers=self.n_layers, dilation_cycle=self.dilation_cycle,
                                               kernel_size=self.kernel_size, embedding_dim=self.embedding_dim),
                             "denoiser")

    # ---- training --------------------------------------------------------------------------------
    def _fit_model(self, data: torch.Tensor) -> None:
        self._check_params()
        model = self._build(int(data.shape[2]))
        if model.receptive_field > self.window:
            raise ValueError(f"window={self.window} is shorter than the denoiser's receptive field "
                             f"({model.receptive_field} timestamps: n_layers={self.n_layers}, "
                             f"dilation_cycle={self.dilation_cycle}, kernel_size={self.kernel_size}); use a longer "
                             f"window or a smaller network")
        self.model_ = model
        schedule = self._noise_schedule()
        alpha_bar = schedule.alpha_bars.to(device=self.device_, dtype=torch.float32)
        call = current_call(self, "fit")
        noise = call.generator("training-noise", self.device_)  # steps t, noise z and masks of the loss
        loss = ReconstructLoss(alpha_bar, call.dispatch, noise) if self.mode == "reconstruct" else \
            ImputeLoss(alpha_bar, call.dispatch, noise, self._mask_kinds(), max(1, self.window // self.mask_split))
        config = training.TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                      weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                                      val_fraction=self.val_fraction, patience=self.patience)
        self.history_ = training.fit(self.model_, loss, data, config, self._torch_generator("fit"),
                                     verbose=self.verbose, desc="DiffusionDetector")

    # ---- scoring ---------------------------------------------------------------------------------
    def _fit_series(self, series: torch.Tensor) -> None:
        self._check_params()
        # The range of normal data, per channel: reconstructions are clipped to it (SeriesSampler.reverse_chain).
        self.train_min_ = series.amin(dim=0).to(torch.float32)
        self.train_max_ = series.amax(dim=0).to(torch.float32)
        super()._fit_series(series)

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - series are scored in tiles
        raise NotImplementedError("DiffusionDetector scores whole series (_score_series)")

    def _score_series(self, series: torch.Tensor) -> torch.Tensor:
        self._check_params()
        T, C = series.shape
        rf = self.model_.receptive_field
        if T < rf:
            raise ValueError(f"the series has {T} timestamps, fewer than the denoiser's receptive field ({rf})")
        x = series.t().contiguous()  # [C, T]: the state layout, one channel's timestamps contiguous
        seeds = self._numpy_rng("score-noise").integers(0, _U63, size=2)
        noise_seed, mask_seed = int(seeds[0]), int(seeds[1])
        sampler = self._sampler()
        if self.mode == "reconstruct":
            return sampler.reconstruct(x, noise_seed, self._noise_level(), self._chain_length(), self.n_draws)
        return sampler.impute(x, noise_seed, mask_seed, self._mask_kinds(), max(1, self.window // self.mask_split),
                              self._chain_length(), self.n_draws)

    def _sampler(self) -> SeriesSampler:
        """The reverse process of this scoring call: the trained denoiser, the call's dispatch, x̂_0 clipped to
        the training range (not for model files from before the clip)."""
        lo, hi = getattr(self, "train_min_", None), getattr(self, "train_max_", None)
        return SeriesSampler(self.model_, self._noise_schedule(), sampler=self.sampler, eta=float(self.eta),
                             tile_size=int(self.tile_size), tile_batch=int(self.tile_batch),
                             matmul_dtype=MATMUL_DTYPES[self.matmul_dtype], dispatch=current_call(self).dispatch,
                             clip=None if lo is None else (lo, hi),
                             progress=lambda steps: self._progress(steps, total=len(steps), desc="denoise",
                                                                   unit="step", long_only=True))

    # ---- model files ----------------------------------------------------------------------------
    def _get_state(self) -> dict:
        return {"model": self.model_.state_dict(), "channels": self.model_.channels,
                "train_min": self.train_min_, "train_max": self.train_max_}

    def _set_state(self, state: dict) -> None:
        self.model_ = self._build(int(state["channels"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        self.train_min_ = state.get("train_min")  # absent in files from before the clip: no clip
        self.train_max_ = state.get("train_max")

