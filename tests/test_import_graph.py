"""The import graph of genad_fast (scripts/check_imports.py): no cycles, nothing below the CLI imports it or bench/."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    """scripts/ is not a package: load the script as a module (registered, as its dataclass needs)."""
    if "check_imports" not in sys.modules:
        spec = importlib.util.spec_from_file_location("check_imports", ROOT / "scripts" / "check_imports.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["check_imports"] = module
        spec.loader.exec_module(module)
    return sys.modules["check_imports"]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_repository_has_no_import_cycle_and_no_upward_import():
    lines, problems = _checker().report(ROOT)
    assert problems == 0, "\n".join(lines)


def test_the_data_package_and_model_files_sit_below_their_users():
    # The edges this layering rests on, so that a rename cannot make the test above pass vacuously.
    chk = _checker()
    modules, edges = chk.import_graph(ROOT)
    pairs = {(e.source, e.target) for e in edges}
    assert ("genad_fast.cli", "genad_fast.data.files") in pairs
    assert ("genad_fast.detectors.base", "genad_fast.detectors._io") in pairs
    assert ("genad_fast.detectors._io", "genad_fast.detectors._registry") in pairs
    assert ("bench.machine", "genad_fast.provenance") in pairs
    assert not any(t.startswith("genad_fast.cli") or t.startswith("bench")
                   for s, t in pairs if s.startswith("genad_fast.") and s != "genad_fast.cli")
    assert {"genad_fast.data.files", "genad_fast.detectors._registry", "bench.run"} <= modules.keys()


def test_the_checker_finds_lazy_cycles_and_upward_imports(tmp_path):
    root = _tree(tmp_path, {
        "genad_fast/__init__.py": "",
        "genad_fast/nn/__init__.py": "",
        "genad_fast/nn/a.py": "from . import b\n",                              # relative, module level
        "genad_fast/nn/b.py": "def f():\n    import genad_fast.nn.a\n",        # lazy: still a cycle a <-> b
        "genad_fast/ops/__init__.py": "",
        "genad_fast/ops/c.py": "from genad_fast import _C\n",                   # the compiled extension: a leaf
        "genad_fast/ops/up.py": "def g():\n    from genad_fast.detectors import d\n",  # ops -> detectors: upward
        "genad_fast/detectors/__init__.py": "",
        "genad_fast/detectors/d.py": "from genad_fast.nn import a\n",            # detectors -> nn: down, fine
        "genad_fast/cli.py": "from genad_fast.nn import a\n",                   # the CLI may import anything
        "genad_fast/series.py": "def g():\n    from genad_fast.cli import main\n",  # but nothing imports it
        "genad_fast/evaluation.py": "import importlib\nimportlib.import_module('bench.run')\n",
        "genad_fast/newthing.py": "from genad_fast.ops import c\n",              # in no layer: must be placed
        "bench/__init__.py": "",
        "bench/run.py": "import genad_fast.cli\n",                               # bench sits on top: fine
    })
    chk = _checker()
    modules, edges = chk.import_graph(root)
    assert chk.strongly_connected(modules, edges) == [["genad_fast.nn.a", "genad_fast.nn.b"]]
    cycle = chk.one_cycle(["genad_fast.nn.a", "genad_fast.nn.b"], edges)
    assert [(e.source, e.target, e.lazy) for e in cycle] == [("genad_fast.nn.a", "genad_fast.nn.b", False),
                                                              ("genad_fast.nn.b", "genad_fast.nn.a", True)]
    assert ("genad_fast.ops.c", "genad_fast._C") in {(e.source, e.target) for e in edges}
    bad = {(e.source, e.target) for e in chk.layer_violations(edges)}
    assert bad == {("genad_fast.series", "genad_fast.cli"), ("genad_fast.evaluation", "bench.run"),
                   ("genad_fast.ops.up", "genad_fast.detectors.d"), ("genad_fast.newthing", "genad_fast.ops.c")}
    lines, problems = chk.report(root)
    assert problems == 5 and any(line.startswith("cycle 1: 2 modules") for line in lines)
    assert chk.main([str(root)]) == 1


def test_every_module_of_the_package_has_a_layer():
    chk = _checker()
    modules, _ = chk.import_graph(ROOT)
    assert [m for m in modules if chk.layer_of(m) is None] == []
    assert chk.layer_of("genad_fast.ops.coupling") < chk.layer_of("genad_fast.nn.flow") \
        < chk.layer_of("genad_fast.detectors.base") < chk.layer_of("genad_fast.cli")
