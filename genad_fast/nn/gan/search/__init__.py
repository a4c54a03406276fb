"""AnoGAN's latent search (Schlegl et al., IPMI 2017, Sec. 2.2), batched: every sample optimises its own z at once.

By level, from the objective down to the loop:

- :mod:`~genad_fast.nn.gan.search.loss`: L(z) = (1 - lam) sum |x - G(z)| + lam sum |f(x) - f(G(z))|, the
  result (:class:`SearchResult`) and the final pass that reports the loss at each sample's best code;
- :mod:`~genad_fast.nn.gan.search.layers`: an MLP read as a list of (weight, bias, slope) layers;
- :mod:`~genad_fast.nn.gan.search.program`: the inference programs, loss and dL/dz per iteration (backward
  written out for the MLP pair, autograd for any other networks);
- :mod:`~genad_fast.nn.gan.search.linear_act`: the MLP program as ``linear_act`` calls on the CPU kernels;
- :mod:`~genad_fast.nn.gan.search.loop`: :func:`latent_search`, the batched Adam loop with early stopping
  and compaction of the working set;
- :mod:`~genad_fast.nn.gan.search.graphs`: the loop's segments as CUDA graphs.
"""
from genad_fast.nn.gan.search.layers import linear_stack
from genad_fast.nn.gan.search.loop import latent_search
from genad_fast.nn.gan.search.loss import SearchResult

__all__ = ["SearchResult", "latent_search", "linear_stack"]
