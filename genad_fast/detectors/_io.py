"""Model files: a fitted detector as plain data, written with ``torch.save``, read with ``weights_only=True``.

The file holds one dict (format version 1)::

    {"format": "genad_fast.detector", "format_version": 1,
     "library_version": "0.1.0", "torch_version": "2.14.1",
     "detector": "flow" or None,             # registry name, for genad_fast.load
     "class": "genad_fast.detectors.flow:FlowDetector",
     "params": {...},                        # get_params(deep=False); a threshold object as
                                             # {"threshold_class": name, "params": {...}}
     "fitted": {"threshold_": float, "decision_scores_": float64 tensor, "n_features_in_": int,
                "feature_names_in_": [str] or None, "seed_": int, "normalizer": {"mean", "scale"} or None,
                "fitted_device": "cuda:0"},
     "state": {...}}                         # the detector's _get_state(): weights and the like

Only tensors, numbers, strings, None, lists, tuples, dicts, dtypes and devices go in, so
``torch.load(weights_only=True)`` reads it without unpickling any object. Tensors are stored on
the CPU, so a model trained on a GPU loads anywhere; ``map_location`` moves them on loading.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from typing import Any

import numpy as np
import torch

from genad_fast._version import __version__
from genad_fast.detectors._registry import _class_path, get_detector, registered_name, _REGISTRY
from genad_fast.series import Normalizer

FORMAT = "genad_fast.detector"
FORMAT_VERSION = 1
_PLAIN = (type(None), torch.dtype, torch.device)


class ModelFileError(ValueError):
    """A model file cannot be used: corrupt, truncated, from a newer format, or of another detector."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"model file {path!r}: {problem}")
        self.path = path


