"""Model files: a fitted detector as plain data, written with ``torch.save``, read with ``weights_only=True``.

The file holds one dict (format version 2)::

    {"format": "genad_fast.detector", "format_version": 2,
     "library_version": "0.1.0", "torch_version": "2.14.1",
     "detector": "flow" or None,             # registry name, for genad_fast.load
     "class": "genad_fast.detectors.flow:FlowDetector",
     "params": {...},                        # get_params(deep=False); a threshold object as
                                             # {"threshold_class": name, "params": {...}}
     "fitted": {...},                        # the base's fitted attributes: see FITTED_FIELDS
     "state": {...},                         # the detector's _get_state(): weights and the like
     "checksum": "sha256:<64 hex digits>"}   # over everything above (payload_checksum)

Only tensors, numbers, strings, None, lists, tuples, dicts, dtypes and devices go in, so
``torch.load(weights_only=True)`` reads it without unpickling any object. Tensors are stored on
the CPU, so a model trained on a GPU loads anywhere; ``map_location`` moves them on loading.

Loading trusts nothing in the file: the checksum catches bytes changed after writing (torch's zip
reader checks no CRC, so a flipped bit in a tensor would otherwise load silently); every header and
fitted field is checked for type, shape and finiteness; the detector's own ``_set_state`` errors are
reported as :class:`ModelFileError`; and a last pass requires every floating value of the restored
state to be finite (a NaN weight or reference row would make every score NaN, and ``predict`` would
call everything normal). Version 1 files (no checksum) still load, with every other check.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from genad_fast._version import __version__
from genad_fast.detectors._device import resolve_device
from genad_fast.detectors._registry import (_REGISTRY, _class_path, get_detector, is_base_detector,
                                            registered_name)
from genad_fast.series import Normalizer

FORMAT = "genad_fast.detector"
FORMAT_VERSION = 2
#: Versions this module reads; version 1 files predate the checksum.
_FIRST_CHECKSUM_VERSION = 2
_CHECKSUM_PREFIX = "sha256:"
_PLAIN = (type(None), torch.dtype, torch.device)
#: Errors of a detector's _set_state that mean "this state does not fit" (NotImplementedError, a
#: RuntimeError, is a programming error of the class and propagates as it is).
_STATE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError)


class ModelFileError(ValueError):
    """A model file cannot be used: corrupt, truncated, from a newer format, or of another detector."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"model file {path!r}: {problem}")
        self.path = path


class _Invalid(Exception):
    """A field of a model file fails its check; the loader adds the file's path (ModelFileError)."""


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


# ------------------------------------------------------------------ checksum
def payload_checksum(payload: dict) -> str:
    """``"sha256:<hex>"`` over every field of ``payload`` except ``"checksum"``.

    The traversal is fixed: dict items sorted by key (type name, then text), lists and tuples in
    order, each value tagged with its type (and lengths prefixed), tensors as dtype, shape and
    their bytes in C order. So the digest depends on the data only, not on how ``torch.save``
    laid the archive out, and a tensor cannot pass for a list of the same numbers.
    """
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in payload.items() if k != "checksum"}, "payload")
    return _CHECKSUM_PREFIX + h.hexdigest()


def seal(payload: dict) -> dict:
    """Set ``payload["checksum"]`` to :func:`payload_checksum` (in place); returns ``payload``."""
    payload["checksum"] = payload_checksum(payload)
    return payload


def _chunk(h: Any, tag: bytes, data: bytes | np.ndarray) -> None:
    """``tag``, the length of ``data`` (bytes, or a 1-D uint8 array hashed without a copy), then ``data``."""
    h.update(tag + len(data).to_bytes(8, "little"))
    h.update(data)


