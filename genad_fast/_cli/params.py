"""Detector parameters from the command line: ``--param key=value`` parsed, named and checked before any data.

A detector checks its parameters at the start of ``fit``; the CLI runs those same checks (and resolves the
device and backend) right after constructing it, so a bad ``--param`` fails before the data is read.
"""
from __future__ import annotations

import ast
from typing import Any

from genad_fast._cli.checks import CLIError


def parse_value(text: str) -> Any:
    """``--param`` values: Python literals (1, 0.5, None, [1, 2], 'x'), true/false/none, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_param_names(cls: type, keys, detector: str) -> None:
    """Every name in ``keys`` is a constructor parameter of ``cls`` (the detector registered as ``detector``), or
    a renamed one's old spelling (``score``): the constructor still takes it, with a DeprecationWarning."""
    from genad_fast.detectors._renamed import RENAMED_PARAMS

    valid = cls._get_param_names()
    for key in keys:
        if key not in valid and RENAMED_PARAMS.get(key) not in valid:
            raise CLIError(f"unknown parameter {key!r} for detector {detector!r} (parameters: {', '.join(valid)})")


def parse_params(items: list[str], cls: type, detector: str) -> dict[str, Any]:
    """``--param key=value`` items as constructor parameters of ``cls``; unknown or repeated names are errors."""
    params: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"--param {item!r}: expected key=value")
        check_param_names(cls, [key], detector)
        if key in params:
            raise CLIError(f"parameter {key!r} given twice")
        params[key] = parse_value(value)
    return params


# ---------------------------------------------------------------------------------------------- detectors
#: The parameter checks a detector runs at the start of fit, by the hook names the detectors use
#: (BaseDetector has no public "check parameters" entry point): the base's, each class's own, AnoGAN's search.
_PARAM_CHECKS = ("_check_base_params", "_check_params", "_check_search_params")


def check_detector_params(det) -> None:
    """Run every parameter check ``det.fit`` would run before touching data: its own checks, then the device
    and backend (an explicitly named backend or device that cannot run here). Raises what the checks raise."""
    from genad_fast import _backend
    from genad_fast.detectors import resolve_device

    for hook in _PARAM_CHECKS:
        check = getattr(det, hook, None)
        if callable(check):
            check()
    _backend.resolve(det.backend, resolve_device(det.device))


def build_detector(cls: type, params: dict[str, Any], name: str):
    """``cls(**params)`` with its parameters checked now, so a bad ``--param`` fails before the data is read."""
    from genad_fast._backend import BackendUnavailableError

    try:
        det = cls(**params)
        check_detector_params(det)
    except (TypeError, ValueError, BackendUnavailableError) as exc:
        raise CLIError(f"detector {name!r}: {exc}") from exc
    return det
