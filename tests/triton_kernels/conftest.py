"""Triton tests run the kernels in Triton's interpreter on CPU tensors, in their own pytest process:

    TRITON_INTERPRET=1 .venv/bin/python -m pytest tests/triton_kernels -q

The variable must be set before triton is imported (it decides at @triton.jit time whether a kernel is
interpreted), so these tests fail, rather than skip, when it is missing. (The folder is not called
"triton": pytest puts tests/ on sys.path, where a tests/triton folder would pass for the triton package.)
"""
from __future__ import annotations

import os

import pytest

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
MESSAGE = ("tests/triton_kernels runs Triton kernels in the interpreter and needs TRITON_INTERPRET=1 set before triton is "
           "imported; run it in its own process: TRITON_INTERPRET=1 .venv/bin/python -m pytest tests/triton_kernels -q")


@pytest.fixture(autouse=True)
def _require_triton_interpreter():
    if not INTERPRETED:
        pytest.fail(MESSAGE, pytrace=False)
