"""How to install an optional extra: the hint every "needs X" error message gives (issue #16, point 4).

genad_fast is not published on a package index (it installs from a clone), so an install by the project's name
would fail; the hint names the real PyPI packages of the extra, and the clone form that pulls the same extra.
:data:`EXTRAS` mirrors pyproject.toml's ``[project.optional-dependencies]`` (tests/test_extras_hint.py checks it).
This module imports nothing from the package, so any layer may use it.
"""
from __future__ import annotations

__all__ = ["EXTRAS", "install_hint"]

#: extra -> its requirements, as pyproject.toml's [project.optional-dependencies] lists them.
EXTRAS: dict[str, tuple[str, ...]] = {
    "triton": ("triton>=3.0",),
    "plot": ("matplotlib>=3.6",),
    "parquet": ("pyarrow>=12",),
    "bench": ("pytest-benchmark>=4", "matplotlib>=3.6"),
    "data": ("aeon>=1.0",),
    "eval": ("timeeval-gutentag>=1.5", "aeon>=1.0"),
    "ray": ("ray>=2.9",),
    "dask": ("dask[distributed]>=2024.1",),
    "export": ("onnx>=1.18", "onnxscript>=0.5", "onnxruntime>=1.22"),
    "dev": ("pytest>=7", "hypothesis>=6", "expecttest", "pytest-benchmark>=4", "matplotlib>=3.6", "pyarrow>=12",
            "ray>=2.9", "dask[distributed]>=2024.1", "onnx>=1.18", "onnxscript>=0.5", "onnxruntime>=1.22",
            "timeeval-gutentag>=1.5"),
}


def install_hint(extra: str) -> str:
    """``pip install '<requirement>' ...`` for ``extra``'s real packages; then the clone form of the same extra.

    The requirements are quoted because ``>=`` and ``[...]`` are special to the shell.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known extras: {', '.join(EXTRAS)}")
    packages = " ".join(f"'{req}'" for req in EXTRAS[extra])
    # "; or" rather than a parenthesis: the CLI cuts an engine's ImportError at its first " (" (the cause)
    return f"pip install {packages}; or, from a clone of genad_fast: pip install --no-build-isolation -e '.[{extra}]'"
