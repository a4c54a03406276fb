"""The op specs (tests/op_specs) are complete and the only place tolerances are written: every public fused op
has a spec, every registered op (C++ and Triton library) has opcheck samples in one, each spec module has the
parts every runner relies on, and no runner (CPU, interpreter, GPU) keeps a tolerance table or rtol/atol literal
of its own for an op comparison."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch

import genad_fast
import op_specs
from genad_fast import ops
from op_specs.targets import INTERPRETER, Target

TESTS = Path(__file__).resolve().parent
HELPERS = {"compare", "targets"}
SPECS = {m.name: importlib.import_module(f"op_specs.{m.name}") for m in pkgutil.iter_modules(op_specs.__path__)
         if m.name not in HELPERS}
# Public functions of genad_fast.ops that are not fused ops: a counter helper and two bandwidth rules.
NOT_OPS = {"philox_counters", "scott_bandwidth", "silverman_bandwidth"}
# The runners of the op specs: each op's CPU file, its interpreter file, its GPU file.
RUNNERS = ([TESTS / f"test_{name}.py" for name in
            ("coupling", "diffusion_ops", "distance_ops", "anogan_ops", "linear_act", "conv1d_act", "gated_tanh",
              "bias_gelu", "permute_affine", "philox")]
           + [TESTS / "triton_kernels" / f"test_{name}_triton.py" for name in
              ("coupling", "diffusion", "distance", "anogan", "philox")]
           + [TESTS / "gpu" / f"test_gpu_{name}.py" for name in
              ("coupling", "diffusion_ops", "distance_ops", "anogan_ops", "linear_act", "conv1d_act", "gated_tanh",
              "bias_gelu", "permute_affine", "philox")])
# Where no tolerance may be written: the runners, and everything else in the interpreter's and the GPU's folders
# but tests/gpu/test_gpu_detectors.py (it compares detector scores across devices, not ops).
NO_TOLERANCES = sorted(set(RUNNERS) | set((TESTS / "triton_kernels").glob("*.py"))
                       | {p for p in (TESTS / "gpu").glob("*.py") if p.name != "test_gpu_detectors.py"})


def test_every_public_op_has_a_spec():
    covered = [op for spec in SPECS.values() for op in spec.OPS]
    assert len(covered) == len(set(covered)), "an op has two specs"
    assert set(covered) == {n for n in ops.__all__ if inspect.isfunction(getattr(ops, n))} - NOT_OPS


def _registered(namespace: str) -> set[str]:
    return {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith(namespace + "::")}


@pytest.mark.skipif(not genad_fast.build_info()["loaded"], reason="genad_fast._C is not built")
def test_every_registered_op_has_opcheck_samples():
    samples = {name for spec in SPECS.values() for name in spec.OPCHECK}
    assert _registered("genad_fast") <= samples


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_every_triton_op_has_opcheck_samples():
    import genad_fast.kernels  # noqa: F401  (defines the genad_fast_triton library)

    triton_ops = _registered("genad_fast_triton")
    assert triton_ops, "genad_fast.kernels registered no op"
    assert triton_ops <= {name for spec in SPECS.values() for name in spec.OPCHECK}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_spec_has_every_part(name):
    spec = SPECS[name]
    assert spec.__doc__ and spec.OPS and spec.OPCHECK
    assert any(n.startswith("check_") for n in vars(spec)), "a spec holds its checks"
    for target in (Target("cpu", "cpu"), INTERPRETER):
        samples = spec.opcheck_samples(target)
        assert set(samples) == set(spec.OPCHECK) and all(samples.values())
        assert all(isinstance(args, tuple) for cases in samples.values() for args in cases)


def _tolerances_written_in(path: Path) -> list[str]:
    """rtol=/atol= given a number, and module-level tables named *TOL (or assigned a dict of rtol/atol)."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("rtol", "atol"):
            value = node.value.operand if isinstance(node.value, ast.UnaryOp) else node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, (int, float)):
                found.append(f"{path.name}:{node.value.lineno}: {node.arg}={value.value!r}")
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in ("rtol", "atol")
                                              for k in node.keys):
            found.append(f"{path.name}:{node.lineno}: a dict of tolerances")
    for node in tree.body:
        if isinstance(node, ast.Assign) and not isinstance(node.value, (ast.Attribute, ast.Name)):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id.endswith("TOL"):
                    found.append(f"{path.name}:{node.lineno}: {t.id} = ...")
    return found


def test_tolerances_are_written_once_in_the_specs():
    assert all(p.exists() for p in RUNNERS), [p.name for p in RUNNERS if not p.exists()]
    written = [hit for path in NO_TOLERANCES for hit in _tolerances_written_in(path)]
    assert not written, "tolerances belong in tests/op_specs (one table per op):\n" + "\n".join(written)


def test_the_lint_sees_a_tolerance(tmp_path):
    planted = tmp_path / "test_planted.py"
    planted.write_text("import torch\nTOL = {torch.float32: dict(rtol=1e-5, atol=1e-6)}\n"
                       "def test_x():\n    torch.testing.assert_close(1.0, 1.0, rtol=0, atol=-1e-3)\n")
    assert len(_tolerances_written_in(planted)) == 5


@pytest.mark.parametrize("path", RUNNERS, ids=lambda p: p.name)
def test_every_runner_uses_a_spec(path):
    assert "from op_specs" in path.read_text(), f"{path.name} takes its inputs and tolerances from tests/op_specs"
