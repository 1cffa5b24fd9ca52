"""How the model shows in Jupyter: a `Graph` as SVG, a `Pass` as its graph in the report's
pan/zoom frame with its leaves' gradients (a `Trace` shows as the report itself).

Every display gets element ids of its own, so a notebook showing the same graph twice,
or several reports, never has two elements with one id.
"""

from __future__ import annotations

from ..model import Graph, Pass
from . import fmt
from .html import CSS, _leaf_table  # the report's own leaf table, shared on purpose
from .html_frame import graph_frame, id_prefix, report_script, unique_ids
from .layout import LayoutError, layout
from .select import pass_dot, pass_title
from .svg import graph_to_svg, strip_prolog


def graph_svg(graph: Graph) -> str:
    """`graph` as an inline SVG with ids no other display shares."""
    return unique_ids(strip_prolog(graph_to_svg(graph)), id_prefix(standalone=False))


def pass_html(p: Pass) -> str:
    """Pass `p`'s graph at full size in a pan/zoom frame, its caption and its leaf table."""
    try:
        picture: str | LayoutError = layout(pass_dot(None, p), "svg").decode("utf-8")
    except LayoutError as exc:
        picture = exc
    body = f"<h4>{fmt.esc(pass_title(p))}</h4>{graph_frame(picture)}{_leaf_table(p)}"
    style = f"<style>{CSS.read_text(encoding='utf-8')}</style>"
    return f'{style}<div class="gs-report">{unique_ids(body, id_prefix(standalone=False))}</div>{report_script()}'
