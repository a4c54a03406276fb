"""genad_fast: anomaly detection with deep generative models, on fused C++/CUDA/Triton kernels."""
from genad_fast._version import __version__
from genad_fast._ext import build_info
from genad_fast._backend import BackendInfo, BackendUnavailableError, backends
from genad_fast import ops
from genad_fast import datasets, series
from genad_fast.detectors import BaseDetector, NotFittedError, load, register_detector

__all__ = ["__version__", "BackendInfo", "BackendUnavailableError", "backends", "build_info", "ops",
           "datasets", "series", "BaseDetector", "NotFittedError", "load", "register_detector"]
