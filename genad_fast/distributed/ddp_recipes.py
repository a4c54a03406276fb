"""How each network detector trains over shards: the steps of its ``_fit_model``, with every quantity that the
detector computes from all its training data computed from all the shards.

Each step is the detector's own (its networks, losses, configs and helpers); what changes is only where the
data comes from:

- the training loops are :func:`genad_fast.nn.training.fit_shards` and
  :func:`genad_fast.nn.gan.training.train_wgan_gp_shards`, with a :class:`~genad_fast.distributed.ddp_sync.DDPSync`;
- every random stream of a shard is its own: shard 0 draws exactly what a one-process fit draws
  (``"fit"``, ``"training-noise"``, ...), shard s > 0 from ``"<name>#shard<s>"``;
- data-wide quantities are reduced over the shards, exactly and in shard order where order matters: the flow's
  frozen dimensions (max/min), its ActNorm start (the same 4,096 samples of all shards a one-process fit would
  pick), its mean training NLL; the diffusion model's training range (min/max); Deep SVDD's centre (the mean of
  φ(x)) and soft-boundary radius (an exact order statistic, :func:`~genad_fast.distributed.ddp_sync.kth_smallest`).

With one shard in one process every step is the detector's ``fit`` step, bit for bit.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from genad_fast.detectors._call import current_call
from genad_fast.detectors import _flow_scores as flow_scores
from genad_fast.detectors._network import default_code_size, sample_shape
from genad_fast.distributed.ddp_data import LocalShard
from genad_fast.distributed.ddp_sync import DDPSync, all_max, all_min, kth_smallest
from genad_fast.nn import training
from genad_fast.nn.autoencoder import reconstruction_loss
from genad_fast.nn.gan.encoder import izif_loss
from genad_fast.nn.gan.networks import default_latent_dim, freeze
from genad_fast.nn.gan.training import train_wgan_gp_shards
from genad_fast.nn.svdd import guard_center, svdd_loss
from genad_fast.nn.vae import elbo_loss

__all__ = ["Work", "recipe_for"]


def stream_name(name: str, shard: int) -> str:
    """The name of shard ``shard``'s stream ``name``: shard 0 keeps the one-process name."""
    return name if shard == 0 else f"{name}#shard{shard}"


@dataclass
class Work:
    """One data-parallel fit: the detector, this process's shards, the process group's sync."""

    det: object
    shards: Sequence[LocalShard]
    sync: DDPSync

    @property
    def first(self) -> torch.Tensor:
        return self.shards[0].samples

    def table(self, values: Sequence[Sequence[float]]) -> torch.Tensor:
        """Per-shard values as one ``[num_shards, k]`` float64 table, the same on every process."""
        return training.shard_table(self.sync, [sh.as_shard(None) for sh in self.shards], values)

    def total(self) -> int:
        return int(self.table([(sh.samples.shape[0],) for sh in self.shards])[:, 0].sum())

    def generator(self, purpose: str, shard: int) -> torch.Generator:
        return self.det._torch_generator(stream_name(purpose, shard))

    def call_generator(self, name: str, shard: int) -> torch.Generator:
        return current_call(self.det, "fit").generator(stream_name(name, shard), self.det.device_)

    def train(self, model: torch.nn.Module, loss_for: Callable[[int], training.LossFn], config: training.TrainConfig,
              *, purpose: str = "fit", desc: str, epoch_end: Callable[[int], None] | None = None
              ) -> training.TrainHistory:
        shards = [sh.as_shard(self.generator(purpose, sh.index), loss_for(sh.index)) for sh in self.shards]
        return training.fit_shards(model, shards, config, sync=self.sync, verbose=self.det.verbose, desc=desc,
                                   epoch_end=epoch_end)


