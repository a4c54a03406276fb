"""Benchmark cases, one module each; importing this package registers them all.

To add a case, drop a module here that builds a :class:`bench.registry.Case` and calls
:func:`bench.registry.register` at import time (see ``coupling.py`` and ``randn.py``).
"""
import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_mod}")
