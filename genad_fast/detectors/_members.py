"""A fitted detector inside another one's model file (the members of :class:`~genad_fast.detectors.ensemble.
EnsembleDetector`): the same three sections a model file holds for it (:mod:`genad_fast.detectors._io`), as
plain data, and the detector rebuilt from them.

A record is ``{"detector": registry name, "params": get_params(), "fitted": the base's fitted fields, "state":
_get_state()}``; the outer file's checksum covers it, and the loader's finiteness check walks it like any state.
"""
from __future__ import annotations

from typing import Any

import torch

from genad_fast.detectors._model_checksum import to_plain
from genad_fast.detectors._model_fields import InvalidField, dump_fitted, load_fitted
from genad_fast.detectors._registry import get_detector, registered_name

__all__ = ["member_from_record", "member_record"]


def member_record(det) -> dict:
    """Fitted ``det`` as plain data (a registered detector; NotFittedError if it is not fitted)."""
    from genad_fast.thresholds import BaseThreshold, threshold_to_spec

    det._check_fitted()
    name = registered_name(type(det))
    if name is None:
        raise TypeError(f"{type(det).__name__} is not registered: a member must be a registered detector")
    params = {}
    for key, value in det.get_params(deep=False).items():
        if isinstance(value, torch.device):
            value = str(value)
        if isinstance(value, BaseThreshold):
            value = threshold_to_spec(value)
        params[key] = to_plain(value, f"member {name!r} parameter {key!r}")
    return {"detector": name, "params": params, "fitted": to_plain(dump_fitted(det), f"member {name!r} fitted"),
            "state": to_plain(det._get_state(), f"member {name!r} state")}


def member_from_record(record: Any, device: torch.device):
    """The fitted detector of a :func:`member_record` (tensors already on ``device``); ValueError if it is not one."""
    from genad_fast.thresholds import threshold_from_spec

    if not isinstance(record, dict) or set(record) != {"detector", "params", "fitted", "state"}:
        raise ValueError(f"a member record must be a dict of detector, params, fitted and state, got "
                         f"{type(record).__name__}")
    cls = get_detector(record["detector"])
    params = record["params"]
    known = set(cls._get_param_names())
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        raise ValueError(f"member {record['detector']!r}: unknown parameter(s) {', '.join(unknown)}")
    det = cls(**{k: threshold_from_spec(v) for k, v in params.items()})
    det._check_params()
    try:
        attrs = load_fitted(record["fitted"])
    except InvalidField as exc:
        raise ValueError(f"member {record['detector']!r}: {exc}") from None
    det.device_ = device
    for attr, value in attrs.items():
        setattr(det, attr, value)
    det._set_state(record["state"])
    return det
