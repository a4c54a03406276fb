"""genad_fast: anomaly detection with deep generative models, on fused C++/CUDA/Triton kernels."""
from genad_fast._version import __version__
from genad_fast._ext import build_info
from genad_fast._backend import BackendInfo, BackendUnavailableError, backends
from genad_fast import ops

__all__ = ["__version__", "BackendInfo", "BackendUnavailableError", "backends", "build_info", "ops"]
