"""The reverse process of a trained denoiser over a whole series, in tiles: reconstruction and imputation scores.

Two scores of a series x ``[C, T]`` (normalised), each averaged over K noise draws:

``reconstruct`` (DiffusionAE, Pintilie et al., ICDM-W 2023)
    Noise x to level t0, denoise back to x̂_0 in k <= t0 steps (DDPM ancestral or DDIM), and score

        score[t] = 1/K Σ_draws mean_c (x[t, c] - x̂_0[t, c])²

``impute`` (ImDiffusion, Chen et al., VLDB 2023)
    Complementary masks (:func:`target_masks`): a grid mask (alternating blocks of timestamps, all channels) and
    a random one (each point with probability 1/2), each with its complement. The conditional denoiser imputes
    the masked points from pure noise (x_N = z, as CSDI), conditioned on the observed ones, in k steps. Every
    point is masked exactly once per complementary pair, so

        score[t] = 1/(K·P) Σ_draws Σ_masks mean_c (mask·(x - x̂_mask)²)[t, c]      (P pairs of masks)

Tiles, not windows
    The denoiser is fully convolutional with receptive radius r (output i depends on inputs i-r..i+r). Each
    reverse step runs it over the whole series in tiles of ``tile_size`` timestamps, each read with a halo of r
    on both sides (:func:`tiles`), so every tile's ε̂ equals the ε̂ of the whole series at once (zero padding only
    at the series' own edges); all reads have one length, so ``tile_batch`` tiles go through the network as one
    batch. The halo costs 2r/tile_size extra work where overlapping windows of stride S cost W/S. The step update
    then runs once over the whole series with the fused :func:`genad_fast.ops.diffusion_step`, its noise drawn
    from the Philox stream for the whole state tensor ``[B, C, T]``: one noise value per timestamp, channel,
    draw and step, fixed by global position, so the tiling changes nothing but speed. Where the call's dispatch
    has compiled kernels the network runs as its inference plan (:class:`genad_fast.nn.diffusion.plan.DenoiserInference`:
    the same ε̂ to float rounding, about 1.8x faster for the whole pipeline on one CPU thread); the eager
    backend runs the modules. Memory is the state (a few ``[B, C, T]`` tensors) plus one batch of tiles'
    activations, never T × steps; the error per timestamp goes straight into the score buffer
    (:func:`genad_fast.ops.recon_error_accumulate_`).

Many series in one call
    :meth:`SeriesSampler.reconstruct_many` / :meth:`~SeriesSampler.impute_many` run the chains of several series
    (of any lengths, one channel count) together: each keeps its own state ``[B, C, T_i]``, noise stream (the
    call's seed, counters by position in its own state) and step update, while the network runs over tiles drawn
    from all of them, ``tile_batch`` tiles of one read length per call (:func:`tile_groups`). A tile's ε̂ depends
    on its own read only, so every series gets the scores it gets alone, with fewer, fuller network calls.

No host-device synchronisation in the loop
    The sampling loop (:meth:`SeriesSampler.run_chain`) reads no tensor value on the host (no ``.item()``,
    ``.cpu()``, ``nonzero()``, no data-dependent shapes): step coefficients, step embeddings and tile bounds are
    fixed before it starts (:meth:`SeriesSampler.plan_chain`) and every shape is static for a given series
    length, so on CUDA the loop can be captured in a CUDA graph and replayed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from genad_fast import ops
from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser
from genad_fast.nn.diffusion.plan import DenoiserInference
from genad_fast.nn.diffusion.schedules import NoiseSchedule
from genad_fast.ops import Dispatch

__all__ = ["ChainPlan", "SeriesSampler", "gather", "target_masks", "tile_groups", "tiles"]

Tile = tuple[int, int, int, int]   # (start, stop, lo, hi): owns [start, stop), reads [lo, hi)
Slot = tuple[int, Tile]            # (series, tile): a tile of one series of the call


@dataclass
class ChainPlan:
    """Everything the sampling loop needs, fixed before it starts."""

    coeffs: list[list[torch.Tensor]]     # per step (a, b, c), [B] float32 on the device
    steps: torch.Tensor                  # step embeddings [k, E]
    groups: list[list[Slot]]             # tiles (of any series) batched per network call
    counters: list[int]                  # per series: the Philox counters one step's noise uses
    network: DenoiserInference | None    # the inference plan, or None: the modules
    consts: list | None = None           # the plan's per-step constants


class SeriesSampler:
    """The reverse process of a fixed denoiser over a series, in tiles (see the module docstring).

    ``sampler``: ``"ddpm"`` or ``"ddim"`` (with ``eta``); ``tile_size``, ``tile_batch``: timestamps a tile owns
    and tiles per network call; ``matmul_dtype``: None, or ``torch.bfloat16`` to run the network's products
    under autocast (the modules then, not the plan); ``dispatch``: the backend choice of the scoring call;
    ``clip``: per-channel (lo, hi) of the normalised training series that x̂_0 is clipped to (None: no clip);
    ``progress``: wraps the loop's range of steps (a progress bar), or None.
    """

    def __init__(self, model: Denoiser, schedule: NoiseSchedule, *, sampler: str, eta: float, tile_size: int,
                 tile_batch: int, matmul_dtype: torch.dtype | None, dispatch: Dispatch,
                 clip: tuple[torch.Tensor, torch.Tensor] | None = None,
                 progress: Callable[[range], Iterable[int]] | None = None) -> None:
        self.model = model
        self.schedule = schedule
        self.sampler = sampler
        self.eta = float(eta)
        self.tile_size = int(tile_size)
        self.tile_batch = int(tile_batch)
        self.matmul_dtype = matmul_dtype
        self.dispatch = dispatch
        self.clip = clip
        self.progress = progress

    @property
    def fused_network(self) -> bool:
        """Whether the denoiser runs as its inference plan (:mod:`genad_fast.nn.diffusion.plan`): where the
        dispatch has compiled kernels and the products are float. The eager backend runs the modules as trained
        (the reference), and ``matmul_dtype=torch.bfloat16`` runs them under autocast."""
        return self.dispatch.has("diffusion_step") and self.matmul_dtype is None

    # ---- the two scores --------------------------------------------------------------------------------
    def reconstruct(self, x: torch.Tensor, seed: int, noise_level: int, steps: int, draws: int) -> torch.Tensor:
        """score ``[T]`` of ``x`` ``[C, T]``: noised to level ``noise_level`` (1 .. N), denoised in ``steps``
        steps, ``draws`` times, the squared error averaged over channels and draws."""
        return self.reconstruct_many([x], seed, noise_level, steps, draws)[0]

    def reconstruct_many(self, xs: list[torch.Tensor], seed: int, noise_level: int, steps: int,
                         draws: int) -> list[torch.Tensor]:
        """:meth:`reconstruct` of each series of ``xs`` (``[C, T_i]``), all chains run together; each score equals
        the series' own."""
        K, dev = draws, xs[0].device
        taus = self.schedule.timesteps(noise_level - 1, steps)
        a0, b0 = _on_device(dev, *self.schedule.add_noise_coefficients([taus[0]] * K))
        states, offsets = [], []
        for x in xs:
            C, T = x.shape
            x0 = x.reshape(1, C * T).expand(K, C * T)
            states.append(ops.add_noise(x0, a0, b0, seed, 0, backend=self.dispatch).view(K, C, T))
            offsets.append(ops.philox_counters(K * C * T))
        x_hats = self.reverse_chain(states, taus, seed, offsets)
        out = []
        for x, x_hat in zip(xs, x_hats):
            score = torch.zeros(1, x.shape[1], dtype=torch.float32, device=dev)
            x_tc = x.t().unsqueeze(0)  # [1, T, C] views of the [C, T] layouts: no copies
            for k in range(K):
                ops.recon_error_accumulate_(score, x_tc, x_hat[k:k + 1].transpose(1, 2), None, 1.0 / K,
                                            backend=self.dispatch)
            out.append(score[0])
        return out

    def impute(self, x: torch.Tensor, seed: int, mask_seed: int, kinds: tuple[str, ...], block: int, steps: int,
               draws: int) -> torch.Tensor:
        """score ``[T]`` of ``x`` ``[C, T]``: each mask of :func:`target_masks` (``kinds``, grid ``block``,
        ``mask_seed``) imputed from pure noise in ``steps`` steps, ``draws`` times; the squared error of the
        imputed points averaged over channels, draws and complementary pairs."""
        return self.impute_many([x], seed, mask_seed, kinds, block, steps, draws)[0]

    def impute_many(self, xs: list[torch.Tensor], seed: int, mask_seed: int, kinds: tuple[str, ...], block: int,
                    steps: int, draws: int) -> list[torch.Tensor]:
        """:meth:`impute` of each series of ``xs`` (``[C, T_i]``), all chains run together; each score equals the
        series' own (its masks and noise depend on its own length only)."""
        K, dev = draws, xs[0].device
        taus = self.schedule.timesteps(self.schedule.n_steps - 1, steps)
        states, offsets, observed, masks, targets = [], [], [], [], []
        for x in xs:
            C, T = x.shape
            target = target_masks(C, T, mask_seed, kinds, block, dev, self.dispatch)   # [M, C, T], 1 = imputed
            B = target.shape[0] * K
            # The chain starts from pure noise at step N (CSDI, ImDiffusion): x_N = z.
            zeros, ones = _on_device(dev, torch.zeros(B, dtype=torch.float64), torch.ones(B, dtype=torch.float64))
            x0 = x.reshape(1, C * T).expand(B, C * T)
            states.append(ops.add_noise(x0, zeros, ones, seed, 0, backend=self.dispatch).view(B, C, T))
            offsets.append(ops.philox_counters(B * C * T))
            observed.append(x.unsqueeze(0).expand(B, C, T))
            masks.append((1.0 - target).repeat_interleave(K, dim=0))      # sample b imputes mask b // K
            targets.append(target)
        x_hats = self.reverse_chain(states, taus, seed, offsets, observed=observed, mask=masks)
        out = []
        for x, x_hat, target in zip(xs, x_hats, targets):
            M = target.shape[0]
            score = torch.zeros(1, x.shape[1], dtype=torch.float32, device=dev)
            x_tc = x.t().unsqueeze(0)
            weight = 2.0 / (K * M)  # M / 2 complementary pairs, each covering every point once
            for b in range(M * K):
                ops.recon_error_accumulate_(score, x_tc, x_hat[b:b + 1].transpose(1, 2),
                                            target[b // K:b // K + 1].transpose(1, 2), weight, backend=self.dispatch)
            out.append(score[0])
        return out

    # ---- the chain -------------------------------------------------------------------------------------
    def reverse_chain(self, state: torch.Tensor | list[torch.Tensor], taus: list[int], seed: int,
                      offset: int | list[int], observed: torch.Tensor | list | None = None,
                      mask: torch.Tensor | list | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Run the k reverse steps τ_k -> ... -> τ_1 -> data on ``state`` ``[B, C, T]`` (or on a list of states
        ``[B, C, T_i]`` with their noise offsets, observed series and masks: :meth:`run_chain`); returns x̂_0
        (a list for a list).

        x̂_0 is clipped, per channel, to ``clip`` (the range of the normalised training series), as DDPM clips
        its estimate to the data range (Ho et al. 2020, ``clip_denoised``): a reconstruction of normal data is
        normal data. Without it a denoiser that acts near the identity on inputs far outside what it was
        trained on reproduces a huge spike and scores it low; with it the error of a value x beyond the range
        [lo, hi] is at least (x - hi)² (or (lo - x)²), so it grows with the spike and a spike far outside
        the training range is flagged.
        """
        plan = self.plan_chain(state, taus)
        x_hat = self.run_chain(plan, state, seed, offset, observed, mask)
        if self.clip is None:
            return x_hat
        lo, hi = self.clip
        clip = lambda t: torch.clamp(t, lo.to(t).view(1, -1, 1), hi.to(t).view(1, -1, 1))  # noqa: E731
        return [clip(t) for t in x_hat] if isinstance(x_hat, list) else clip(x_hat)

    def plan_chain(self, state: torch.Tensor | list[torch.Tensor], taus: list[int]) -> ChainPlan:
        """Per-step coefficient vectors on the device, step embeddings, the tiles of every state ``[B, C, T_i]``
        grouped per network call, the noise counters one step uses per state, and the network's inference plan
        where it runs (:attr:`fused_network`): built once for all series of a call."""
        states = [state] if isinstance(state, torch.Tensor) else list(state)
        B, C, _ = states[0].shape
        device = states[0].device
        coeffs = []
        for j in range(len(taus) - 1):
            a, b, c = self.schedule.step_coefficients(self.sampler, [taus[j]] * B, [taus[j + 1]] * B, self.eta)
            coeffs.append(_on_device(device, a, b, c))
        with torch.profiler.record_function("diffusion.step_embedding"):
            steps = self.model.step_embedding(torch.tensor(taus[:-1], device=device))  # [k, E]
        groups = tile_groups([s.shape[2] for s in states], self.tile_size, self.model.receptive_radius,
                             self.tile_batch)
        plan = ChainPlan(coeffs, steps, groups, [ops.philox_counters(B * C * s.shape[2]) for s in states], None)
        if self.fused_network:
            with torch.profiler.record_function("diffusion.network_plan"):
                plan.network = DenoiserInference(self.model, states[0].dtype)
                plan.consts = [plan.network.step_constants(steps[j]) for j in range(len(coeffs))]
        return plan

    def run_chain(self, plan: ChainPlan, state: torch.Tensor | list[torch.Tensor], seed: int,
                  offset: int | list[int], observed: torch.Tensor | list | None,
                  mask: torch.Tensor | list | None) -> torch.Tensor | list[torch.Tensor]:
        """The sampling loop over one state ``[B, C, T]`` or a list of them (one per series, with their own noise
        offsets, observed series and masks; x̂_0 comes back in the same form). It reads no tensor value on the
        host and every shape in it is fixed by the lengths, so on CUDA it makes no host-device synchronisation and
        can be captured in a CUDA graph (one capture per set of lengths; replay with new data copied into the same
        input buffers)."""
        one = isinstance(state, torch.Tensor)
        states = [state] if one else list(state)
        offsets = [offset] if one else list(offset)
        if observed is not None and one:
            observed, mask = [observed], [mask]
        B, C, _ = states[0].shape
        network, steps = plan.network, plan.steps
        k = len(plan.coeffs)
        eps = [torch.empty_like(s) for s in states]
        autocast = self._autocast(states[0].device)
        for j in (self.progress(range(k)) if self.progress is not None else range(k)):
            with torch.profiler.record_function("diffusion.network"), autocast:
                for group in plan.groups:  # tiles batched into one call: [len(group) * B, C, tile + 2 halo]
                    if network is not None:  # the reads go into the plan's buffer as they are (no stacking)
                        x_in = [states[i][:, :, lo:hi] for i, (_, _, lo, hi) in group]
                        if observed is not None:
                            x_in = ConditionalDenoiser.inputs(torch.cat(x_in), gather(observed, group),
                                                              gather(mask, group))
                        out = network(x_in, plan.consts[j])
                    elif observed is None:
                        out = self.model(gather(states, group), step=steps[j:j + 1], backend=self.dispatch)
                    else:
                        out = self.model(gather(states, group), gather(observed, group), gather(mask, group),
                                         step=steps[j:j + 1], backend=self.dispatch)
                    out = out.reshape(len(group), B, C, -1)
                    for g, (i, (s, e, lo, _)) in enumerate(group):
                        eps[i][:, :, s:e] = out[g, :, :, s - lo:e - lo]
            with torch.profiler.record_function("diffusion.step"):
                for i, (st, n) in enumerate(zip(states, plan.counters)):
                    T = st.shape[2]
                    states[i] = ops.diffusion_step(st.view(B, C * T), eps[i].view(B, C * T), *plan.coeffs[j], seed,
                                                   offsets[i] + j * n, backend=self.dispatch).view(B, C, T)
        return states[0] if one else states

    def _autocast(self, device: torch.device):
        if self.matmul_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.matmul_dtype)


def target_masks(C: int, T: int, seed: int, kinds: tuple[str, ...], block: int, device: torch.device,
                 dispatch: Dispatch) -> torch.Tensor:
    """[M, C, T] float masks (1 = imputed): each kind and its complement, fixed by global position. ``"grid"``:
    alternating blocks of ``block`` timestamps, all channels (ImDiffusion); ``"random"``: each point with
    probability 1/2, from the Philox stream at (``seed``, 0)."""
    out = []
    for kind in kinds:
        if kind == "grid":
            m = ((torch.arange(T, device=device) // block) % 2).to(torch.float32).expand(C, T)
        else:
            m = (ops.randn((C, T), seed, 0, device=device, backend=dispatch) > 0).to(torch.float32)
        out += [m, 1.0 - m]
    return torch.stack(out)


def tile_groups(lengths: list[int], tile: int, halo: int, batch: int) -> list[list[Slot]]:
    """The :func:`tiles` of series of ``lengths``, as ``(series, tile)`` slots grouped ``batch`` per network call.
    A group holds reads of one length (every tile of a series longer than ``tile + 2·halo`` reads that; a shorter
    series is one tile of its own length), filled in series order across series boundaries; the groups not
    filled come last. For one series: its tiles in order, ``batch`` per group."""
    open_groups: dict[int, list[Slot]] = {}
    groups = []
    for i, T in enumerate(lengths):
        for t in tiles(T, tile, halo):
            group = open_groups.setdefault(t[3] - t[2], [])
            group.append((i, t))
            if len(group) == batch:
                groups.append(open_groups.pop(t[3] - t[2]))
    return groups + list(open_groups.values())


def tiles(T: int, tile: int, halo: int) -> list[Tile]:
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


def gather(xs: list[torch.Tensor], group: list[Slot]) -> torch.Tensor:
    """The reads of a group of slots of the series ``xs`` (``[B, C, T_i]`` each) stacked tile-major:
    ``[len(group) * B, C, hi - lo]``."""
    if len(group) == 1:
        i, (_, _, lo, hi) = group[0]
        return xs[i][:, :, lo:hi]
    return torch.cat([xs[i][:, :, lo:hi] for i, (_, _, lo, hi) in group], dim=0)


def _on_device(device: torch.device, *coeffs: torch.Tensor) -> list[torch.Tensor]:
    return [c.to(device=device, dtype=torch.float32) for c in coeffs]
