#!/usr/bin/env python3
"""Static check of genad_fast's import graph: no cycles, and no upward import (DESIGN.md's layers).

DESIGN.md's layers say data flows down and nothing calls up. This reads every ``.py`` file of
``genad_fast/`` (``kernels/`` as ``genad_fast.kernels``, as the wheel ships it) and ``bench/`` with
:mod:`ast`, never importing them, and collects every import statement, at module level and inside
functions alike: a function-level (lazy) import that only exists to dodge a cycle is still a cycle of the
design, it merely fails later and elsewhere. ``importlib.import_module("literal")`` and
``__import__("literal")`` count as imports too.

An edge goes to the module an import names: ``import a.b`` and ``from a.b import c`` (``c`` not a module)
to ``a.b``; ``from a import b`` (``b`` a module) to ``a.b``. Parent packages are not added: Python runs
``a/__init__.py`` before ``a.b`` whatever imports what, so counting it would make every package its own
cycle. Only modules of the scanned trees are nodes; third-party imports are ignored.

Reported, with file and line of every edge involved:

- every cycle of the module graph (each strongly connected component, with one cycle through it);
- every upward import: the layers of :data:`LAYERS` (reference/extension < backend choice < ops < models
  and score utilities < detectors < data, evaluation and provenance < package root and entry points < bench);
  a module in no layer is reported too, so a new top-level module has to be placed;
- every import of ``genad_fast.cli`` from another genad_fast module (the CLI is the top of the
  package: everything it uses must be importable without it);
- every import of ``bench`` from genad_fast (bench/ is not in the wheel: the package cannot need it).

Usage: ``python scripts/check_imports.py [--graph] [ROOT]``; exit status 1 if anything is reported.
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

#: Source folder -> the package name it is imported as.
TREES = {"genad_fast": "genad_fast", "kernels": "genad_fast.kernels", "bench": "bench"}
#: Modules at the top of genad_fast: no other genad_fast module may import them.
TOP = ("genad_fast.cli", "genad_fast.__main__")
#: Packages that genad_fast must not import at all (not shipped in the wheel).
OUTSIDE = ("bench",)
#: DESIGN.md's layers, bottom to top, as module-name prefixes (the longest matching prefix decides). A module
#: may import its own layer and the layers below; an import of a higher layer is an upward import. The package
#: root ``genad_fast`` (its ``__init__`` re-exports the public names) sits at the top with the entry points (the
#: CLI and the demo, which use the package as a user does).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("genad_fast._version", "genad_fast._extras", "genad_fast._C", "genad_fast._ext", "genad_fast.reference",
     "genad_fast.kernels"),
    ("genad_fast._backend",),
    ("genad_fast.ops",),
    ("genad_fast.nn", "genad_fast.series", "genad_fast.periodicity", "genad_fast.metrics", "genad_fast.thresholds",
     "genad_fast._params"),
    ("genad_fast.detectors", "genad_fast.export", "genad_fast.streaming"),
    ("genad_fast.data", "genad_fast.datasets", "genad_fast.provenance", "genad_fast.plotting",
     "genad_fast.eval_plot", "genad_fast.evaluation", "genad_fast.distributed"),
    ("genad_fast", "genad_fast.cli", "genad_fast._cli", "genad_fast.__main__", "genad_fast.demo"),
    ("bench",),
)


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (the longest matching prefix), or None for a module in no layer."""
    best, best_len = None, -1
    for rank, prefixes in enumerate(LAYERS):
        for p in prefixes:
            # The package root names itself only: as a prefix it would place every new module at the top.
            if (module == p or (p != "genad_fast" and module.startswith(p + "."))) and len(p) > best_len:
                best, best_len = rank, len(p)
    return best


