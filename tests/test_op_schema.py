"""One schema table for both kernel libraries (genad_fast/ops/schema.py): the C++ ops (csrc/ops.cpp) and their
Triton twins must have exactly the table's signatures, and the table must cover every registered op."""
import re
from pathlib import Path

import pytest
import torch

import genad_fast  # noqa: F401  (loads the extension and defines the Triton ops)
from genad_fast import _ext
from genad_fast.ops.schema import CPP_NAMESPACE, IMPLEMENTED, SCHEMAS, TRITON_NAMESPACE

ROOT = Path(__file__).resolve().parent.parent
needs_ext = pytest.mark.skipif(_ext._C is None, reason="the compiled extension is not built")


def _registered(namespace: str) -> set[str]:
    prefix = f"{namespace}::"
    return {name[len(prefix):] for name in torch._C._dispatch_get_all_op_names() if name.startswith(prefix)}


def _schema(namespace: str, op: str) -> str:
    text = str(getattr(getattr(torch.ops, namespace), op).default._schema)
    assert text.startswith(f"{namespace}::"), text
    return text[len(namespace) + 2:]


@needs_ext
@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_the_cpp_op_has_the_table_schema(op):
    assert _schema(CPP_NAMESPACE, op) == SCHEMAS[op]


@pytest.mark.parametrize("op", sorted(op for op in SCHEMAS if "triton" in IMPLEMENTED[op]))
def test_the_triton_op_has_the_table_schema(op):
    assert _schema(TRITON_NAMESPACE, op) == SCHEMAS[op]


def test_the_table_covers_every_registered_op():
    if _ext._C is not None:
        assert _registered(CPP_NAMESPACE) == set(SCHEMAS)
    assert _registered(TRITON_NAMESPACE) == {op for op in SCHEMAS if "triton" in IMPLEMENTED[op]}


def test_the_table_is_the_text_of_ops_cpp():
    # The same strings as the m.def lines (string literals joined, as the C++ compiler joins them), so that
    # the comparison above does not depend on a build being current.
    source = (ROOT / "csrc" / "ops.cpp").read_text()
    defs = []
    for call in re.findall(r'm\.def\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)', source):
        defs.append("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', call)))
    assert {d.split("(", 1)[0]: d for d in defs} == SCHEMAS


def test_every_op_has_eager_and_the_compiled_cpu_and_cuda_backends():
    for op, backends in IMPLEMENTED.items():
        assert {"eager", "cpu", "cuda"} <= set(backends) <= {"eager", "cpu", "cuda", "triton"}, op
    assert "triton" not in IMPLEMENTED["linear_act"]  # no Triton kernel (ops/linear.py says why)
    assert "triton" not in IMPLEMENTED["conv1d_act"]  # no Triton kernel (ops/conv.py says why)
    assert "triton" not in IMPLEMENTED["gated_tanh"]  # no Triton kernel (ops/gated.py says why)
    assert "triton" not in IMPLEMENTED["gated_tanh_backward"]  # nor for its backward
    assert "triton" not in IMPLEMENTED["bias_gelu"]  # no Triton kernel (ops/gelu.py says why)
    assert "triton" not in IMPLEMENTED["bias_gelu_backward"]  # nor for its backward
    assert "triton" not in IMPLEMENTED["permute_affine"]  # no Triton kernel (ops/permute.py says why)
    assert "triton" not in IMPLEMENTED["permute_affine_backward"]  # nor for its backward
