"""Model files as plain data, and the checksum that seals them.

:func:`to_plain` turns what a detector stores (tensors, numpy arrays and scalars, numbers, strings, None, dtypes,
devices, and lists, tuples and dicts of those) into what ``torch.load(weights_only=True)`` reads back without
unpickling any object. :func:`payload_checksum` digests such a payload with SHA-256 over a fixed traversal,
so the digest depends on the data only, never on how ``torch.save`` laid the archive out.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

CHECKSUM_PREFIX = "sha256:"
PLAIN_TYPES = (type(None), torch.dtype, torch.device)


def to_plain(value: Any, where: str) -> Any:
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
    for kind in (int, float, str):  # subclasses (TorchVersion, IntEnum) would be pickled as their class
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, PLAIN_TYPES):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} must be a str or int")
            out[k] = to_plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
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
    return CHECKSUM_PREFIX + h.hexdigest()


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
    elif isinstance(value, (bool, int, float, str) + PLAIN_TYPES):
        _chunk(h, b"S", f"{type(value).__name__}:{value!r}".encode())  # repr(float) round-trips exactly
    else:
        raise TypeError(f"{where} is a {type(value).__name__}, which a model file cannot hold")