# ---- FlowDetector ------------------------------------------------------------------------------------------
def fit_flow(work: Work) -> None:
    det = work.det
    dim = work.first[0].numel()
    if dim < 2:
        raise ValueError("FlowDetector needs at least 2 dimensions per sample (features, or window x channels); "
                         f"got {dim}: use a window of 2 or more for a one-channel series")
    det.dim_ = dim
    hi = torch.stack([sh.samples.amax(dim=0).flatten() for sh in work.shards]).amax(dim=0)
    lo = torch.stack([sh.samples.amin(dim=0).flatten() for sh in work.shards]).amin(dim=0)
    det._freeze_outside_range(all_max(hi, work.sync), all_min(lo, work.sync))
    det.model_ = det._build(det._n_active())
    det._initialize_actnorm_on(_global_rows(work, det._actnorm_indices(work.total())))
    det.history_ = work.train(det.model_, lambda s: det._training_loss, det._train_config(), desc="FlowDetector")
    sums = work.table([(float(det._training_nll(sh.samples).double().sum()),) for sh in work.shards])
    det.train_nll_mean_ = float(sums[:, 0].sum()) / work.total()
    # the complexity score's quantisation range: FlowDetector._fit_corrections' draw, over all the shards' rows
    idx = flow_scores.range_rows(work.total(), dim, det._torch_generator("quant-range", device="cpu"))
    det.quant_lo_, det.quant_hi_ = flow_scores.range_of(_global_rows(work, idx).reshape(-1, work.first.shape[-1]))
    det.background_ = None  # the likelihood ratio's background is not fitted here (FlowDetector says so)


def _global_rows(work: Work, idx: torch.Tensor) -> torch.Tensor:
    """Samples ``idx`` of all the shards' samples in shard order, flattened, on every process: each process
    fills the rows it holds, the others are zeros, and the sum over the processes (exact: x + 0) has them all."""
    sizes = work.table([(sh.samples.shape[0],) for sh in work.shards])[:, 0].to(torch.int64)
    starts = torch.cumsum(sizes, 0) - sizes
    rows = torch.zeros(idx.numel(), int(work.first[0].numel()), dtype=work.first.dtype)
    for sh in work.shards:
        start, n = int(starts[sh.index]), int(sizes[sh.index])
        mine = ((idx >= start) & (idx < start + n)).nonzero().flatten()
        if mine.numel():
            local = (idx[mine] - start).to(sh.samples.device)
            rows[mine] = sh.samples[local].reshape(mine.numel(), -1).cpu()
    return work.sync.sum_(rows).to(work.first.device)


# ---- DiffusionDetector -------------------------------------------------------------------------------------
def fit_diffusion(work: Work) -> None:
    from genad_fast.nn.diffusion.losses import ImputeLoss, ReconstructLoss

    det = work.det
    # the range of normal data, per channel: reconstructions are clipped to it at scoring
    det.train_min_ = all_min(torch.stack([sh.z.amin(dim=0) for sh in work.shards]).amin(dim=0),
                             work.sync).to(torch.float32)
    det.train_max_ = all_max(torch.stack([sh.z.amax(dim=0) for sh in work.shards]).amax(dim=0),
                             work.sync).to(torch.float32)
    det.model_ = det._build_for_training(int(work.first.shape[2]))
    alpha_bar = det._noise_schedule().alpha_bars.to(device=det.device_, dtype=torch.float32)
    dispatch = current_call(det, "fit").dispatch

    def loss_for(s: int):
        noise = work.call_generator("training-noise", s)  # steps t, noise z and masks of the loss
        if det.mode == "reconstruct":
            return ReconstructLoss(alpha_bar, dispatch, noise)
        return ImputeLoss(alpha_bar, dispatch, noise, det._mask_kinds(), det._block())

    det.history_ = work.train(det.model_, loss_for, det._train_config(), desc="DiffusionDetector")
    det.error_scales_, det._scales_pending = _diffusion_error_scales(det, work), False