def _plain(value: Any, where: str) -> Any:
    """``value`` as weights_only-loadable data; TypeError naming ``where`` otherwise."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.untyped_storage().nbytes() > t.numel() * t.element_size():
            t = t.clone()  # a view would drag its whole base storage into the file
        return t
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: numpy array of dtype {value.dtype} cannot be stored")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, bool):
        return bool(value)
    for plain in (int, float, str):  # subclasses (TorchVersion, IntEnum) would be pickled as their class
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} must be a str or int")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"{where} is a {type(value).__name__}, which a model file cannot hold (only tensors, "
                    f"numbers, strings, None, lists, tuples and dicts; use module.state_dict() for weights)")


def save_detector(det, path: str | os.PathLike) -> None:
    """Write ``det`` (fitted) to ``path`` atomically (a temporary file renamed into place)."""
    det._check_fitted()
    path = os.fspath(path)
    from genad_fast.thresholds import BaseThreshold, threshold_to_spec

    params = {}
    for key, value in det.get_params(deep=False).items():
        if isinstance(value, torch.device):
            value = str(value)
        if isinstance(value, BaseThreshold):  # a threshold rule object: its class name and parameters
            value = threshold_to_spec(value)
        params[key] = _plain(value, f"parameter {key!r}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "detector": registered_name(type(det)),
        "class": _class_path(type(det)),
        "params": params,
        "fitted": _plain({
            "threshold_": float(det.threshold_),
            "decision_scores_": torch.as_tensor(np.asarray(det.decision_scores_, dtype=np.float64)),
            "n_features_in_": int(det.n_features_in_),
            "feature_names_in_": list(det.feature_names_in_) if det.feature_names_in_ is not None else None,
            "seed_": int(det.seed_),
            "normalizer": det.normalizer_.state_dict() if det.normalizer_ is not None else None,
            "fitted_device": str(det.device_),
        }, "fitted"),
        "state": _plain(det._get_state(), f"{type(det).__name__}._get_state()"),
    }
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".genad_fast-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_payload(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict:
    """The checked dict of a model file (format and version verified), tensors on ``map_location``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model file {path!r} is a directory")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory sits at the end
        raise ModelFileError(path, "cannot be read: truncated, corrupt or not a model file (no complete zip "
                                   "archive, which torch.save writes)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        marker = "WeightsUnpickler error:"
        why = text.split(marker, 1)[1].strip().split(". ")[0] if marker in text else text.splitlines()[0]
        raise ModelFileError(path, f"holds pickled Python objects or is not a torch file; genad_fast reads "
                                   f"model files with weights_only=True ({why})") from exc
    except Exception as exc:  # zip reader errors (truncation), EOFError, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(path, f"cannot be read: truncated, corrupt or not a model file ({first})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(path, "is not a genad_fast model file (no genad_fast.detector format marker)")
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(path, f"has an unknown format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(path, f"was written in model format version {version} by genad_fast "
                                   f"{payload.get('library_version', '?')}; this genad_fast ({__version__}) reads "
                                   f"versions up to {FORMAT_VERSION}: upgrade genad_fast")
    missing = [k for k in ("class", "params", "fitted", "state") if k not in payload]
    if missing:
        raise ModelFileError(path, f"lacks {', '.join(missing)}: truncated or not written by genad_fast")
    return payload


def _resolve_class(path: str, payload: dict, expected: type | None) -> type:
    from genad_fast.detectors.base import BaseDetector

    stored_name, stored_class = payload.get("detector"), payload["class"]
    label = f"a detector of class {stored_class.rpartition(':')[2]}" + \
        (f" (registered as {stored_name!r})" if stored_name else "")
    if expected is not None and expected is not BaseDetector and _class_path(expected) == stored_class:
        return expected
    candidate = None
    if stored_name is not None and stored_name in _REGISTRY:
        candidate = get_detector(stored_name)
    else:  # registered under another name, or the class was imported and registered since
        for name, entry in _REGISTRY.items():
            if entry == stored_class or (isinstance(entry, type) and _class_path(entry) == stored_class):
                candidate = get_detector(name)
                break
    if expected is not None and expected is not BaseDetector:
        if candidate is None or not issubclass(candidate, expected):
            raise ModelFileError(path, f"holds {label}, not a {expected.__name__}; load it with "
                                       f"genad_fast.load() or that class's load()")
        return candidate
    if candidate is None:
        raise ModelFileError(path, f"holds {label}, which is not registered here; import the module that "
                                   f"registers it, or call that class's load()")
    return candidate


def load_detector(path: str | os.PathLike, map_location: torch.device | str = "cpu", expected: type | None = None):
    """Rebuild the detector stored at ``path`` on ``map_location`` ("cpu", "cuda", "auto", a torch.device)."""
    from genad_fast.detectors.base import resolve_device

    device = resolve_device(map_location)
    path = os.fspath(path)
    payload = read_payload(path, map_location=device)
    cls = _resolve_class(path, payload, expected)
    from genad_fast.thresholds import threshold_from_spec

    try:
        params = {k: threshold_from_spec(v) for k, v in payload["params"].items()}
        det = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"its parameters do not fit {cls.__name__}: {exc}") from exc
    fitted = payload["fitted"]
    try:
        det.device_ = device
        det.threshold_ = float(fitted["threshold_"])
        det.decision_scores_ = fitted["decision_scores_"].to("cpu", torch.float64).numpy()
        det.n_features_in_ = int(fitted["n_features_in_"])
        names = fitted["feature_names_in_"]
        det.feature_names_in_ = list(names) if names is not None else None
        det.seed_ = int(fitted["seed_"])
        norm = fitted["normalizer"]
        det.normalizer_ = Normalizer.from_state_dict(norm) if norm is not None else None
        det._set_state(payload["state"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        for attr in ("threshold_", "decision_scores_"):
            det.__dict__.pop(attr, None)
        raise ModelFileError(path, f"cannot restore the {cls.__name__}: {type(exc).__name__}: {exc}") from exc
    return det


def load(path: str | os.PathLike, map_location: torch.device | str = "cpu"):
    """Load any registered detector from a model file written by ``det.save(path)``.

    The file names its detector; the class comes from the registry
    (:func:`genad_fast.detectors.register_detector`). Tensors go to ``map_location``.
    """
    return load_detector(path, map_location=map_location, expected=None)
