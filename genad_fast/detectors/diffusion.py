"""DiffusionDetector: denoising diffusion over long multivariate series, scored in tiles.

A denoising diffusion model (DDPM, Ho et al., NeurIPS 2020) learns the normal behaviour of a series: a
convolutional denoiser ε_θ (:mod:`genad_fast.nn.denoiser`) is trained to predict the noise z in
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

Scoring a long series: tiles, not windows
    The denoiser is fully convolutional with receptive radius r (output i depends on inputs i-r..i+r). Each
    reverse step runs it over the whole series in tiles of ``tile_size`` timestamps, each read with a halo of r
    on both sides, so every tile's ε̂ equals the ε̂ of the whole series at once (zero padding only at the series'
    own edges); all reads have one length, so ``tile_batch`` tiles go through the network as one batch. The
    halo costs 2r/tile_size extra work where overlapping windows of stride S cost W/S. The step update then runs once over the whole series with the fused
    :func:`genad_fast.ops.diffusion_step`, its noise drawn from the Philox stream for the whole state tensor
    ``[B, C, T]``: one noise value per timestamp, channel, draw and step, fixed by global position, so the
    tiling changes nothing but speed. With the fused backends the network runs as its inference plan
    (:class:`genad_fast.nn.denoiser_inference.DenoiserInference`: the same ε̂ to float rounding; the whole
    pipeline runs about 1.8x faster for it on one CPU thread; the eager backend runs the modules). Every
    timestamp is denoised once per step (no overlapping windows, cost linear in T, independent of a window
    stride); memory is the state (a few ``[B, C, T]`` tensors) plus
    one batch of tiles' activations, never T × steps. The error per timestamp goes straight into the score buffer
    (:func:`genad_fast.ops.recon_error_accumulate_`).

No host-device synchronisation in the loop
    The sampling loop reads no tensor value on the host (no ``.item()``, ``.cpu()``, ``nonzero()``, no
    data-dependent shapes): step coefficients, step embeddings and tile bounds are fixed before it starts
    and every shape is static for a given series length, so on CUDA the loop can be captured in a CUDA graph
    and replayed (not exercised here: the build machines have no GPU).

Training windows use ``window`` and ``stride``; ``reduce`` does not apply (scores are per timestamp).
"""
from __future__ import annotations

import contextlib

import torch

