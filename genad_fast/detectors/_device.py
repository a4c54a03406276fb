"""Where a detector runs: ``device="auto"|"cpu"|"cuda[:i]"`` to a ``torch.device``.

Its own module, below both :mod:`genad_fast.detectors.base` (fit) and :mod:`genad_fast.detectors._io`
(``load(map_location=...)``): model files are read without importing the estimator base class.
"""
from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> ``cuda`` if a GPU is visible else ``cpu``; ``"cpu"``; ``"cuda"``/``"cuda:i"``.

    Asking for CUDA on a machine without a visible GPU is an error, never a silent CPU run.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from exc
    if d.type == "cpu":
        return torch.device("cpu")
    if d.type != "cuda":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but no CUDA device is visible "
                         "(torch.cuda.is_available() is False); use device='cpu' or 'auto'")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return d
