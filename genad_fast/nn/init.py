"""Networks built without the process-global RNG: on the meta device, then initialised from a generator.

``nn.Linear(...)`` draws its initial weights from the global torch RNG, which every thread of the process
shares: a detector that builds its networks that way makes other threads' random streams jump (and its own
weights depend on what they drew). :func:`build_module` instead constructs the network on the ``"meta"``
device (shapes only: no memory, no random draws), allocates it on the CPU and initialises every parameter
and buffer with :func:`init_module_` from an explicit ``torch.Generator``, then moves it to its device. The
same generator state gives the same network on every device, thread and process.

:func:`init_module_` draws exactly what PyTorch's default initialisation draws, from the given generator:

- ``nn.Linear`` and ``nn.Conv1d/2d/3d``: W ~ U(-b, b) by ``kaiming_uniform_(a=√5)``, i.e. b = 1/√fan_in,
  and the bias ~ U(-1/√fan_in, 1/√fan_in) (``reset_parameters`` of ``torch.nn.Linear`` / ``_ConvNd``);
- normalisation layers (batch, layer, group, instance norm): their deterministic reset (weight 1, bias 0,
  running mean 0, running variance 1);
- any other module with parameters or buffers of its own: its method ``init_parameters_(generator)``,
  which sets them all. A module with its own initialisation of its children (a zero-initialised last
  layer, Kaiming-normal convolutions) overrides them in that method too: modules are initialised children
  first, so a parent's choice wins.

A module with parameters or buffers of its own that is none of these is an error (never uninitialised memory).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

__all__ = ["build_module", "init_linear_", "init_module_", "is_meta"]

M = TypeVar("M", bound=nn.Module)

#: Layers whose ``reset_parameters()`` draws no random numbers (ones, zeros, running statistics).
_DETERMINISTIC = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def build_module(factory: Callable[[], M], generator: torch.Generator,
                 device: torch.device | str | None = None) -> M:
    """``factory()`` constructed on the meta device, allocated on the CPU, initialised from ``generator`` (a CPU
    generator) by :func:`init_module_`, then moved to ``device`` (default: stays on the CPU)."""
    if generator.device.type != "cpu":
        raise ValueError(f"build_module initialises on the CPU and needs a CPU generator, got {generator.device}")
    with torch.device("meta"):
        module = factory()
    _allocate_on_cpu(module)
    init_module_(module, generator)
    return module.to(device) if device is not None else module


def _allocate_on_cpu(module: nn.Module) -> None:
    """``module.to_empty(device="cpu")``, each tensor allocated by ``empty_strided`` with the meta tensor's sizes
    and strides (what ``to_empty``'s ``empty_like`` gives a dense tensor). Why not ``to_empty``: its ``empty_like``
    of a meta tensor runs torch's Python reference, whose first call imports sympy (torch.fx's symbolic shapes),
    ~0.3 s of a process's first fit."""
    module._apply(lambda t: torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device="cpu"))


@torch.no_grad()
def init_linear_(layer: nn.Linear | nn.modules.conv._ConvNd, generator: torch.Generator | None) -> None:
    """PyTorch's default initialisation of a linear or convolution layer, drawn from ``generator``:
    W by ``kaiming_uniform_(a=√5)`` (U(-1/√fan_in, 1/√fan_in)), bias ~ U(-1/√fan_in, 1/√fan_in)."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def is_meta(module: nn.Module) -> bool:
    """Whether ``module``'s parameters are on the meta device (built by :func:`build_module`, which initialises them
    from its generator afterwards). A constructor that initialises its own parameters skips that there: a random
    draw on a meta tensor goes through torch's Python references, whose first call imports torch._dynamo, ~1 s of a
    process's first fit."""
    return any(p.is_meta for p in module.parameters())


def _has_own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


@torch.no_grad()
def init_module_(module: nn.Module, generator: torch.Generator | None) -> nn.Module:
    """Initialise every parameter and buffer of ``module`` in place from ``generator`` (see the module docstring);
    children before their parent, in registration order, so the draws are the same on every run."""
    for child in module.children():
        init_module_(child, generator)
    own = getattr(module, "init_parameters_", None)
    if own is not None:
        own(generator)
    elif isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        init_linear_(module, generator)
    elif isinstance(module, _DETERMINISTIC):
        module.reset_parameters()
    elif _has_own_state(module):
        raise TypeError(f"init_module_ does not know how to initialise {type(module).__name__}: give it a method "
                        f"init_parameters_(generator) that sets its own parameters and buffers")
    return module