def _digest(h: Any, value: Any, where: str) -> None:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise TypeError(f"{where}: a {value.layout} tensor cannot be checksummed; store it dense")
        t = value.detach().cpu().contiguous().reshape(-1)
        _chunk(h, b"T", f"{t.dtype}|{tuple(value.shape)}".encode())
        _chunk(h, b"B", t.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        _chunk(h, b"D", str(len(value)).encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _digest(h, key, where)
            _digest(h, value[key], f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        _chunk(h, b"L" if isinstance(value, list) else b"U", str(len(value)).encode())
        for i, item in enumerate(value):
            _digest(h, item, f"{where}[{i}]")
    elif isinstance(value, (bool, int, float, str) + _PLAIN):
        _chunk(h, b"S", f"{type(value).__name__}:{value!r}".encode())  # repr(float) round-trips exactly
    else:
        raise TypeError(f"{where} is a {type(value).__name__}, which a model file cannot hold")


def _check_checksum(path: str, payload: dict) -> None:
    stored = payload.get("checksum")
    if stored is None:
        raise ModelFileError(path, f"lacks its checksum, which format version {payload['format_version']} "
                                   f"files carry: truncated or not written by genad_fast")
    if not isinstance(stored, str) or not stored.startswith(_CHECKSUM_PREFIX):
        raise ModelFileError(path, f"its checksum must be a string 'sha256:<hex>', got {_describe(stored)}")
    try:
        computed = payload_checksum(payload)
    except TypeError as exc:
        raise ModelFileError(path, f"holds data a model file cannot hold: {exc}") from exc
    if computed != stored:
        raise ModelFileError(path, f"checksum mismatch (stored {stored[:23]}..., computed {computed[:23]}...): "
                                   f"the file was changed or damaged after it was written")


# ------------------------------------------------------------------ field checks
def _describe(value: Any) -> str:
    """A short description of a stored value for an error message (never a whole tensor)."""
    if isinstance(value, torch.Tensor):
        return f"a Tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    text = repr(value)
    return f"a {type(value).__name__} ({text if len(text) <= 60 else text[:57] + '...'})"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_float(value: Any, where: str, loaded: dict) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{where} must be a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise _Invalid(f"{where} must be finite, got {value!r}")
    return float(value)


def _positive_int(value: Any, where: str, loaded: dict) -> int:
    if not _is_int(value) or value < 1:
        raise _Invalid(f"{where} must be a positive int, got {_describe(value)}")
    return int(value)


def _int(value: Any, where: str, loaded: dict) -> int:
    if not _is_int(value):
        raise _Invalid(f"{where} must be an int, got {_describe(value)}")
    return int(value)


def _finite_vector(value: Any, where: str, length: int | None) -> torch.Tensor:
    """``value`` checked to be a finite floating 1-D tensor (of ``length`` if given, else non-empty)."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise _Invalid(f"{where} must be a floating tensor, got {_describe(value)}")
    if value.dim() != 1 or (value.shape[0] != length if length is not None else value.shape[0] == 0):
        want = f"[{length}]" if length is not None else "1-D and non-empty"
        raise _Invalid(f"{where} must have shape {want}, got {tuple(value.shape)}")
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        raise _Invalid(f"{where} holds {int(bad.sum())} NaN/inf value(s) (the first at index "
                       f"{int(bad.int().argmax())}); a finite value is required")
    return value


def _scores(value: Any, where: str, loaded: dict) -> np.ndarray:
    return _finite_vector(value, where, None).to("cpu", torch.float64).numpy()


def _feature_names(value: Any, where: str, loaded: dict) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{where} must be None or a list of str, got {_describe(value)}")
    if len(value) != loaded["n_features_in_"]:
        raise _Invalid(f"{where} has {len(value)} names for n_features_in_={loaded['n_features_in_']} features")
    return list(value)


def _normalizer(value: Any, where: str, loaded: dict) -> Normalizer | None:
    """None, or ``{"mean", "scale"}``: finite ``[n_features_in_]`` tensors, scale > 0."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"mean", "scale"}:
        raise _Invalid(f"{where} must be None or a dict of 'mean' and 'scale', got {_describe(value)}")
    n = loaded["n_features_in_"]
    mean = _finite_vector(value["mean"], f"{where}['mean']", n)
    scale = _finite_vector(value["scale"], f"{where}['scale']", n)
    if bool((scale <= 0).any()):
        raise _Invalid(f"{where}['scale'] must be > 0, got {float(scale.min())} at index {int(scale.argmin())}")
    return Normalizer.from_state_dict({"mean": mean, "scale": scale})


def _device_name(value: Any, where: str, loaded: dict) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{where} must be a device name (str), got {_describe(value)}")
    try:
        torch.device(value)
    except RuntimeError as exc:
        raise _Invalid(f"{where} is not a device name: {value!r}") from exc
    return value


def _dump_normalizer(norm: Normalizer | None) -> dict | None:
    return norm.state_dict() if norm is not None else None


@dataclass(frozen=True)
class _Field:
    """One entry of the file's "fitted" section: the detector attribute it stores and how it is checked.

    ``load(file value, "fitted['key']", fields loaded so far by key) -> attribute value`` raises
    :class:`_Invalid`; fields are loaded in table order, so a check may use earlier ones.
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
)


def _dump_fitted(det) -> dict:
    return {f.key: f.dump(getattr(det, f.attr)) for f in FITTED_FIELDS if f.required or hasattr(det, f.attr)}


def _load_fitted(fitted: dict) -> dict[str, Any]:
    """Checked values of the "fitted" section by attribute name (only those to restore); raises _Invalid."""
    known = {f.key for f in FITTED_FIELDS}
    unknown = sorted(str(k) for k in fitted if k not in known)
    if unknown:
        raise _Invalid(f"fitted holds unknown field(s) {', '.join(unknown)}")
    loaded: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for f in FITTED_FIELDS:
        if f.key not in fitted:
            if f.required:
                raise _Invalid(f"fitted lacks the field {f.key!r}")
            value = None
        else:
            value = f.load(fitted[f.key], f"fitted[{f.key!r}]", loaded)
        loaded[f.key] = value
        if f.restore:
            attrs[f.attr] = value
    return attrs


def _first_non_finite(value: Any, where: str) -> str | None:
    """Key path of the first floating tensor or float in ``value`` holding NaN/inf, else None."""
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            return f"{where} ({_describe(value)})"
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
        found = _first_non_finite(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------ writing
def save_detector(det, path: str | os.PathLike) -> None:
    """Write ``det`` (fitted) to ``path`` atomically (a temporary file renamed into place), sealed by its checksum."""
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
    payload = seal({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "detector": registered_name(type(det)),
        "class": _class_path(type(det)),
        "params": params,
        "fitted": _plain(_dump_fitted(det), "fitted"),
        "state": _plain(det._get_state(), f"{type(det).__name__}._get_state()"),
    })
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


# ------------------------------------------------------------------ reading
def _check_header(path: str, payload: dict) -> None:
    """The top-level fields besides format and version: present, and of the type the loader needs."""
    missing = [k for k in ("class", "params", "fitted", "state") if k not in payload]
    if missing:
        raise ModelFileError(path, f"lacks {', '.join(missing)}: truncated or not written by genad_fast")
    cls = payload["class"]
    if not isinstance(cls, str) or cls.count(":") != 1 or not all(cls.split(":")):
        raise ModelFileError(path, f"its 'class' must be a string 'module:QualName', got {_describe(cls)}")
    name = payload.get("detector")
    if name is not None and not isinstance(name, str):
        raise ModelFileError(path, f"its 'detector' must be a registry name (str) or None, got {_describe(name)}")
    for key in ("params", "fitted", "state"):
        if not isinstance(payload[key], dict):
            raise ModelFileError(path, f"its {key!r} must be a dict, got {_describe(payload[key])}")
    bad_keys = [k for k in payload["params"] if not isinstance(k, str)]
    if bad_keys:
        raise ModelFileError(path, f"its 'params' must have str keys, got {bad_keys[0]!r}")


def read_payload(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict:
    """The checked dict of a model file (format, version, checksum and header types verified),
    tensors on ``map_location``."""
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
        raise ModelFileError(path, f"holds pickled Python objects, or is corrupt or not a torch file; genad_fast "
                                   f"reads model files with weights_only=True ({why})") from exc
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
    if version >= _FIRST_CHECKSUM_VERSION:  # first: a damaged file is reported as damaged, not by its symptom
        _check_checksum(path, payload)
    _check_header(path, payload)
    return payload


def _resolve_class(path: str, payload: dict, expected: type | None) -> type:
    # ``BaseDetector.load`` (like ``genad_fast.load``, expected=None) takes any registered detector. This
    # module sits below base.py, so it knows the base class by its import path (is_base_detector).
    if expected is not None and is_base_detector(expected):
        expected = None
    stored_name, stored_class = payload.get("detector"), payload["class"]
    label = f"a detector of class {stored_class.rpartition(':')[2]}" + \
        (f" (registered as {stored_name!r})" if stored_name else "")
    if expected is not None and _class_path(expected) == stored_class:
        return expected
    candidate = None
    if stored_name is not None and stored_name in _REGISTRY:
        candidate = get_detector(stored_name)
    else:  # registered under another name, or the class was imported and registered since
        for name, entry in _REGISTRY.items():
            if entry == stored_class or (isinstance(entry, type) and _class_path(entry) == stored_class):
                candidate = get_detector(name)
                break
    if expected is not None:
        if candidate is None or not issubclass(candidate, expected):
            raise ModelFileError(path, f"holds {label}, not a {expected.__name__}; load it with "
                                       f"genad_fast.load() or that class's load()")
        return candidate
    if candidate is None:
        raise ModelFileError(path, f"holds {label}, which is not registered here; import the module that "
                                   f"registers it, or call that class's load()")
    return candidate


def _make_detector(path: str, cls: type, stored: dict):
    """``cls(**params)`` from the file's params: known names only, values passing the detector's checks."""
    from genad_fast.detectors._renamed import canonical_params
    from genad_fast.thresholds import threshold_from_spec

    known = set(cls._get_param_names())
    # Files written before a parameter was renamed hold its old name (params["score"]): read it as the new one.
    stored = canonical_params(stored, known, cls.__name__, warn=False)
    unknown = sorted(k for k in stored if k not in known)
    if unknown:
        raise ModelFileError(path, f"its params hold unknown parameter(s) {', '.join(map(repr, unknown))} "
                                   f"for {cls.__name__}")
    try:
        det = cls(**{k: threshold_from_spec(v) for k, v in stored.items()})
        # Detectors check their parameters at fit; a loaded one is never fitted, so check them here.
        det._check_base_params()
        check_own = getattr(det, "_check_params", None)
        if check_own is not None:
            check_own()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"its parameters do not fit {cls.__name__}: {exc}") from exc
    return det


def load_detector(path: str | os.PathLike, map_location: torch.device | str = "cpu", expected: type | None = None):
    """Rebuild the detector stored at ``path`` on ``map_location`` ("cpu", "cuda", "auto", a torch.device)."""
    device = resolve_device(map_location)
    path = os.fspath(path)
    payload = read_payload(path, map_location=device)
    cls = _resolve_class(path, payload, expected)
    det = _make_detector(path, cls, payload["params"])
    try:
        attrs = _load_fitted(payload["fitted"])
    except _Invalid as exc:
        raise ModelFileError(path, str(exc)) from None
    det.device_ = device
    for attr, value in attrs.items():
        setattr(det, attr, value)
    # The file's state before restoring (the error names its key, not a symptom deep inside the detector),
    # the restored one after (values the detector derives from it, such as LOF's refit neighbours).
    _check_finite_state(path, payload["state"], cls)
    try:
        det._set_state(payload["state"])
    except NotImplementedError:
        raise
    except _STATE_ERRORS as exc:
        raise ModelFileError(path, f"cannot restore the {cls.__name__}: {type(exc).__name__}: {exc}") from exc
    _check_finite_state(path, det._get_state(), cls)
    _probe(path, det, cls)
    return det


def _probe(path: str, det, cls: type) -> None:
    """Score one small input at the training mean: a state that is complete in form but not in substance
    (a missing key read only at scoring, a reference set or weight of the wrong width) fails here, at load,
    naming the file, instead of at the user's first scoring call."""
    stats = det._input_stats()
    rows = int(det.window) if det.is_series else 1
    if stats is not None:
        probe = stats.mean.to(torch.float64).expand(rows, -1)
    else:
        probe = torch.zeros(rows, int(det.n_features_in_), dtype=torch.float64)
    if det.feature_names_in_ is not None:
        import pandas as pd

        probe = pd.DataFrame(probe.numpy(), columns=det.feature_names_in_)
    verbose = det.verbose
    det.verbose = False
    try:
        det.decision_function(probe)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the state breaks, the file is what is wrong
        raise ModelFileError(path, f"the restored {cls.__name__} cannot score (its state does not fit its "
                                   f"parameters): {type(exc).__name__}: {exc}") from exc
    finally:
        det.verbose = verbose


def _check_finite_state(path: str, state: dict, cls: type) -> None:
    """A NaN weight or reference row would make every score NaN, and ``predict`` would call everything normal."""
    bad = _first_non_finite(state, "state")
    if bad is not None:
        raise ModelFileError(path, f"{bad} holds NaN/inf values; the {cls.__name__} needs finite weights and data")


def load(path: str | os.PathLike, map_location: torch.device | str = "cpu"):
    """Load any registered detector from a model file written by ``det.save(path)``.

    The file names its detector; the class comes from the registry
    (:func:`genad_fast.detectors.register_detector`). Tensors go to ``map_location``.
    """
    return load_detector(path, map_location=map_location, expected=None)
