"""Old import path of the denoisers: they live in :mod:`genad_fast.nn.diffusion.denoiser`."""
from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser, sinusoidal_embedding

__all__ = ["ConditionalDenoiser", "Denoiser", "sinusoidal_embedding"]
