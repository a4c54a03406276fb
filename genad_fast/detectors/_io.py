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

This module writes and reads the file (format and version, header, the detector's class, its parameters and
state, the probe); :mod:`~genad_fast.detectors._model_checksum` holds the plain-data conversion and the
checksum, :mod:`~genad_fast.detectors._model_fields` the "fitted" section and its checks.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile

import torch

from genad_fast import _backend
from genad_fast._backend import BackendUnavailableError
from genad_fast._version import __version__
from genad_fast.detectors._device import resolve_device
from genad_fast.detectors._model_checksum import CHECKSUM_PREFIX, payload_checksum, seal, to_plain
from genad_fast.detectors._model_fields import (FITTED_FIELDS, InvalidField, describe, dump_fitted,  # noqa: F401
                                                first_non_finite, load_fitted)
from genad_fast.detectors._registry import (_REGISTRY, _class_path, get_detector, is_base_detector,
                                            registered_name)

FORMAT = "genad_fast.detector"
FORMAT_VERSION = 2
#: Versions this module reads; version 1 files predate the checksum.
_FIRST_CHECKSUM_VERSION = 2
#: Errors of a detector's _set_state that mean "this state does not fit" (NotImplementedError, a
#: RuntimeError, is a programming error of the class and propagates as it is).
_STATE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError)


