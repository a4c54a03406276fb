"""Detectors: the shared estimator API (:class:`BaseDetector`), the registry, model files.

Built-in detectors are registered by import path and imported on first use, so
``import genad_fast`` does not build any network.
"""
from genad_fast.detectors._io import FORMAT_VERSION, ModelFileError, load
from genad_fast.detectors._registry import detector_names, get_detector, register_detector, unregister_detector
from genad_fast.detectors._validation import NotFittedError
from genad_fast.detectors.base import BaseDetector, resolve_device

register_detector("flow", "genad_fast.detectors.flow:FlowDetector")

__all__ = [
    "FORMAT_VERSION",
    "BaseDetector",
    "ModelFileError",
    "NotFittedError",
    "detector_names",
    "get_detector",
    "load",
    "register_detector",
    "resolve_device",
    "unregister_detector",
]