from genad_fast import _backend, ops
from genad_fast.detectors._call import build_network, current_call
from genad_fast.detectors.base import BaseDetector
from genad_fast.nn import training
from genad_fast.nn.denoiser import ConditionalDenoiser, Denoiser
from genad_fast.nn.denoiser_inference import DenoiserInference
from genad_fast.nn.schedules import SAMPLERS, SCHEDULES, NoiseSchedule
from genad_fast.ops import diffusion as _diffusion_ops

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

    def _ops_backend(self) -> str:
        """The backend of this call's ops: asked for once per fit/scoring call (never None, so no op reads
        ``GENAD_FAST_BACKEND`` again in the middle of a call)."""
        return current_call(self).backend

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
        loss = _ReconstructLoss(alpha_bar, call.backend, noise) if self.mode == "reconstruct" else \
            _ImputeLoss(alpha_bar, call.backend, noise, self._mask_kinds(), max(1, self.window // self.mask_split))
        config = training.TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                      weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                                      val_fraction=self.val_fraction, patience=self.patience)
        self.history_ = training.fit(self.model_, loss, data, config, self._torch_generator("fit"),
                                     verbose=self.verbose, desc="DiffusionDetector")

    # ---- scoring ---------------------------------------------------------------------------------
    def _fit_series(self, series: torch.Tensor) -> None:
        self._check_params()
        # The range of normal data, per channel: reconstructions are clipped to it (see _reverse_chain).
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
        if self.mode == "reconstruct":
            return self._score_reconstruct(x, noise_seed)
        return self._score_impute(x, noise_seed, mask_seed)

    def _score_reconstruct(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        C, T = x.shape
        K = self.n_draws
        schedule = self._noise_schedule()
        taus = schedule.timesteps(self._noise_level() - 1, self._chain_length())
        a0, b0 = schedule.add_noise_coefficients([taus[0]] * K)
        x0 = x.reshape(1, C * T).expand(K, C * T)
        state = ops.add_noise(x0, *self._on_device(a0, b0), seed, 0, backend=self._ops_backend())
        offset = ops.philox_counters(K * C * T)
        x_hat = self._reverse_chain(state.view(K, C, T), taus, seed, offset)
        score = torch.zeros(1, T, dtype=torch.float32, device=x.device)
        x_tc = x.t().unsqueeze(0)  # [1, T, C] views of the [C, T] layouts: no copies
        for k in range(K):
            ops.recon_error_accumulate_(score, x_tc, x_hat[k:k + 1].transpose(1, 2), None, 1.0 / K,
                                        backend=self._ops_backend())
        return score[0]

    def _score_impute(self, x: torch.Tensor, seed: int, mask_seed: int) -> torch.Tensor:
        C, T = x.shape
        K = self.n_draws
        targets = self._target_masks(C, T, mask_seed)                   # [M, C, T], 1 = imputed
        M = targets.shape[0]
        B = M * K
        observed_mask = (1.0 - targets).repeat_interleave(K, dim=0)      # sample b imputes mask b // K
        schedule = self._noise_schedule()
        taus = schedule.timesteps(self.n_steps - 1, self._chain_length())
        # The chain starts from pure noise at step N (CSDI, ImDiffusion): x_N = z.
        ones, zeros = torch.ones(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
        x0 = x.reshape(1, C * T).expand(B, C * T)
        state = ops.add_noise(x0, *self._on_device(zeros, ones), seed, 0, backend=self._ops_backend())
        offset = ops.philox_counters(B * C * T)
        observed = x.unsqueeze(0).expand(B, C, T)
        x_hat = self._reverse_chain(state.view(B, C, T), taus, seed, offset, observed=observed, mask=observed_mask)
        score = torch.zeros(1, T, dtype=torch.float32, device=x.device)
        x_tc = x.t().unsqueeze(0)
        weight = 2.0 / (K * M)  # M / 2 complementary pairs, each covering every point once
        for b in range(B):
            ops.recon_error_accumulate_(score, x_tc, x_hat[b:b + 1].transpose(1, 2),
                                        targets[b // K:b // K + 1].transpose(1, 2), weight,
                                        backend=self._ops_backend())
        return score[0]

    def _target_masks(self, C: int, T: int, seed: int) -> torch.Tensor:
        """[M, C, T] float masks (1 = imputed): each kind and its complement, fixed by global position."""
        out = []
        dev = self.device_
        for kind in self._mask_kinds():
            if kind == "grid":
                block = max(1, self.window // self.mask_split)
                m = ((torch.arange(T, device=dev) // block) % 2).to(torch.float32).expand(C, T)
            else:
                m = (ops.randn((C, T), seed, 0, device=dev, backend=self._ops_backend()) > 0).to(torch.float32)
            out += [m, 1.0 - m]
        return torch.stack(out)

    def _on_device(self, *coeffs: torch.Tensor) -> list[torch.Tensor]:
        return [c.to(device=self.device_, dtype=torch.float32) for c in coeffs]

    def _reverse_chain(self, state: torch.Tensor, taus: list[int], seed: int, offset: int,
                       observed: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the k reverse steps τ_k -> ... -> τ_1 -> data on ``state`` ``[B, C, T]``; returns x̂_0.

        x̂_0 is clipped, per channel, to the range of the normalised training series, as DDPM clips its
        estimate to the data range (Ho et al. 2020, ``clip_denoised``): a reconstruction of normal data is
        normal data. Without it a denoiser that acts near the identity on inputs far outside what it was
        trained on reproduces a huge spike and scores it low; with it the error of a value x beyond the range
        [lo, hi] is at least (x - hi)² (or (lo - x)²), so it grows with the spike and a spike far outside
        the training range is flagged.
        """
        plan = self._plan_chain(state, taus)
        x_hat = self._run_chain(plan, state, seed, offset, observed, mask)
        lo, hi = getattr(self, "train_min_", None), getattr(self, "train_max_", None)
        if lo is None:  # a model file from before the clip
            return x_hat
        return torch.clamp(x_hat, lo.to(x_hat).view(1, -1, 1), hi.to(x_hat).view(1, -1, 1))

    def _plan_chain(self, state: torch.Tensor, taus: list[int]) -> dict:
        """Everything the sampling loop needs, fixed before it starts: per-step coefficient vectors on the device,
        step embeddings, tile bounds, the noise counters one step uses."""
        B, C, T = state.shape
        schedule = self._noise_schedule()
        coeffs = []
        for j in range(len(taus) - 1):
            a, b, c = schedule.step_coefficients(self.sampler, [taus[j]] * B, [taus[j + 1]] * B, float(self.eta))
            coeffs.append(self._on_device(a, b, c))
        with torch.profiler.record_function("diffusion.step_embedding"):
            steps = self.model_.step_embedding(torch.tensor(taus[:-1], device=state.device))  # [k, E]
        tiles = _tiles(T, int(self.tile_size), self.model_.receptive_radius)
        per_call = int(self.tile_batch)
        groups = [tiles[i:i + per_call] for i in range(0, len(tiles), per_call)]
        plan = {"coeffs": coeffs, "steps": steps, "groups": groups, "counters": ops.philox_counters(B * C * T),
                "network": None}
        if self._fused_network(state):
            with torch.profiler.record_function("diffusion.network_plan"):
                network = DenoiserInference(self.model_, state.dtype)
                plan["network"] = network
                plan["consts"] = [network.step_constants(steps[j]) for j in range(len(coeffs))]
        return plan

    def _fused_network(self, state: torch.Tensor) -> bool:
        """Whether the denoiser runs as its inference plan (:mod:`genad_fast.nn.denoiser_inference`): with the
        fused backends and float products. The eager backend runs the modules as trained (the reference), and
        ``matmul_dtype="bfloat16"`` runs them under autocast."""
        chosen = _backend.resolve(self._ops_backend(), state.device, implemented=_diffusion_ops._IMPLEMENTED)
        return chosen != "eager" and MATMUL_DTYPES[self.matmul_dtype] is None

    def _run_chain(self, plan: dict, state: torch.Tensor, seed: int, offset: int, observed: torch.Tensor | None,
                   mask: torch.Tensor | None) -> torch.Tensor:
        """The sampling loop. It reads no tensor value on the host and every shape in it is fixed by T, so on CUDA
        it makes no host-device synchronisation and can be captured in a CUDA graph (one capture per series
        length; replay with new data copied into the same input buffer)."""
        B, C, T = state.shape
        coeffs, steps, groups, counters = plan["coeffs"], plan["steps"], plan["groups"], plan["counters"]
        network = plan["network"]
        k = len(coeffs)
        eps = torch.empty_like(state)
        autocast = self._autocast()
        for j in self._progress(range(k), total=k, desc="denoise", unit="step", long_only=True):
            with torch.profiler.record_function("diffusion.network"), autocast:
                for group in groups:  # tiles batched into one call: [len(group) * B, C, tile + 2 halo]
                    if network is not None:  # the reads go into the plan's buffer as they are (no stacking)
                        x_in = [state[:, :, lo:hi] for _, _, lo, hi in group]
                        if observed is not None:
                            x_in = ConditionalDenoiser.inputs(torch.cat(x_in), _gather(observed, group),
                                                              _gather(mask, group))
                        out = network(x_in, plan["consts"][j])
                    elif observed is None:
                        out = self.model_(_gather(state, group), step=steps[j:j + 1])
                    else:
                        out = self.model_(_gather(state, group), _gather(observed, group), _gather(mask, group),
                                          step=steps[j:j + 1])
                    out = out.reshape(len(group), B, C, -1)
                    for g, (s, e, lo, _) in enumerate(group):
                        eps[:, :, s:e] = out[g, :, :, s - lo:e - lo]
            with torch.profiler.record_function("diffusion.step"):
                state = ops.diffusion_step(state.view(B, C * T), eps.view(B, C * T), *coeffs[j], seed,
                                           offset + j * counters, backend=self._ops_backend()).view(B, C, T)
        return state

    def _autocast(self):
        dtype = MATMUL_DTYPES[self.matmul_dtype]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_.type, dtype=dtype)

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


def _tiles(T: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, lo, hi) per tile: the tile owns [start, stop) and reads [lo, hi), which reaches at least
    ``halo`` past every owned timestamp unless it meets a series edge (there the network's zero padding is the
    series' own, so nothing is lost).

    Every read has the same length ``tile + 2·halo`` (one network shape for all tiles, so tiles batch into one
    call and a CUDA graph sees static shapes): the first tile owns ``tile + halo`` timestamps from the start, the
    last one is aligned to the end and owns the rest (at most ``tile + halo``). A series of at most
    ``tile + 2·halo`` timestamps is one tile.
    """
    span = tile + 2 * halo
    if T <= span:
        return [(0, T, 0, T)]
    out = [(0, tile + halo, 0, span)]
    e = tile + halo
    while T - e > tile + halo:
        out.append((e, e + tile, e - halo, e + tile + halo))
        e += tile
    out.append((e, T, T - span, T))
    return out


def _gather(x: torch.Tensor, group: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """The reads of a group of tiles of ``x`` ``[B, C, T]`` stacked tile-major: ``[len(group) * B, C, hi - lo]``."""
    if len(group) == 1:
        _, _, lo, hi = group[0]
        return x[:, :, lo:hi]
    return torch.cat([x[:, :, lo:hi] for _, _, lo, hi in group], dim=0)


class _ReconstructLoss:
    """ε-prediction MSE (Ho et al. 2020, eq. 14): t uniform over the N steps, x_t from the fused add_noise.

    Its random numbers (t, z, and the masks of :class:`_ImputeLoss`) come from ``generator``, on the data's
    device."""

    def __init__(self, alpha_bar: torch.Tensor, backend: str | None, generator: torch.Generator):
        self.alpha_bar = alpha_bar
        self.backend = backend
        self.generator = generator

    def noisy(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x0.shape[0]
        t = torch.randint(0, self.alpha_bar.numel(), (b,), generator=self.generator, device=x0.device)
        ab = self.alpha_bar[t]
        z = torch.randn(x0.shape, generator=self.generator, device=x0.device, dtype=x0.dtype)
        x_t = ops.add_noise(x0.reshape(b, -1), ab.sqrt(), (1.0 - ab).sqrt(), 0, 0, noise=z.reshape(b, -1),
                            backend=self.backend).view_as(x0)
        return x_t, z, t

    def __call__(self, model: Denoiser, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.transpose(1, 2).contiguous()  # [b, C, W]
        x_t, z, t = self.noisy(x0)
        return torch.mean((model(x_t, t) - z) ** 2)


class _ImputeLoss(_ReconstructLoss):
    """CSDI/ImDiffusion training: a random mask per window (a grid mask with random phase, or each point with
    probability 1/2, as allowed by ``kinds``); ε-prediction MSE on the masked (imputed) points only."""

    def __init__(self, alpha_bar: torch.Tensor, backend: str | None, generator: torch.Generator,
                 kinds: tuple[str, ...], block: int):
        super().__init__(alpha_bar, backend, generator)
        self.kinds = kinds
        self.block = block

    def target_mask(self, b: int, C: int, W: int, device: torch.device) -> torch.Tensor:
        kind = torch.randint(0, len(self.kinds), (b, 1, 1), generator=self.generator, device=device)
        phase = torch.randint(0, 2 * self.block, (b, 1, 1), generator=self.generator, device=device)
        t = torch.arange(W, device=device).view(1, 1, W)
        grid = (((t + phase) // self.block) % 2).to(torch.float32).expand(b, C, W)
        rand = (torch.rand(b, C, W, generator=self.generator, device=device) < 0.5).to(torch.float32)
        pick_grid = torch.tensor([k == "grid" for k in self.kinds], device=device)[kind]
        return torch.where(pick_grid, grid, rand)

    def __call__(self, model: ConditionalDenoiser, batch: torch.Tensor) -> torch.Tensor:
        x0 = batch.transpose(1, 2).contiguous()
        target = self.target_mask(x0.shape[0], x0.shape[1], x0.shape[2], x0.device)
        x_t, z, t = self.noisy(x0)
        err = (model(x_t, x0, 1.0 - target, t) - z) ** 2
        return (err * target).sum() / target.sum().clamp(min=1.0)
