"""The explorer's pieces of report.html: one panel per distinct graph, its data as a JSON
block (a `<script type="application/json">`: data, never run), and the scripts it needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...model import Diagnostic, Pass
from .data import graph_data

HERE = Path(__file__).parent
JS = HERE / "explorer.js"
PANEL = HERE / "panel.js"
VIEW = HERE / "view.js"
CSS = HERE / "explorer.css"
GRAPHVIZ = HERE / "vendor" / "graphviz.js"


def explorer_scripts() -> list[str]:
    """The exact texts of the explorer's scripts (Graphviz, the details panel, then the
    explorer: the view's DOT and the explorer, one script of two files), in page order;
    their hashes go into the page's Content-Security-Policy."""
    text = [path.read_text(encoding="utf-8") for path in (GRAPHVIZ, PANEL, VIEW, JS)]
    return [text[0], text[1], text[2] + "\n" + text[3]]


def explorer_style() -> str:
    """The explorer's CSS (inline, as the rest of the report's)."""
    return CSS.read_text(encoding="utf-8")


def _json_block(data: object) -> str:
    # `<` as \u003c: no `</script>` or `<!--` inside the block, whatever the trace holds;
    # `=` as \u003d: no `id="` for unique_ids to rename inside it
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c").replace("=", "\\u003d").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script type="application/json" class="gs-x-data">{text}</script>'


def explorer_section(number: int, passes: Sequence[Pass], diagnostics: Sequence[Diagnostic] = ()) -> str:
    """The explorer of graph `number` (shared by `passes`): a toolbar, the view the page lays
    out, the details panel, and the graph's data. Without scripts it says so."""
    data = graph_data(number, passes, diagnostics)
    return (
        f'<div class="gs-x" data-gs-graph="{int(number)}" tabindex="0">'
        '<div class="gs-x-bar">'
        '<input type="search" class="gs-x-search" placeholder="search: name, op, module, file.py:12" '
        'aria-label="search the graph">'
        '<button type="button" data-gs-x="fit" title="fit to the frame (f)">fit</button>'
        '<button type="button" data-gs-x="in" title="zoom in (+)">+</button>'
        '<button type="button" data-gs-x="out" title="zoom out (−)">−</button>'
        '<button type="button" data-gs-x="less" title="collapse one level (c)">collapse</button>'
        '<button type="button" data-gs-x="more" title="expand one level (e)">expand</button>'
        '<button type="button" data-gs-x="all" title="expand everything">expand all</button>'
        '<button type="button" data-gs-x="reset" title="the default view (0)">default</button>'
        '<span class="gs-x-status">the explorer needs JavaScript</span></div>'
        '<div class="gs-x-main"><div class="gs-x-view"></div>'
        '<div class="gs-x-details"><p class="gs-x-hint">Click a node, a box or an edge for its numbers; '
        'click a box to expand it, its frame title to collapse it.</p></div></div>'
        f"{_json_block(data)}</div>"
    )
