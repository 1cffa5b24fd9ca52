"""Drawing one `Graph` (not a whole trace) to a file: `Graph.render(path)`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..model import Graph
from .dot import graph_to_dot
from .layout import DEFAULT_TIMEOUT, layout

GRAPH_EXTENSIONS = (".svg", ".png", ".dot")


def render_graph(graph: Graph, path: str | Path, depth: int | str | None = "auto", expand: Sequence[str] = (),
                 fold: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Write `graph` to `path` (`.svg`, `.png` or `.dot`, by extension) and return the path."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in GRAPH_EXTENSIONS:
        raise ValueError(f"cannot render a graph to {path.name!r}: use one of {', '.join(GRAPH_EXTENSIONS)}")
    source = graph_to_dot(graph, depth=depth, expand=expand, fold=fold)
    if ext == ".dot":
        path.write_text(source, encoding="utf-8")
    else:
        path.write_bytes(layout(source, ext[1:], timeout=timeout, dot_path=path.with_suffix(".dot")))
    return path
