"""The engines a job can run on, their optional packages, and how many workers and threads each gets.

``engine="local"`` needs nothing beyond the standard library (:class:`concurrent.futures.ProcessPoolExecutor`);
``"ray"`` and ``"dask"`` are optional extras, imported only when asked for, so ``import genad_fast`` never pays
for them and a machine without them fails with one line that says what to install.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

from genad_fast._extras import install_hint

#: Engine name -> (module to import, extra that installs it, the package's name in messages).
ENGINES: dict[str, tuple[str | None, str | None, str | None]] = {
    "local": (None, None, None),
    "ray": ("ray", "ray", "Ray"),
    "dask": ("distributed", "dask", "Dask's distributed scheduler"),
}


def check_engine(engine: str) -> str:
    """``engine`` as a known name (case-insensitive); a ValueError listing the known ones otherwise."""
    name = engine.strip().lower() if isinstance(engine, str) else engine
    if name not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known engines: {', '.join(ENGINES)}")
    return name


def require(engine: str) -> ModuleType | None:
    """The engine's package, imported now (None for ``"local"``); an ImportError naming the extra if missing."""
    module, extra, label = ENGINES[check_engine(engine)]
    if module is None:
        return None
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"engine={engine!r} needs {label}: {install_hint(extra)} "
                          f"({type(exc).__name__}: {exc})") from exc


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_count(value, name: str) -> int | None:
    """``workers=`` / ``threads=`` / ``chunk_size=``: None or an int >= 1 (bool refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
    return int(value)


def thread_share(cores: int, workers_here: int) -> int:
    """Intra-op threads per worker: its share of the machine's cores, at least 1.

    Workers that each run torch with every core oversubscribe the machine (W workers x C threads on C cores),
    which costs more than the workers gain; one share each keeps the total at the core count.
    """
    return max(1, cores // max(1, workers_here))
