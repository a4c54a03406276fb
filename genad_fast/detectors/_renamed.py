"""Renamed constructor parameters: the old spelling keeps working, with a DeprecationWarning.

``score=`` (flow, PCA and VAE detectors: which anomaly score to compute) became ``anomaly_score=``: an
attribute called ``score`` hides scikit-learn's ``score(X, y)`` method, so ``GridSearchCV`` without
``scoring=`` (and any tool that calls ``est.score``) tripped over a string. The old name is accepted

- by the constructors (``FlowDetector(score="typicality")``), warning;
- by the CLI (``--param score=typicality``), warning;
- in model files written before the rename (their ``params`` hold ``"score"``), silently: the file is
  the user's data, not their code, and loading it must not nag about something only re-saving can change.
"""
from __future__ import annotations

import warnings
from typing import Any

__all__ = ["RENAMED_PARAMS", "canonical_params", "take_renamed"]

#: Old constructor parameter name -> new name, for every detector whose parameters hold the new one.
RENAMED_PARAMS: dict[str, str] = {"score": "anomaly_score"}

_WHY = {"score": "it hid scikit-learn's score() method"}


def _message(owner: str, old: str, new: str) -> str:
    return (f"{owner}: the parameter {old!r} is deprecated and will be removed; use {new!r} "
            f"({_WHY.get(old, 'renamed')})")


def take_renamed(kwargs: dict[str, Any], old: str, new: str, value: Any, default: Any, owner: str) -> Any:
    """The value of ``new`` for a constructor that also got ``**kwargs``: ``kwargs[old]`` (popped, with a
    DeprecationWarning) when the caller used the old name, else ``value``.

    Both names with different values is a TypeError, as Python says for a repeated keyword argument; ``new``
    left at its ``default`` counts as not given (a real default keeps ``get_params``/``clone`` exact).
    """
    if old not in kwargs:
        return value
    old_value = kwargs.pop(old)
    warnings.warn(_message(owner, old, new), DeprecationWarning, stacklevel=3)
    if value != default and value != old_value:
        raise TypeError(f"{owner} got both {old}={old_value!r} and {new}={value!r}; give only {new}")
    return old_value


def canonical_params(params: dict[str, Any], valid: set[str] | list[str], owner: str, *,
                     warn: bool = True) -> dict[str, Any]:
    """``params`` with every old name in :data:`RENAMED_PARAMS` replaced by its new one where ``valid`` (the
    class's parameter names) holds the new name and not the old. ``warn``: a DeprecationWarning per old name
    (the CLI); model files pass False. Both names present is a ValueError."""
    valid = set(valid)
    out = dict(params)
    for old, new in RENAMED_PARAMS.items():
        if old not in out or old in valid or new not in valid:
            continue
        if new in out:
            raise ValueError(f"{owner}: both {old!r} (the deprecated name) and {new!r} are given; keep {new!r}")
        if warn:
            warnings.warn(_message(owner, old, new), DeprecationWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out
