"""Benchmark suite of genad_fast: times every registered case with every provider.

Run ``python -m bench`` from the repository root (``--help`` for the options). Providers:
``eager`` (the idiomatic PyTorch a user would write), ``compile`` (``torch.compile`` of exactly
that eager code), and the fused backends ``cpu``, ``cuda`` and ``triton``. Cases live one per
file in ``bench/cases/``; see ``bench/registry.py`` for what a case declares.
"""
import os

# numpy and torch share this process: keep OpenBLAS from spinning up its own thread pool
# next to torch's (it would steal the cores the measured kernels run on).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