class ModelFileError(ValueError):
    """A model file cannot be used: corrupt, truncated, from a newer format, or of another detector."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"model file {path!r}: {problem}")
        self.path = path


def _check_checksum(path: str, payload: dict) -> None:
    stored = payload.get("checksum")
    if stored is None:
        raise ModelFileError(path, f"lacks its checksum, which format version {payload['format_version']} "
                                   f"files carry: truncated or not written by genad_fast")
    if not isinstance(stored, str) or not stored.startswith(CHECKSUM_PREFIX):
        raise ModelFileError(path, f"its checksum must be a string 'sha256:<hex>', got {describe(stored)}")
    try:
        computed = payload_checksum(payload)
    except TypeError as exc:
        raise ModelFileError(path, f"holds data a model file cannot hold: {exc}") from exc
    if computed != stored:
        raise ModelFileError(path, f"checksum mismatch (stored {stored[:23]}..., computed {computed[:23]}...): "
                                   f"the file was changed or damaged after it was written")

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
        params[key] = to_plain(value, f"parameter {key!r}")
    payload = seal({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "detector": registered_name(type(det)),
        "class": _class_path(type(det)),
        "params": params,
        "fitted": to_plain(dump_fitted(det), "fitted"),
        "state": to_plain(det._get_state(), f"{type(det).__name__}._get_state()"),
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
        raise ModelFileError(path, f"its 'class' must be a string 'module:QualName', got {describe(cls)}")
    name = payload.get("detector")
    if name is not None and not isinstance(name, str):
        raise ModelFileError(path, f"its 'detector' must be a registry name (str) or None, got {describe(name)}")
    for key in ("params", "fitted", "state"):
        if not isinstance(payload[key], dict):
            raise ModelFileError(path, f"its {key!r} must be a dict, got {describe(payload[key])}")
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
    # A parameter added after a file was written takes the value that reproduces the file's old scores, where the
    # class names one (``_params_before``), not the new default: loading must never change what a model scores.
    stored = {**getattr(cls, "_params_before", {}), **stored}
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


def load_detector(path: str | os.PathLike, map_location: torch.device | str = "cpu", expected: type | None = None,
                  backend: str | None = None):
    """Rebuild the detector stored at ``path`` on ``map_location`` ("cpu", "cuda", "auto", a torch.device), scoring
    with ``backend`` (None: the file's, where it runs on that device; see :func:`_fit_to_device`)."""
    device = resolve_device(map_location)
    path = os.fspath(path)
    payload = read_payload(path, map_location=device)
    cls = _resolve_class(path, payload, expected)
    det = _make_detector(path, cls, payload["params"])
    _fit_to_device(path, det, device, backend)
    try:
        attrs = load_fitted(payload["fitted"])
    except InvalidField as exc:
        raise ModelFileError(path, str(exc)) from None
    det.device_ = device
    for attr, value in attrs.items():
        setattr(det, attr, value)
    if det.window_ is None and det.window is not None and not isinstance(det.window, str):
        det.window_ = int(det.window)  # a file from before window_ was saved: its window is the int parameter
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


def _fit_to_device(path: str, det, device: torch.device, backend: str | None) -> None:
    """Make the loaded detector's ``device`` and ``backend`` parameters agree with the device it was loaded on.

    A model fitted with ``device="cuda", backend="cuda"`` and loaded with ``map_location="cpu"`` (the default) holds
    CPU tensors, on which its CUDA backend cannot run. ``backend`` given: the detector scores with it (an error at
    the probe if it cannot run there). Otherwise a file's backend that cannot run on ``device`` is replaced by
    ``"auto"`` with a warning that names both, never silently; a ``device`` parameter naming another kind of
    device becomes ``device``'s kind, so that a refit stays where the model was loaded.
    """
    changes = []
    if det.device is not None and not (isinstance(det.device, str) and det.device.strip().lower() == "auto"):
        saved_device = torch.device(det.device)
        if saved_device.type != device.type:
            det.set_params(device=device.type)
            changes.append(f"device {str(saved_device)!r} -> {device.type!r}")
    if backend is not None:
        det.set_params(backend=_backend.requested_backend(backend))
    elif det.backend is not None and _backend.requested_backend(det.backend) != "auto":
        try:
            _backend._check_runnable(_backend.requested_backend(det.backend), device)
        except BackendUnavailableError as exc:
            changes.append(f"backend {det.backend!r} -> 'auto' ({exc})")
            det.set_params(backend="auto")
    if changes and backend is None:
        warnings.warn(f"model file {path!r} loaded on {device}: {'; '.join(changes)}. Pass backend= to load() "
                      f"to choose the backend", UserWarning, stacklevel=4)


def _probe(path: str, det, cls: type) -> None:
    """Score one small input at the training mean: a state that is complete in form but not in substance
    (a missing key read only at scoring, a reference set or weight of the wrong width) fails here, at load,
    naming the file, instead of at the user's first scoring call."""
    stats = det._input_stats()
    rows = det._window if det.is_series else 1
    if stats is not None:
        probe = stats.mean.to(torch.float64).expand(rows, -1)
    else:
        probe = torch.zeros(rows, int(det.n_features_in_), dtype=torch.float64)
    names = getattr(det, "feature_names_in_", None)  # absent unless fitted on named DataFrame columns
    if names is not None:
        import pandas as pd

        probe = pd.DataFrame(probe.numpy(), columns=list(names))
    verbose = det.verbose
    det.verbose = False
    try:
        det.decision_function(probe)
    except NotImplementedError:
        raise
    except BackendUnavailableError as exc:  # the file is fine; the backend asked for cannot run here
        raise BackendUnavailableError(f"model file {path!r} loaded on {det.device_}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - whatever the state breaks, the file is what is wrong
        raise ModelFileError(path, f"the restored {cls.__name__} cannot score (its state does not fit its "
                                   f"parameters): {type(exc).__name__}: {exc}") from exc
    finally:
        det.verbose = verbose


def _check_finite_state(path: str, state: dict, cls: type) -> None:
    """A NaN weight or reference row would make every score NaN, and ``predict`` would call everything normal."""
    bad = first_non_finite(state, "state")
    if bad is not None:
        raise ModelFileError(path, f"{bad} holds NaN/inf values; the {cls.__name__} needs finite weights and data")


def load(path: str | os.PathLike, map_location: torch.device | str = "cpu", backend: str | None = None):
    """Load any registered detector from a model file written by ``det.save(path)``.

    The file names its detector; the class comes from the registry
    (:func:`genad_fast.detectors.register_detector`). Tensors go to ``map_location``; ``backend`` (None: the
    file's, or ``"auto"`` with a warning where the file's cannot run on that device) is the one it scores with.
    """
    return load_detector(path, map_location=map_location, expected=None, backend=backend)