def _diffusion_error_scales(det, work: Work) -> torch.Tensor:
    """``score_reduction="multiscale"``'s scales over every shard: the SCALE_QUANTILE order statistic of the
    training's point errors, of their window errors and of the window denoising loss where the detector uses it
    (:func:`kth_smallest`, exact, nothing gathered), as
    DiffusionDetector's own fit takes them from its scoring pass. Costs one scoring pass of the shards more."""
    from genad_fast.detectors._window_mean import window_mean_scores
    from genad_fast.detectors.diffusion import SCALE_QUANTILE, error_scales

    reduction, det.score_reduction = det.score_reduction, "point"
    try:
        # float32, as the fit's own pass holds them (its window means are float32 too: the same scales to the bit)
        points = [torch.from_numpy(det._score_normalized(sh.z)).float() for sh in work.shards]
    finally:
        det.score_reduction = reduction
    windowed = [window_mean_scores(p, min(int(det.window_), p.shape[0]), det.reduce) for p in points]
    evidences = [points, windowed]
    if det._uses_window_loss():  # the window denoising loss, the third evidence (elbo_levels)
        evidences.append(det._window_losses([sh.z for sh in work.shards]))
    found = []
    for parts in evidences:
        values = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
        n = int(work.sync.sum_(torch.tensor([values.numel()], dtype=torch.int64))[0])
        found.append(kth_smallest(values, max(1, math.ceil(SCALE_QUANTILE * n)), work.sync))
    return error_scales(*found)


# ---- VAEDetector, AutoEncoderDetector ----------------------------------------------------------------------
def _code_size(det: object, work: Work, attr: str) -> int:
    value = getattr(det, attr)
    return int(value) if value is not None else default_code_size(work.first[0].numel())


def fit_vae(work: Work) -> None:
    det = work.det
    det.model_ = det._build(sample_shape(work.first), _code_size(det, work, "latent_dim"))
    beta = float(det.beta)

    def loss_for(s: int):
        noise = work.call_generator("elbo", s)  # the reparameterisation's ε
        return lambda model, batch: elbo_loss(model, batch, beta, noise)

    det.history_ = work.train(det.model_, loss_for, det._fit_config(work.total()), desc="VAEDetector")


def fit_autoencoder(work: Work) -> None:
    det = work.det
    det.model_ = det._build(sample_shape(work.first), _code_size(det, work, "latent_dim"))
    det.history_ = work.train(det.model_, lambda s: reconstruction_loss, det._fit_config(work.total()),
                              desc="AutoEncoderDetector")
    _autoencoder_code_stats(work)


def _autoencoder_code_stats(work: Work) -> None:
    """AutoEncoderDetector._fit_code_stats over all the shards: the sums of the codes, their outer products and the
    squared errors per shard, summed; the reference codes from the reference rows gathered on every process."""
    from genad_fast.detectors.autoencoder import reference_rows, training_codes

    det = work.det
    sums = []
    for sh in work.shards:
        z, sq = training_codes(det.model_, sh.samples, int(det.score_batch_size))
        sums.append(torch.cat([z.sum(0), (z.T @ z).flatten(), sq.reshape(1)]).cpu().tolist())
    table = work.table(sums)
    total = (table.sum(0) if table.shape[0] > 1 else table[0]).to(work.first.device)
    k, n = int(det.model_.encoder.out_dim), work.total()
    rows = _global_rows(work, reference_rows(n)).view(-1, *work.first.shape[1:])
    det._set_code_stats(n, total[:k], total[k:k + k * k].view(k, k), float(total[-1]), int(work.first[0].numel()),
                        det.reference_codes(rows), work.first.dtype)


# ---- DeepSVDDDetector --------------------------------------------------------------------------------------
def fit_deep_svdd(work: Work) -> None:
    det = work.det
    shape = det.sample_shape_ = sample_shape(work.first)
    rep_dim = _code_size(det, work, "rep_dim")
    model = det._build(shape, rep_dim)
    det.pretrain_history_ = None
    if det.pretrain_epochs > 0:
        ae = det._pretrain_autoencoder(shape, rep_dim)
        det.pretrain_history_ = work.train(ae, lambda s: reconstruction_loss,
                                           det._fit_config(work.total(), det.pretrain_epochs), purpose="pretrain",
                                           desc="DeepSVDDDetector pre-training")
        model.net.load_state_dict(ae.encoder.state_dict())
    bs = int(det.score_batch_size)
    _init_center(work, model, bs, float(det.center_eps))

    epoch_end = None
    if det.objective == "soft-boundary":
        warm_up = int(det.warm_up_epochs)
        if warm_up == 0:
            _solve_radius(work, model, bs)

        def epoch_end(epoch: int) -> None:
            if epoch + 1 >= warm_up:  # epoch is 0-based: the first warm_up epochs train with R = 0
                _solve_radius(work, model, bs)

    det.model_ = model
    det.history_ = work.train(model, lambda s: svdd_loss, det._fit_config(work.total()), desc="DeepSVDDDetector",
                              epoch_end=epoch_end)
    if det.objective == "soft-boundary":
        _solve_radius(work, model, bs)  # the exact R for the weights the loop kept (best epoch)


