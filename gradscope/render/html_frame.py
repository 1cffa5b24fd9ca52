"""Pieces of the HTML report that make a graph readable at any size, and keep a page's
element ids its own.

A graph is shown at its natural size (100 %, the size Graphviz laid it out at) inside a
frame that scrolls both ways; `report.js` adds drag-to-pan, Ctrl+wheel zoom and zoom
buttons. Without scripts (a notebook that does not run them) the frame still scrolls,
so every node, the root and the legend stay reachable; nothing is ever scaled down to
fit the page.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from . import fmt
from .layout import LayoutError
from .svg import strip_prolog

JS = Path(__file__).with_name("report.js")

# The help shown beside the zoom buttons; the buttons only appear once report.js runs.
_TOOLS = (
    '<span class="gs-tools">'
    '<button type="button" data-gs-zoom="out" title="zoom out">−</button>'
    '<button type="button" data-gs-zoom="reset" title="natural size">100%</button>'
    '<button type="button" data-gs-zoom="in" title="zoom in">+</button>'
    '<button type="button" data-gs-zoom="fit" title="fit the frame">fit</button>'
    '<span class="gs-help">drag to pan · Ctrl+wheel to zoom</span></span>'
)


def graph_frame(picture: str | LayoutError, href: str | None = None) -> str:
    """A laid-out graph in a scrolling pan/zoom frame, with a link to the full-size SVG
    file `href` when there is one; a layout error as a (wrapping) line of text."""
    if isinstance(picture, LayoutError):
        return f'<p class="gs-error">{fmt.esc(picture)}</p>'
    link = (f'<a class="gs-full" href="{fmt.esc(href)}" target="_blank" rel="noopener">full-size SVG</a>'
            if href else "")
    return (f'<div class="gs-frame"><div class="gs-bar">{_TOOLS}{link}</div>'
            f'<div class="gs-graph">{strip_prolog(picture)}</div></div>')


def report_script_text() -> str:
    """The text of the report's one script (pan and zoom); its hash is what the page's
    Content-Security-Policy allows to run."""
    return JS.read_text(encoding="utf-8")


def report_script() -> str:
    """The report's one script element, the same text on every page."""
    return f"<script>{report_script_text()}</script>"


def id_prefix(standalone: bool) -> str:
    """Ids of a page of its own stay as written (`report.html#pass-3` keeps working); a
    report shown in a notebook gets a prefix of its own, so two reports in one notebook
    never share an element id."""
    return "" if standalone else f"gs{uuid.uuid4().hex[:8]}-"


_ID = re.compile(r'\bid="([^"]*)"')
_REF = re.compile(r'(\bhref="#|url\(#)([^")]*)')


def unique_ids(html: str, prefix: str) -> str:
    """Give every `id` in `html` the `prefix`, and a suffix to each repeat (Graphviz gives
    clusters their graph's id), and point `href="#…"` and `url(#…)` at the new ids.

    User text is escaped before it gets here (a quote is `&quot;`), so only real
    attributes match.
    """
    renamed: dict[str, str] = {}
    seen: set[str] = set()

    def rename(m: re.Match[str]) -> str:
        new = prefix + m.group(1)
        k = 1
        while new in seen:
            k += 1
            new = f"{prefix}{m.group(1)}-{k}"
        seen.add(new)
        renamed.setdefault(m.group(1), new)
        return f'id="{new}"'

    html = _ID.sub(rename, html)
    return _REF.sub(lambda m: m.group(1) + renamed.get(m.group(2), prefix + m.group(2)), html)
