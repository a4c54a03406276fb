"""Normalizing flows (RealNVP / Glow) for vectors and windows: the modules (:mod:`.realnvp`) and their
inference plan (:mod:`.plan`), which folds the layers once per scoring call and streams rows in chunks.

``genad_fast.nn.flow`` keeps exporting the modules, as when it was one file.
"""
from genad_fast.nn.flow.realnvp import (LOG_2PI, ActNorm, AffineCoupling, LULinear, Permutation, RealNVP,
                                        ResidualMLP)

__all__ = ["LOG_2PI", "ActNorm", "AffineCoupling", "LULinear", "Permutation", "RealNVP", "ResidualMLP"]
