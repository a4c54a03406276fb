"""Load the compiled extension ``genad_fast._C`` once, or say why it is missing.

The package works without it (the ``eager`` backend runs everywhere); a missing or
broken extension gives one warning that says how to build it, never a silent slowdown.
"""
from __future__ import annotations

import warnings
from typing import Any

BUILD_HINT = (
    "install torch first, then build genad_fast against it with "
    "`pip install --no-build-isolation -e .` (or `.`) from the source tree"
)

_C: Any = None
load_error: str | None = None

try:
    import torch  # noqa: F401  (the extension links against torch's libraries)

    from genad_fast import _C  # type: ignore[attr-defined, no-redef]
except Exception as exc:  # ImportError, or an OSError/undefined symbol from an ABI mismatch
    _C = None
    load_error = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"genad_fast._C could not be loaded ({load_error}); only the eager backend is available. "
        f"To build the fused kernels, {BUILD_HINT}.",
        RuntimeWarning,
        stacklevel=2,
    )


def build_info() -> dict:
    """How the loaded extension was built (version, backends, CUDA archs, CPU variants, threads).

    ``cpu_capabilities``: the CPU kernel variants compiled into it (DEFAULT, AVX2, AVX512 on x86-64);
    ``cpu_capability``: the one this process runs, chosen at load time from ``cpu_capability_requested``
    (ATen's: ``ATEN_CPU_CAPABILITY`` or cpuinfo) capped by ``cpu_capability_supported`` (this CPU's best).

    Returns ``{"loaded": False, "error": ...}`` when the extension is not available.
    """
    if _C is None:
        return {"loaded": False, "error": load_error, "hint": BUILD_HINT}
    return {"loaded": True, **dict(_C.build_info())}


def has_cuda_kernels() -> bool:
    return _C is not None and "cuda" in _C.build_info()["backends"]
