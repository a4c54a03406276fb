"""Old import path of the noise schedules: they live in :mod:`genad_fast.nn.diffusion.schedules`."""
from genad_fast.nn.diffusion.schedules import SAMPLERS, SCHEDULES, NoiseSchedule, make_betas

__all__ = ["SAMPLERS", "SCHEDULES", "NoiseSchedule", "make_betas"]
