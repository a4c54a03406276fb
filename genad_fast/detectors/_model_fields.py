"""The "fitted" section of a model file: the base's fitted attributes, each with its check on loading.

:data:`FITTED_FIELDS` lists them in load order (a check may use the fields before it); :func:`dump_fitted`
writes the section, :func:`load_fitted` reads it back, raising :class:`InvalidField` (the loader adds the
file's path). :func:`first_non_finite` finds a NaN/inf anywhere in a stored state; :func:`describe` names a
stored value in an error message without printing a whole tensor.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from genad_fast.series import Normalizer


class InvalidField(Exception):
    """A field of a model file fails its check; the loader adds the file's path (ModelFileError)."""


def describe(value: Any) -> str:
    """A short description of a stored value for an error message (never a whole tensor)."""
    if isinstance(value, torch.Tensor):
        return f"a Tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    text = repr(value)
    return f"a {type(value).__name__} ({text if len(text) <= 60 else text[:57] + '...'})"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_float(value: Any, where: str, loaded: dict) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidField(f"{where} must be a number, got {describe(value)}")
    if not math.isfinite(value):
        raise InvalidField(f"{where} must be finite, got {value!r}")
    return float(value)


def _positive_int(value: Any, where: str, loaded: dict) -> int:
    if not _is_int(value) or value < 1:
        raise InvalidField(f"{where} must be a positive int, got {describe(value)}")
    return int(value)


def _window(value: Any, where: str, loaded: dict) -> int | None:
    """None (tabular) or the window in use, a positive int (``window="auto"`` resolved at fit)."""
    return None if value is None else _positive_int(value, where, loaded)


def _int(value: Any, where: str, loaded: dict) -> int:
    if not _is_int(value):
        raise InvalidField(f"{where} must be an int, got {describe(value)}")
    return int(value)


def _finite_vector(value: Any, where: str, length: int | None) -> torch.Tensor:
    """``value`` checked to be a finite floating 1-D tensor (of ``length`` if given, else non-empty)."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise InvalidField(f"{where} must be a floating tensor, got {describe(value)}")
    if value.dim() != 1 or (value.shape[0] != length if length is not None else value.shape[0] == 0):
        want = f"[{length}]" if length is not None else "1-D and non-empty"
        raise InvalidField(f"{where} must have shape {want}, got {tuple(value.shape)}")
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        raise InvalidField(f"{where} holds {int(bad.sum())} NaN/inf value(s) (the first at index "
                       f"{int(bad.int().argmax())}); a finite value is required")
    return value


def _scores(value: Any, where: str, loaded: dict) -> np.ndarray:
    return _finite_vector(value, where, None).to("cpu", torch.float64).numpy()


def _feature_names(value: Any, where: str, loaded: dict) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidField(f"{where} must be None or a list of str, got {describe(value)}")
    if len(value) != loaded["n_features_in_"]:
        raise InvalidField(f"{where} has {len(value)} names for n_features_in_={loaded['n_features_in_']} features")
    return list(value)


def _normalizer(value: Any, where: str, loaded: dict) -> Normalizer | None:
    """None, or ``{"mean", "scale"}``: finite ``[n_features_in_]`` tensors, scale > 0."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"mean", "scale"}:
        raise InvalidField(f"{where} must be None or a dict of 'mean' and 'scale', got {describe(value)}")
    n = loaded["n_features_in_"]
    mean = _finite_vector(value["mean"], f"{where}['mean']", n)
    scale = _finite_vector(value["scale"], f"{where}['scale']", n)
    if bool((scale <= 0).any()):
        raise InvalidField(f"{where}['scale'] must be > 0, got {float(scale.min())} at index {int(scale.argmin())}")
    return Normalizer.from_state_dict({"mean": mean, "scale": scale})


def _device_name(value: Any, where: str, loaded: dict) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"{where} must be a device name (str), got {describe(value)}")
    try:
        torch.device(value)
    except RuntimeError as exc:
        raise InvalidField(f"{where} is not a device name: {value!r}") from exc
    return value


def _dump_normalizer(norm: Normalizer | None) -> dict | None:
    return norm.state_dict() if norm is not None else None


@dataclass(frozen=True)
class _Field:
    """One entry of the file's "fitted" section: the detector attribute it stores and how it is checked.

    ``load(file value, "fitted['key']", fields loaded so far by key) -> attribute value`` raises
    :class:`InvalidField`; fields are loaded in table order, so a check may use earlier ones.
    ``restore=False``: saved and checked, but not set on the loaded detector (the device it loads on
    is ``map_location``). ``required=False``: may be absent (files older than the field); the
    attribute is then None, and it is saved only by detectors that have it.
    """

    key: str
    attr: str
    load: Callable[[Any, str, dict], Any]
    dump: Callable[[Any], Any]
    required: bool = True
    restore: bool = True


#: The "fitted" section, in load order. Adding a fitted attribute to the base is one line here.
FITTED_FIELDS: tuple[_Field, ...] = (
    _Field("threshold_", "threshold_", _finite_float, float),
    _Field("decision_scores_", "decision_scores_", _scores,
           lambda s: torch.as_tensor(np.asarray(s, dtype=np.float64))),
    _Field("n_features_in_", "n_features_in_", _positive_int, int),
    _Field("feature_names_in_", "feature_names_in_", _feature_names, lambda n: list(n) if n is not None else None),
    _Field("seed_", "seed_", _int, int),
    _Field("normalizer", "normalizer_", _normalizer, _dump_normalizer),
    _Field("input_stats", "input_stats_", _normalizer, _dump_normalizer, required=False),
    _Field("fitted_device", "device_", _device_name, str, restore=False),
    # Files written before window="auto" lack it (their window is the int parameter): None then.
    _Field("window_", "window_", _window, lambda w: None if w is None else int(w), required=False),
)


def dump_fitted(det) -> dict:
    # getattr's None: feature_names_in_ is absent after a fit on an array (scikit-learn); the file holds None
    return {f.key: f.dump(getattr(det, f.attr, None)) for f in FITTED_FIELDS if f.required or hasattr(det, f.attr)}


def load_fitted(fitted: dict) -> dict[str, Any]:
    """Checked values of the "fitted" section by attribute name (only those to restore); raises InvalidField."""
    known = {f.key for f in FITTED_FIELDS}
    unknown = sorted(str(k) for k in fitted if k not in known)
    if unknown:
        raise InvalidField(f"fitted holds unknown field(s) {', '.join(unknown)}")
    loaded: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for f in FITTED_FIELDS:
        if f.key not in fitted:
            if f.required:
                raise InvalidField(f"fitted lacks the field {f.key!r}")
            value = None
        else:
            value = f.load(fitted[f.key], f"fitted[{f.key!r}]", loaded)
        loaded[f.key] = value
        if f.restore:
            attrs[f.attr] = value
    return attrs


def first_non_finite(value: Any, where: str) -> str | None:
    """Key path of the first floating tensor or float in ``value`` holding NaN/inf, else None."""
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            return f"{where} ({describe(value)})"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} (= {value!r})"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:  # ints, strings, None, dtypes: nothing to check
        return None
    for key, item in items:
        found = first_non_finite(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None
