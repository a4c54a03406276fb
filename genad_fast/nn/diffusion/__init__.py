"""Denoising diffusion models of multivariate series: the denoisers (:mod:`.denoiser`), noise schedules and
step coefficients (:mod:`.schedules`), training objectives (:mod:`.losses`), the denoiser's inference plan
(:mod:`.plan`) and the tiled reverse process that scores a whole series (:mod:`.sampler`)."""
from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser, sinusoidal_embedding
from genad_fast.nn.diffusion.schedules import SAMPLERS, SCHEDULES, NoiseSchedule, make_betas

__all__ = ["SAMPLERS", "SCHEDULES", "ConditionalDenoiser", "Denoiser", "NoiseSchedule", "make_betas",
           "sinusoidal_embedding"]