@torch.no_grad()
def _init_center(work: Work, model, batch_size: int, eps: float) -> None:
    """c = the mean of φ(x) over all the shards' samples (DeepSVDD.init_center over all of them)."""
    was_training = model.training
    model.eval()
    try:
        totals = []
        for sh in work.shards:
            total = torch.zeros_like(model.center, dtype=torch.float64)
            for i in range(0, sh.samples.shape[0], batch_size):
                total += model.net(sh.samples[i:i + batch_size]).to(torch.float64).sum(0)
            totals.append(total.cpu().tolist())
    finally:
        model.train(was_training)
    table = work.table(totals)
    total = table.sum(0) if table.shape[0] > 1 else table[0]
    model.center.copy_(guard_center((total / work.total()).to(model.center.device), eps))


@torch.no_grad()
def _solve_radius(work: Work, model, batch_size: int) -> None:
    """R = d_(n - ⌊νn⌋) over all the shards' samples (DeepSVDD.solve_radius over all of them)."""
    dist = torch.cat([model._all_distances(sh.samples, batch_size).to(torch.float64).clamp_min(0).sqrt().cpu()
                      for sh in work.shards])
    n = work.total()
    k = n - int(math.floor(model.nu * n))
    model.radius.fill_(kth_smallest(dist, k, work.sync) if k >= 1 else 0.0)


# ---- AnoGANDetector, FAnoGANDetector -------------------------------------------------------------------------
def fit_gan(work: Work) -> None:
    det = work.det
    latent = int(det.latent_dim) if det.latent_dim is not None else default_latent_dim(work.first[0].numel())
    det._build(sample_shape(work.first), latent, with_encoder=det._needs_encoder)
    name = type(det).__name__
    shards = [sh.as_shard(work.generator("gan", sh.index)) for sh in work.shards]
    det.gan_history_ = train_wgan_gp_shards(det.generator_, det.critic_, shards, det._gan_config(work.total()),
                                            sync=work.sync, verbose=det.verbose, desc=f"{name} GAN")
    det.encoder_history_ = None
    if det.encoder_ is not None:
        kappa = float(det.kappa)

        def loss(encoder, batch):
            return izif_loss(encoder, det.generator_, det.critic_, batch, kappa)

        det.encoder_history_ = work.train(det.encoder_, lambda s: loss, det._encoder_config(), purpose="encoder",
                                          desc=f"{name} encoder")
        freeze(det.encoder_)


def recipe_for(det: object) -> Callable[[Work], None]:
    """The sharded fit of ``det``'s class; a TypeError for a detector that does not train by gradients."""
    from genad_fast.detectors.anogan import _GANDetector
    from genad_fast.detectors.autoencoder import AutoEncoderDetector
    from genad_fast.detectors.deep_svdd import DeepSVDDDetector
    from genad_fast.detectors.diffusion import DiffusionDetector
    from genad_fast.detectors.flow import FlowDetector
    from genad_fast.detectors.vae import VAEDetector

    for cls, recipe in ((FlowDetector, fit_flow), (DiffusionDetector, fit_diffusion), (VAEDetector, fit_vae),
                        (AutoEncoderDetector, fit_autoencoder), (DeepSVDDDetector, fit_deep_svdd),
                        (_GANDetector, fit_gan)):
        if isinstance(det, cls):
            return recipe
    raise TypeError(f"{type(det).__name__} has nothing to train with gradients, so there is nothing to train in "
                    f"parallel: fit it with fit() in one process (to score many series in parallel, use the "
                    f"engines of genad_fast.distributed). Data-parallel training covers the network detectors: "
                    f"flow, diffusion, vae, autoencoder, deep_svdd, anogan, fanogan")