#: Compiled extension modules (built by CMake, absent from a fresh checkout): leaves of the graph, so that
#: ``from genad_fast import _C`` is an edge to ``genad_fast._C``, not to the package ``genad_fast``.
BINARY = ("genad_fast._C",)


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``; ``lazy`` when the import runs inside a function."""

    source: str
    target: str
    path: str
    line: int
    lazy: bool

    def where(self) -> str:
        return f"{self.path}:{self.line}{' (in a function)' if self.lazy else ''}"


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the scanned trees under ``root``."""
    out: dict[str, Path] = {}
    for folder, package in TREES.items():
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    for name in BINARY:
        out.setdefault(name, root / (name.replace(".", "/") + ".so"))
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a scanned module, or None (third-party)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _literal_import(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")`` -> ``"x"``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


class _Imports(ast.NodeVisitor):
    """Collects ``(imported name, line, lazy)`` from one module, resolving relative imports."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0  # > 0 inside a function body
        self.found: list[tuple[str, int, bool]] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            # ``from a import b``: the module a.b if there is one (resolved later), else a itself.
            self.found.append((f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno, self.depth > 0))

    def visit_Call(self, node: ast.Call) -> None:
        name = _literal_import(node)
        if name is not None:
            self.found.append((name, node.lineno, self.depth > 0))
        self.generic_visit(node)


def import_graph(root: Path) -> tuple[dict[str, Path], list[Edge]]:
    """The scanned modules and every import edge between them (self-imports dropped)."""
    root = Path(root)
    modules = module_files(root)
    edges: list[Edge] = []
    seen: set[tuple[str, str, int]] = set()
    for module, path in modules.items():
        if module in BINARY:
            continue
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for name, line, lazy in visitor.found:
            target = _resolve(name, modules)
            if target is not None and target != module and (module, target, line) not in seen:
                seen.add((module, target, line))  # ``from a import b, c``: one edge per line
                edges.append(Edge(module, target, str(path.relative_to(root)), line, lazy))
    return modules, edges


def strongly_connected(nodes, edges: list[Edge]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module, each sorted, largest first."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        succ[e.source].append(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(succ):
        if start in index:
            continue
        # Iterative DFS (a recursive one could hit Python's recursion limit on a deep chain).
        work = [(start, iter(sorted(set(succ[start]))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(set(succ[child])))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out, key=lambda c: (-len(c), c))


def one_cycle(component: list[str], edges: list[Edge]) -> list[Edge]:
    """A shortest cycle through the first module of ``component``, as edges (breadth-first search)."""
    members = set(component)
    inside = [e for e in edges if e.source in members and e.target in members]
    start = component[0]
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for e in inside:
                if e.source != node:
                    continue
                if e.target == start:
                    path = [e]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if e.target not in came:
                    came[e.target] = e
                    nxt.append(e.target)
        frontier = nxt
    return []  # unreachable for a strongly connected component


def layer_violations(edges: list[Edge]) -> list[Edge]:
    """Upward imports (:data:`LAYERS`): among them every import of the CLI from below it and of bench/ from
    genad_fast; and every import from or of a module that is in no layer (a new top-level module must be
    placed in the table)."""
    def under(name: str, prefixes) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    bad = []
    for e in edges:
        if not under(e.source, ("genad_fast",)):
            continue  # bench/ may import anything of genad_fast: it sits on top
        if under(e.target, OUTSIDE) or (e.target in TOP and e.source not in TOP):
            bad.append(e)
            continue
        src, dst = layer_of(e.source), layer_of(e.target)
        if src is None or dst is None or dst > src:
            bad.append(e)
    return bad


def report(root: Path, show_graph: bool = False) -> tuple[list[str], int]:
    """The report's lines and the number of problems (cycles + layer violations)."""
    modules, edges = import_graph(root)
    lines = [f"{len(modules)} modules, {len(edges)} import edges "
             f"({sum(e.lazy for e in edges)} inside functions)"]
    if show_graph:
        for e in sorted(edges, key=lambda e: (e.source, e.target, e.line)):
            lines.append(f"  {e.source} -> {e.target}  [{e.where()}]")
    components = strongly_connected(modules, edges)
    for i, comp in enumerate(components, 1):
        lines.append(f"cycle {i}: {len(comp)} modules: {', '.join(comp)}")
        for e in one_cycle(comp, edges):
            lines.append(f"    {e.source} -> {e.target}  [{e.where()}]")
    violations = layer_violations(edges)
    for e in violations:
        lines.append(f"layer: {e.source} imports {e.target}  [{e.where()}]")
    problems = len(components) + len(violations)
    lines.append("no import cycles, no upward imports (layers: "
                 + " < ".join("/".join(p.rpartition(".")[2] for p in layer) for layer in LAYERS) + ")"
                 if not problems
                 else f"{len(components)} cycle(s), {len(violations)} layer violation(s)")
    return lines, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent),
                        help="repository root (default: this script's checkout)")
    parser.add_argument("--graph", action="store_true", help="also list every edge")
    args = parser.parse_args(argv)
    lines, problems = report(Path(args.root), args.graph)
    print("\n".join(lines))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
