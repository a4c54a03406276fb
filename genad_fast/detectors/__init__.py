"""Detectors: the shared estimator API (:class:`BaseDetector`), the registry, model files.

Built-in detectors are registered by import path and imported on first use, so
``import genad_fast`` does not build any network.
"""
from genad_fast.detectors._device import resolve_device
from genad_fast.detectors._io import FORMAT_VERSION, ModelFileError, load
from genad_fast.detectors._registry import detector_names, get_detector, register_detector, unregister_detector
from genad_fast.detectors._validation import NotFittedError
from genad_fast.detectors.base import BaseDetector

register_detector("flow", "genad_fast.detectors.flow:FlowDetector")
register_detector("diffusion", "genad_fast.detectors.diffusion:DiffusionDetector")
register_detector("autoencoder", "genad_fast.detectors.autoencoder:AutoEncoderDetector")
register_detector("vae", "genad_fast.detectors.vae:VAEDetector")
register_detector("deep_svdd", "genad_fast.detectors.deep_svdd:DeepSVDDDetector")
register_detector("pca", "genad_fast.detectors.sklearn_baselines:PCADetector")
register_detector("ocsvm", "genad_fast.detectors.sklearn_baselines:OCSVMDetector")
register_detector("iforest", "genad_fast.detectors.sklearn_baselines:IsolationForestDetector")
register_detector("lof", "genad_fast.detectors.sklearn_baselines:LOFDetector")
register_detector("kde", "genad_fast.detectors.kde:KDEDetector")
register_detector("knn", "genad_fast.detectors.knn:KNNDetector")
register_detector("dte", "genad_fast.detectors.dte:DTEDetector")
register_detector("ensemble", "genad_fast.detectors.ensemble:EnsembleDetector")
register_detector("anogan", "genad_fast.detectors.anogan:AnoGANDetector")
register_detector("fanogan", "genad_fast.detectors.anogan:FAnoGANDetector")

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
