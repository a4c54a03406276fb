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

Per-timestamp errors to scores (``score_reduction``)
    A single timestamp's error e[t] carries the sampling noise of the reverse chain (each draw re-adds noise):
    a spike stands out of it, an anomaly spread over part of a period (a changed pattern or frequency) shows
    far more clearly in the mean error of a window. The window score is the rule every window detector of
    this library and TSB-AD use to turn window scores into timestamp scores:

        e_w[j] = 1/W Σ_{s=j}^{j+W-1} e[s],     ew[t] = reduce{ e_w[j] : j <= t < j + W }

    ``"multiscale"`` (default) takes the strongest of the evidences, each in units of its own 99th
    percentile over the training series (``error_scales_``, fitted by the fit's scoring pass):

        score[t] = max( e[t] / q99(e_train),  ew[t] / q99(ew_train),  l[t] / q99(l_train) )

    a scan at two scales (point and window) whose scales make them comparable. The third evidence, l, is the
    denoising loss of the windows covering t at ``elbo_levels`` noise levels: the training objective evaluated on
    the test window, a likelihood-like score of the window as a whole
    (:mod:`genad_fast.nn.diffusion.window_loss`). A reconstruction from one low noise level restores a changed
    pattern as well as a normal one; the loss at the middle levels does not. The loss term is used with
    ``mode="reconstruct"`` only, and ``elbo_levels=0`` drops it. ``"window"``: ew[t];
    ``"point"``: e[t], the DiffusionAE / ImDiffusion formula as printed (model files from before this parameter
    score this way). With ``window="auto"`` W is one period of the training series.

Training windows use ``window`` and ``stride``.
"""
from __future__ import annotations

import math

import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network, current_call, get_thread_value
from genad_fast.detectors._network import MATMUL_DTYPE, MATMUL_DTYPES
from genad_fast.detectors._training_params import TrainingParamsMixin
from genad_fast.detectors._auto_window import is_auto
from genad_fast.detectors.base import BaseDetector
from genad_fast.nn import training
from genad_fast.nn.diffusion import SAMPLERS, SCHEDULES, ConditionalDenoiser, Denoiser, NoiseSchedule
from genad_fast.nn.diffusion.denoiser import receptive_field, stack_for_window
from genad_fast.nn.diffusion.losses import ImputeLoss, ReconstructLoss
from genad_fast.nn.diffusion.sampler import SeriesSampler
from genad_fast.nn.diffusion.window_loss import WindowLoss, loss_levels
from genad_fast.series import SeriesBatch
from genad_fast.detectors._window_mean import window_mean_scores

MODES = ("reconstruct", "impute")
SCORE_REDUCTIONS = ("multiscale", "window", "point")
#: The training quantile that puts the point and window errors of ``"multiscale"`` on one scale.
SCALE_QUANTILE = 0.99
MASKS = ("grid", "random")
_U63 = 1 << 63


def _masks_rule(name: str, masks) -> None:
    kinds = (masks,) if isinstance(masks, str) else tuple(masks) if hasattr(masks, "__iter__") else ()
    if not kinds or any(m not in MASKS for m in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"{name} must be a non-empty selection of {MASKS} without repeats, got {masks!r}")


def _sampling(name: str, doc: str, **rule) -> Param:
    """A parameter of the reverse chain or the tiling: read at scoring too."""
    return Param(name, rule.pop("kind", "int"), doc, scoring=True, **rule)


def error_scales(point_quantile: float, window_quantile: float, loss_quantile: float | None = None) -> torch.Tensor:
    """``error_scales_``: float32 ``[2]``, the training quantiles of the point and window errors, or ``[3]`` with
    the window denoising loss's. An exactly reconstructed training set (a quantile of 0) gets the smallest normal
    float: any error at all is then out of the ordinary, which is what a zero error on normal data says."""
    found = [point_quantile, window_quantile] + ([] if loss_quantile is None else [loss_quantile])
    return torch.tensor(found, dtype=torch.float64).clamp_min(torch.finfo(torch.float32).tiny).float()


def _upper_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The empirical q-quantile of a 1-D tensor, the ceil(q·n)-th smallest value (torch.quantile refuses more than
    2^24 values; a long training collection has more)."""
    k = max(1, min(values.numel(), math.ceil(q * values.numel())))
    return values.double().kthvalue(k).values


class DiffusionDetector(TrainingParamsMixin, BaseDetector):
    """Denoising-diffusion detector for multivariate series (see the module docstring).

    Parameters
    ----------
    """

    _param_specs = (
        BaseDetector.param_spec("window").but(allow_none=False, doc="Training window length (ImDiffusion: 100), or "
                                              "``\"auto\"``: one dominant period of the training series, clipped to "
                                              "[8, min(512, T // 2)] (:mod:`genad_fast.detectors._auto_window`). The "
                                              "denoiser's receptive field is fitted into it (``n_layers``, "
                                              "``dilation_cycle``). Scoring is tiled and does not use windows."),
        Param("mode", "choice", "Reconstruction- or imputation-based scores (module docstring).", choices=MODES),
        _sampling("n_steps", "Diffusion steps N (CSDI, ImDiffusion: 50).", low=1),
        _sampling("schedule", "The noise schedule (quadratic: CSDI, ImDiffusion).", kind="choice", choices=SCHEDULES),
        *(_sampling(name, "Override the schedule's end points (quadratic: 1e-4, 0.5; linear: 1e-4, 0.02 scaled by "
                    "1000/N).", kind="number", low=0.0, high=1.0, low_open=True, high_open=True, allow_none=True)
          for name in ("beta_start", "beta_end")),
        _sampling("noise_level", "Reconstruct: the level t0 in [1, n_steps] the series is noised to. None: n_steps "
                  "// 5 (with the quadratic schedule ᾱ ≈ 0.93, a noise std of about 0.27 of a normalised channel: "
                  "enough to wash out an anomaly's detail, little enough to keep the normal pattern recoverable).",
                  low=1, allow_none=True),
        _sampling("denoise_steps", "Reverse steps k: <= noise_level (reconstruct) or <= n_steps (impute). None: the "
                  "full chain.", low=1, allow_none=True),
        _sampling("sampler", "Ancestral sampling (DDPM, as CSDI and ImDiffusion) or DDIM.", kind="choice",
                  choices=SAMPLERS),
        _sampling("eta", "DDIM's stochasticity (0: deterministic; 1: the DDPM posterior). Used by "
                  "``sampler=\"ddim\"`` only.", kind="number", low=0.0, high=1.0),
        _sampling("n_draws", "Noise draws K averaged per timestamp.", low=1),
        _sampling("score_reduction", "Per-timestamp errors to scores: ``\"multiscale\"``, the larger of the point "
                  "error and the window error, each over its training 99th percentile; ``\"window\"``, the mean "
                  "error of each window of ``window`` timestamps combined over the windows covering a timestamp "
                  "with ``reduce``; ``\"point\"``, the raw error (module docstring).", kind="choice",
                  choices=SCORE_REDUCTIONS),
        _sampling("elbo_levels", "Reconstruct, ``score_reduction=\"multiscale\"``: noise levels of the window "
                  "denoising loss, the third evidence (module docstring); 0: none. Each timestamp is in about 4 "
                  "windows, so scoring costs about 1 + 4·elbo_levels / (k·n_draws) times as much as without it, k "
                  "the reverse steps (with the defaults, k = 10 and 2 draws: 2.6 times). Eight levels: on the "
                  "benchmark suite's 31 series (3 seeds, quick training) mean VUS-PR 0.556 without, 0.595 with "
                  "(docs/quality_study.md).", low=0),
        _sampling("masks", "Impute: the mask kinds, each used with its complement.", kind="any", check=_masks_rule,
                  type_doc='tuple of "grid" and/or "random"'),
        _sampling("mask_split", "Impute: a window holds ``mask_split`` grid blocks (ImDiffusion's ``split``), block "
                  "= window // mask_split.", low=1),
        # the denoiser (:class:`genad_fast.nn.denoiser.Denoiser`); 8 layers, cycle 4 give a receptive field of 61
        Param("residual_channels", "int", "Channels of the denoiser's residual layers.", low=1),
        Param("n_layers", "int", "Residual layers of the denoiser. None: 8, fewer only when even dilation cycle 1 "
              "does not fit the window (:func:`genad_fast.nn.diffusion.denoiser.stack_for_window`; fitted value in "
              "``n_layers_``). An int that cannot fit the window is an error.", low=1, allow_none=True),
        Param("dilation_cycle", "int", "Layer l has dilation 2^(l mod dilation_cycle). None: the largest of 4, 3, 2, "
              "1 whose receptive field fits the window (4 from window 61 with kernel 3; fitted value in "
              "``dilation_cycle_``).", low=1, allow_none=True),
        Param("kernel_size", "int", "Length of the denoiser's dilated convolutions.", low=1),
        Param("embedding_dim", "int", "Size of the sinusoidal step embedding (CSDI: 128).", low=1),
        _sampling("tile_size", "Timestamps a tile owns at scoring; it reads a halo of the receptive radius more on "
                  "each side.", low=1),
        _sampling("tile_batch", "Tiles per network call (batched, since all tile reads have one length). Memory of "
                  "the network at scoring is about tile_batch x draws (x masks) x (tile_size + 2 halo) x 2 "
                  "residual_channels floats per tensor; the defaults keep one call's activations near a CPU core's "
                  "L2 cache.", low=1),
        MATMUL_DTYPE.but(doc="Dtype of the denoiser's products at scoring (autocast); the state, steps and scores "
                         "stay float32."),
    )

    min_fit_samples = 16
    #: Model files written before ``score_reduction`` existed scored raw per-timestamp errors, and those written
    #: before ``elbo_levels`` existed without the window denoising loss (genad_fast._io).
    _params_before = {"score_reduction": "point", "elbo_levels": 0}
    #: True from the fit's training of the model until its scoring pass has fitted ``error_scales_``.
    _scales_pending = False

    def __init__(self, window: int | str = "auto", mode: str = "reconstruct", n_steps: int = 50,
                 schedule: str = "quadratic", beta_start: float | None = None, beta_end: float | None = None,
                 noise_level: int | None = None, denoise_steps: int | None = None, sampler: str = "ddpm",
                 eta: float = 0.0, n_draws: int = 2, score_reduction: str = "multiscale", elbo_levels: int = 8,
                 masks: tuple = MASKS,
                 mask_split: int = 4,
                 residual_channels: int = 64, n_layers: int | None = None, dilation_cycle: int | None = None,
                 kernel_size: int = 3, embedding_dim: int = 128, epochs: int = 100, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float = 1.0, val_fraction: float = 0.1,
                 patience: int = 10, tile_size: int = 1024, tile_batch: int = 4, matmul_dtype: str = "float32",
                 train_stride: int | None = None, train_dtype: str = "auto", **kwargs):
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
        self.score_reduction = score_reduction
        self.elbo_levels = elbo_levels
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
        self.train_stride = train_stride
        self.train_dtype = train_dtype

    # ---- parameters ------------------------------------------------------------------------------
    def _check_params(self, scoring: bool = False) -> None:
        super()._check_params(scoring)
        if self.mode == "impute" and not is_auto(self.window) and self.window // self.mask_split < 1:
            raise ValueError(f"mask_split={self.mask_split} leaves grid blocks of 0 timestamps in window={self.window}")
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
        """The denoiser of the fitted stack (``n_layers_``, ``dilation_cycle_``)."""
        cls = ConditionalDenoiser if self.mode == "impute" else Denoiser
        return build_network(self, lambda: cls(channels, residual_channels=self.residual_channels,
                                               n_layers=self.n_layers_, dilation_cycle=self.dilation_cycle_,
                                               kernel_size=self.kernel_size, embedding_dim=self.embedding_dim),
                             "denoiser")

    # ---- training --------------------------------------------------------------------------------
    def _block(self) -> int:
        """Impute: the grid mask's block, window // mask_split timestamps (at least 1)."""
        return max(1, self._window // self.mask_split)

    def _build_for_training(self, channels: int) -> Denoiser:
        """A fresh denoiser whose receptive field fits in one window (else a window never shows it whole): the
        stack of :func:`~genad_fast.nn.diffusion.denoiser.stack_for_window` for the parameters left None."""
        window = self._window
        if self.mode == "impute" and window // self.mask_split < 1:
            raise ValueError(f"mask_split={self.mask_split} leaves grid blocks of 0 timestamps in window={window} "
                             f"(window={self.window!r})")
        stack = stack_for_window(window, self.kernel_size, self.n_layers, self.dilation_cycle)
        if stack is None:
            cycle = 1 if self.dilation_cycle is None else self.dilation_cycle
            rf = receptive_field(1 if self.n_layers is None else self.n_layers, cycle, self.kernel_size)
            raise ValueError(f"window={window} is shorter than the smallest receptive field the denoiser's "
                             f"parameters allow ({rf} timestamps: n_layers={self.n_layers}, dilation_cycle="
                             f"{self.dilation_cycle}, kernel_size={self.kernel_size}); use a longer window, a smaller "
                             f"kernel_size, or leave n_layers and dilation_cycle None to fit them to the window")
        self.n_layers_, self.dilation_cycle_ = stack
        return self._build(channels)

    def _fit_model(self, data: torch.Tensor) -> None:
        self.model_ = self._build_for_training(int(data.shape[2]))
        schedule = self._noise_schedule()
        alpha_bar = schedule.alpha_bars.to(device=self.device_, dtype=torch.float32)
        call = current_call(self, "fit")
        noise = call.generator("training-noise", self.device_)  # steps t, noise z and masks of the loss
        loss = ReconstructLoss(alpha_bar, call.dispatch, noise) if self.mode == "reconstruct" else \
            ImputeLoss(alpha_bar, call.dispatch, noise, self._mask_kinds(), self._block())
        self.history_ = training.fit(self.model_, loss, data, self._train_config(), self._torch_generator("fit"),
                                     verbose=self.verbose, desc="DiffusionDetector")

    # ---- scoring ---------------------------------------------------------------------------------
    def _fit_series(self, series: torch.Tensor, layout: SeriesBatch) -> None:
        # The range of normal data, per channel (over every series of a collection): reconstructions are clipped
        # to it (SeriesSampler.reverse_chains).
        self.train_min_ = series.amin(dim=0).to(torch.float32)
        self.train_max_ = series.amax(dim=0).to(torch.float32)
        super()._fit_series(series, layout)
        # Fitted by the first scoring pass, the fit's own over these training series (BaseDetector.fit scores
        # them right after this hook): "multiscale" needs their errors' quantiles before it can score.
        self.error_scales_, self._scales_pending = None, True

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - series are scored in tiles
        raise NotImplementedError("DiffusionDetector scores whole series (_score_series)")

    def _score_series(self, series: torch.Tensor, layout: SeriesBatch) -> torch.Tensor:
        """Scores of every series of the packing, each as if scored alone: the noise of a series depends on the
        call's seed and its own length only, and the sampler runs the tiles of all series through the same
        network calls (:meth:`SeriesSampler.reconstruct_many`)."""
        rf = self.model_.receptive_field
        for i, T in enumerate(layout.lengths):
            if T < rf:
                what = "the series" if layout.n_series == 1 else f"series {i}"
                raise ValueError(f"{what} has {T} timestamps, fewer than the denoiser's receptive field ({rf})")
        xs = [part.t().contiguous() for part in layout.split(series)]  # [C, T]: one channel's timestamps contiguous
        seeds = self._numpy_rng("score-noise").integers(0, _U63, size=2)
        noise_seed, mask_seed = int(seeds[0]), int(seeds[1])
        sampler = get_thread_value(self, "sampler")  # a stream holds one, its plan cached (genad_fast.streaming)
        sampler = self._sampler() if sampler is None else sampler
        if self.mode == "reconstruct":
            scores = sampler.reconstruct_many(xs, noise_seed, self._noise_level(), self._chain_length(), self.n_draws)
        else:
            scores = sampler.impute_many(xs, noise_seed, mask_seed, self._mask_kinds(),
                                         self._block(), self._chain_length(), self.n_draws)
        needs_loss = self._uses_window_loss() and (self._scales_pending or self.score_reduction == "multiscale")
        losses = self._window_losses(layout.split(series)) if needs_loss else None
        return self._reduce_errors(scores, losses)

    def _uses_window_loss(self) -> bool:
        return self.mode == "reconstruct" and self.elbo_levels > 0

    def _window_losses(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """The window denoising loss per timestamp of each series ``[T, C]`` (module docstring). Its noise is
        drawn on the CPU from the detector's seed, afresh for each series: the same draws on every device, in every
        call, and for a series scored alone or in a collection."""
        loss = get_thread_value(self, "window_loss")  # a stream holds one, its plan built once (genad_fast.streaming)
        loss = self._window_loss_for_call(parts[0].device) if loss is None else loss
        seed = int(self._numpy_rng("score-window-loss").integers(0, _U63))
        W = int(self.window_)
        out = []
        for part in parts:
            C, w = part.shape[1], min(W, part.shape[0])
            noise = torch.randn((len(loss.levels), C, w), generator=torch.Generator().manual_seed(seed))
            out.append(loss(part, w, noise))
        return out

    def _window_loss_for_call(self, device: torch.device) -> WindowLoss:
        """The :class:`WindowLoss` of this scoring call, on ``device``. The network runs as the sampler runs it:
        the inference plan where the call's backend has compiled kernels and the products are float32, else the
        module (SeriesSampler.fused_network)."""
        schedule = self._noise_schedule()
        levels = loss_levels(schedule.n_steps, int(self.elbo_levels))
        fused = current_call(self).dispatch.has("diffusion_step") and MATMUL_DTYPES[self.matmul_dtype] is None
        return WindowLoss(self.model_, schedule.alpha_bars.to(device=device, dtype=torch.float64), levels, fused)

    def _reduce_errors(self, errors: list[torch.Tensor], losses: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Per-series point errors (and window losses) to the packed scores of ``score_reduction``."""
        points = torch.cat(errors) if len(errors) != 1 else errors[0]
        if self.score_reduction == "point" and not self._scales_pending:
            return points
        windowed = torch.cat([window_mean_scores(e, min(int(self.window_), e.shape[0]), self.reduce) for e in errors])
        loss = None if losses is None else torch.cat(losses).to(points.device)
        if self._scales_pending:  # the fit's pass over its training series, whatever the reduction (a later
            self._scales_pending = False  # set_params(score_reduction="multiscale") needs these scales too)
            found = [float(_upper_quantile(v, SCALE_QUANTILE)) for v in (points, windowed)]
            self.error_scales_ = error_scales(*found, None if loss is None else float(_upper_quantile(loss,
                                                                                                       SCALE_QUANTILE)))
        if self.score_reduction != "multiscale":
            return points if self.score_reduction == "point" else windowed
        if self.error_scales_ is None:
            raise ValueError("score_reduction='multiscale' needs the training errors' scales (error_scales_), which "
                             "this detector lacks (a model file from before the option): refit it, or score with "
                             "score_reduction='point'")
        # In float64: a scale as small as error_scales' floor would overflow a float32 ratio to inf.
        scales = self.error_scales_.to(device=points.device, dtype=torch.float64)
        score = torch.maximum(points.double() / scales[0], windowed.double() / scales[1])
        if loss is None:
            return score
        if scales.numel() < 3:
            raise ValueError(f"elbo_levels={self.elbo_levels} needs the training scale of the window denoising loss, "
                             "which this detector lacks (fitted with elbo_levels=0, or a model file from before the "
                             "option): refit it, or set elbo_levels=0")
        return torch.maximum(score, loss / scales[2])

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
                "n_layers": self.n_layers_, "dilation_cycle": self.dilation_cycle_,
                "train_min": self.train_min_, "train_max": self.train_max_,
                "error_scales": getattr(self, "error_scales_", None)}

    def _set_state(self, state: dict) -> None:
        # Files from before the stack was fitted to the window hold no stack: theirs is the int parameters.
        self.n_layers_ = int(state.get("n_layers", self.n_layers))
        self.dilation_cycle_ = int(state.get("dilation_cycle", self.dilation_cycle))
        self.model_ = self._build(int(state["channels"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        self.train_min_ = state.get("train_min")  # absent in files from before the clip: no clip
        self.train_max_ = state.get("train_max")
        self.error_scales_ = state.get("error_scales")  # absent in files from before "multiscale"
        self._scales_pending = False

