"""AnoGAN (Schlegl et al., IPMI 2017) and f-AnoGAN (Schlegl et al., Medical Image Analysis 2019), by layer:

- :mod:`~genad_fast.nn.gan.networks`: generators, critics (with their features f(x)) and the izi_f encoder;
- :mod:`~genad_fast.nn.gan.training`: WGAN-GP training of the generator and the critic;
- :mod:`~genad_fast.nn.gan.encoder`: f-AnoGAN's izi_f encoder: its loss, its training, its one-pass score;
- :mod:`~genad_fast.nn.gan.search`: AnoGAN's batched latent search (the loss, the inference programs, the loop).

The networks are re-exported here, so ``from genad_fast.nn.gan import MLPGenerator`` works as it did when
this package was one module.
"""
from genad_fast.nn.gan.networks import (
    ARCHITECTURES,
    NEGATIVE_SLOPE,
    ConvCritic,
    ConvGenerator,
    MLPCritic,
    MLPGenerator,
    make_critic,
    make_generator,
)

__all__ = ["ARCHITECTURES", "ConvCritic", "ConvGenerator", "MLPCritic", "MLPGenerator", "NEGATIVE_SLOPE",
           "make_critic", "make_generator"]
