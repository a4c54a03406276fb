"""An MLP as a list of layers: what the hand-written backward pass of the latent search runs on.

:func:`linear_stack` reads an ``nn.Sequential`` of ``Linear`` layers, each followed by at most one
``LeakyReLU``/``ReLU``, into ``(weight, bias, slope)`` triples; :func:`_mlp_layers` does it for the
generator and the critic's features f of :mod:`genad_fast.nn.gan.networks` (the MLP pair), and returns
None for any other networks, which the search then differentiates by autograd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genad_fast.nn.gan.networks import MLPCritic, MLPGenerator

__all__ = ["linear_stack"]


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor        # [out, in]
    bias: torch.Tensor | None   # [out]
    slope: float | None         # LeakyReLU slope after it (ReLU = 0.0), None for none


def linear_stack(module: nn.Module) -> list[_Layer] | None:
    """The layers of an ``nn.Sequential`` made only of ``Linear`` and ``LeakyReLU``/``ReLU``/``Identity``
    (nested ``Sequential`` allowed), each ``Linear`` followed by at most one activation; else None."""
    layers: list[_Layer] = []

    def walk(m: nn.Module) -> bool:
        for child in m.children() if isinstance(m, nn.Sequential) else [m]:
            if isinstance(child, nn.Sequential):
                if not walk(child):
                    return False
            elif isinstance(child, nn.Linear):
                layers.append(_Layer(child.weight, child.bias, None))
            elif isinstance(child, (nn.LeakyReLU, nn.ReLU)):
                if not layers or layers[-1].slope is not None:
                    return False
                slope = float(child.negative_slope) if isinstance(child, nn.LeakyReLU) else 0.0
                layers[-1] = _Layer(layers[-1].weight, layers[-1].bias, slope)
            elif isinstance(child, nn.Identity):
                continue
            else:
                return False
        return True

    if not isinstance(module, nn.Sequential) or not walk(module) or not layers:
        return None
    return layers


def _mlp_layers(generator: nn.Module, critic: nn.Module) -> tuple[list[_Layer], list[_Layer]] | None:
    """The layers of G and of f (the critic's body) if both are the MLPs of :mod:`genad_fast.nn.gan.networks`."""
    if not (isinstance(generator, MLPGenerator) and isinstance(critic, MLPCritic)):
        return None
    g, f = linear_stack(generator.net), linear_stack(critic.body)
    if g is None or f is None:
        return None
    return g, f
