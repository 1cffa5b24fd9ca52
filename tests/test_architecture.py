"""The shape of the package: gradscope/'s import graph, built with `ast`, has no cycle and
no upward import between layers (docs/architecture.md).

Every import counts, at module level and inside functions. Imports under
`if TYPE_CHECKING:` (type names for annotations, never run) are left out, except inside
`gradscope/capture`: there a type name that closes a cycle is the same tangle as a run-time
import (a part that holds the `Tracer` "for type names only" still holds it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import gradscope

PACKAGE = Path(gradscope.__file__).parent
ROOT = PACKAGE.name
# packages whose `if TYPE_CHECKING:` imports count in the graph like any other
TYPES_COUNT_IN = ("gradscope.capture",)

# Bottom to top. A module may import modules of its own layer or of a lower one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("model", ("gradscope.model", "gradscope.events", "gradscope.traceio", "gradscope.version", "gradscope.signals",
               "gradscope.notebook", "gradscope.torch_errors")),
    ("capture", ("gradscope.capture",)),
    ("diagnostics", ("gradscope.diagnostics", "gradscope.series")),
    ("render", ("gradscope.render",)),
    ("api", ("gradscope", "gradscope.api", "gradscope.cli", "gradscope.cli_options", "gradscope.cli_outputs", "gradscope.runner",
             "gradscope.script_end", "gradscope.tracebacks", "gradscope.distributed", "gradscope.methods",
             "gradscope.examples")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, found = -1, 0
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert best >= 0, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for sub in node.body:
                skip.update(id(x) for x in ast.walk(sub))
    return skip


def _types_count(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in TYPES_COUNT_IN)


def import_graph() -> nx.DiGraph:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for module, path in paths.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = set() if _types_count(module) else _type_checking_only(tree)
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from . import x` imports the submodule x when there is one
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in paths else target for a in node.names]
            for target in targets:
                while target and target not in paths and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in paths and target != module and target.split(".")[0] == ROOT:
                    graph.add_edge(module, target, line=node.lineno)
    return graph


def test_the_graph_sees_imports():
    graph = import_graph()
    assert graph.has_edge("gradscope.capture.tracer", "gradscope.capture.recorder")
    assert graph.has_edge("gradscope.cli", "gradscope.api")  # (a function-level import)
    assert len(graph) > 60


def test_the_graph_sees_type_checking_imports_in_capture_only():
    """A capture module's `if TYPE_CHECKING:` import is an edge; the model's is not."""
    graph = import_graph()
    assert graph.has_edge("gradscope.capture.calltree", "gradscope.capture.modulecalls")  # (types only)
    assert not graph.has_edge("gradscope.model", "gradscope.methods")


def test_no_import_cycle():
    graph = import_graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_no_capture_part_imports_the_tracer():
    """The parts of capture get the per-trace state (state.py) or narrow callbacks, never the
    `Tracer`: only the package's `__init__` imports it, to export it."""
    importers = sorted(a for a, b in import_graph().in_edges("gradscope.capture.tracer")
                       if a.startswith("gradscope.capture"))
    assert importers == ["gradscope.capture"]


def test_no_upward_import():
    graph = import_graph()
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]}) at line {data['line']}"
        for a, b, data in graph.edges(data=True)
        if layer_of(b) > layer_of(a)
    ]
    assert upward == []


def test_the_model_imports_no_gradscope_module():
    """model.py imports only its typed event records (events.py), which import nothing."""
    graph = import_graph()
    assert sorted(graph.successors("gradscope.model")) == ["gradscope.events"]
    assert sorted(graph.successors("gradscope.events")) == []


def test_the_model_builds_its_objects_plainly():
    """No `object.__new__` shortcuts in the model (tests/test_model_plain.py checks traceio, render and the walk)."""
    assert "object.__new__" not in (PACKAGE / "model.py").read_text()
