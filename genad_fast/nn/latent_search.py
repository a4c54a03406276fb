"""Old import path of AnoGAN's latent search, kept for code that imports it: the search now lives in
:mod:`genad_fast.nn.gan.search` (objective, inference programs and loop, one module each)."""
from genad_fast.nn.gan.search import SearchResult, latent_search, linear_stack

__all__ = ["SearchResult", "latent_search", "linear_stack"]
