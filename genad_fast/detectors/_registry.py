"""Detector registry: short names (``"flow"``) to detector classes, for the CLI and ``genad_fast.load``.

An entry is a class or a ``"module:QualName"`` string imported on first use, so listing the
built-in detectors does not import them (nor their networks).

This module is the bottom of the detectors' bookkeeping: ``base.py`` (save/load) uses ``_io``, which uses
the registry, so the registry must not import ``base.py``. It recognises detector classes by the import path
of ``BaseDetector`` in their MRO (:func:`is_detector_class`), which is exact: that path names one class.
"""
from __future__ import annotations

import importlib
import re

_REGISTRY: dict[str, type | str] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
#: The class every detector derives from, as :func:`_class_path` spells it.
BASE_PATH = "genad_fast.detectors.base:BaseDetector"


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def is_base_detector(cls: type) -> bool:
    """``cls`` is ``BaseDetector`` itself."""
    return isinstance(cls, type) and _class_path(cls) == BASE_PATH


def is_detector_class(obj: object) -> bool:
    """``obj`` is ``BaseDetector`` or a subclass (``issubclass`` without importing base.py)."""
    return isinstance(obj, type) and any(_class_path(c) == BASE_PATH for c in obj.__mro__)


def register_detector(name: str, cls: type | str, *, replace: bool = False) -> None:
    """Register ``cls`` (a BaseDetector subclass, or ``"module:QualName"``) under ``name``.

    Names are lower case (letters, digits, ``-``, ``_``). Registering a taken name raises
    unless ``replace=True``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"detector name must be lower case letters, digits, '-' or '_', got {name!r}")
    if isinstance(cls, str):
        if ":" not in cls:
            raise ValueError(f"a lazy detector entry must be 'module:QualName', got {cls!r}")
    elif not is_detector_class(cls):
        raise TypeError(f"register_detector({name!r}, ...) needs a BaseDetector subclass, got {cls!r}")
    old = _REGISTRY.get(name)
    # A module registering its own class under the name a lazy entry points at is the same entry.
    same = old is cls or (isinstance(old, str) and not isinstance(cls, str) and old == _class_path(cls))
    if old is not None and not replace and not same:
        raise ValueError(f"detector name {name!r} is already registered (to {old!r}); pass replace=True")
    _REGISTRY[name] = cls


def unregister_detector(name: str) -> None:
    """Remove ``name`` from the registry (KeyError if absent)."""
    try:
        del _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no detector registered as {name!r}") from None


def detector_names() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def get_detector(name: str) -> type:
    """The class registered as ``name``; importing it now if it was registered lazily."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        known = ", ".join(detector_names()) or "none"
        raise ValueError(f"unknown detector {name!r}; registered detectors: {known}")
    entry = _REGISTRY[key]
    if isinstance(entry, str):
        module_name, _, qualname = entry.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"detector {key!r} is registered as {entry} but cannot be imported: "
                             f"{type(exc).__name__}: {exc}") from exc
        if not is_detector_class(obj):
            raise TypeError(f"detector {key!r} ({entry}) is not a BaseDetector subclass")
        _REGISTRY[key] = obj
        entry = obj
    return entry


def registered_name(cls: type) -> str | None:
    """The name ``cls`` is registered under, or None (lazy entries match by import path, without importing)."""
    path = _class_path(cls)
    for name, entry in _REGISTRY.items():
        if entry is cls or (isinstance(entry, str) and entry == path):
            return name
    return None
