"""SVG of one graph: DOT from `dot.py`, laid out by `layout.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..model import Diagnostic, Graph
from .dot import graph_to_dot
from .layout import DEFAULT_TIMEOUT, layout


def graph_to_svg(
    graph: Graph,
    diagnostics: Sequence[Diagnostic] = (),
    *,
    title: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    graph_id: str = "gs",
    dot_path: Path | None = None,
    depth: int | str | None = "auto",
    expand: Sequence[str] = (),
    fold: bool = True,
) -> str:
    """The SVG document of `graph`, with `diagnostics` highlighted; `depth`, `expand` and
    `fold` choose which module calls are drawn as boxes (see collapse.py).

    Raises `layout.LayoutError` when Graphviz takes longer than `timeout` seconds; the
    DOT is then at `dot_path` (or a temporary file named in the message).
    """
    source = graph_to_dot(graph, diagnostics, title=title, graph_id=graph_id, depth=depth, expand=expand, fold=fold)
    return layout(source, "svg", timeout=timeout, dot_path=dot_path).decode("utf-8")


def strip_prolog(svg: str) -> str:
    """The `<svg>` element alone, without the XML declaration, DOCTYPE and comments
    before it, ready to go inline into HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
