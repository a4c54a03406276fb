"""Old import path of the GAN training code, kept for code that imports it: WGAN-GP now lives in
:mod:`genad_fast.nn.gan.training`, f-AnoGAN's izi_f encoder in :mod:`genad_fast.nn.gan.encoder`."""
from genad_fast.nn.gan.encoder import izif_loss, izif_terms
from genad_fast.nn.gan.networks import freeze
from genad_fast.nn.gan.training import GANConfig, GANHistory, gradient_penalty, train_wgan_gp

__all__ = ["GANConfig", "GANHistory", "freeze", "gradient_penalty", "izif_loss", "izif_terms", "train_wgan_gp"]
