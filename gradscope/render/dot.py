"""DOT source for one autograd graph, built with the `graphviz` package from the model only.

Reading order: the forward runs top to bottom (inputs above the ops that use them),
and every edge arrow points the way the gradient flows during backward, from a consumer
back to its input, labelled with that gradient (bold) and the local derivative (small).
A leaf shows its `.grad` before and after the pass, the sum of the gradients that
reached it: in the lesson y = (x + w)(w + 1), w gets 2 along one edge and 3 along the
other, and its box reads `.grad None → 5`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import graphviz

from ..model import Diagnostic, Edge, Graph, Node, TensorSummary
from . import collapse, fmt
from .boxes import box_attrs, box_label, run_notes

FONT = "Helvetica"
SMALL_FONT = 9
GREY = "#57534e"
RED = "#dc2626"
GRAD = "#1d4ed8"  # gradients are blue everywhere: on edges and in leaf boxes
# Longest code text shown in a node before it is cut.
CODE_LIMIT = 48


@dataclass(frozen=True)
class Style:
    """How one kind of node looks; also its legend entry."""

    label: str
    fill: str
    border: str
    shape: str = "box"
    style: str = "filled"


STYLES = {
    "op": Style("op (grad_fn)", "#e0f2fe", "#0284c7", style="rounded,filled"),
    "leaf": Style("leaf tensor", "#dcfce7", "#16a34a"),
    "param": Style("parameter", "#fef3c7", "#d97706"),
    "root": Style("root (backward starts here)", "#fce7f3", "#db2777", style="rounded,filled,bold"),
    "backward": Style("made by backward (create_graph)", "#ede9fe", "#7c3aed", style="rounded,filled,dashed"),
    "module": Style("module call, collapsed", "#f5f5f4", "#57534e", style="filled,bold"),
}


def kind_of(node: Node) -> str:
    """The style key of a node: root wins over created-by-backward, parameter over leaf."""
    if node.is_root:
        return "root"
    if node.created_by_backward:
        return "backward"
    if node.kind == "leaf":
        return "param" if node.is_parameter else "leaf"
    return "op"


def diagnostics_for(diagnostics: Iterable[Diagnostic], graph: Graph, pass_index: int | None) -> list[Diagnostic]:
    """The diagnostics that belong on this pass's graph: those of the pass, and those
    with no pass and no event graph of their own that name one of its nodes."""
    ids = {n.id for n in graph.nodes}
    return [
        d for d in diagnostics
        if (d.pass_index == pass_index and pass_index is not None)
        or (d.pass_index is None and d.event_index is None and ids.intersection(d.nodes))
    ]


def graph_to_dot(
    graph: Graph,
    diagnostics: Sequence[Diagnostic] = (),
    *,
    title: str | None = None,
    graph_id: str = "gs",
    returned: Mapping[str, TensorSummary | None] | None = None,
    depth: int | str | None = "auto",
    expand: Sequence[str] = (),
    fold: bool = True,
) -> str:
    """The DOT source of `graph`, with the nodes and edges that `diagnostics` name in red.

    `title` goes above the legend at the bottom; `graph_id` prefixes the SVG element ids,
    so several graphs can share one HTML page. `returned` maps node ids to what
    `torch.autograd.grad` returned for them: that, not `.grad`, is the answer of such a pass.
    `depth`, `expand`, `fold`: which module calls are drawn as boxes (see collapse.py).
    """
    g = graphviz.Digraph(name=graph_id, format="svg")
    g.attr("graph", id=graph_id, rankdir="TB", nodesep="0.35", ranksep="0.45", fontname=FONT,
           labelloc="b", labeljust="l", newrank="true")
    g.attr("node", fontname=FONT, fontsize="11", margin="0.12,0.06", penwidth="1.3")
    g.attr("edge", fontname=FONT, fontsize="10", color=GRAD, dir="back", arrowsize="0.8")

    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}  # never put user ids into DOT
    by_id = {n.id: n for n in graph.nodes}
    flagged = {nid for d in diagnostics for nid in d.nodes if nid in ids}
    shown = collapse.view(graph, depth, expand, fold, flagged)
    boxes = _box_drawers(graph, shown, diagnostics, ids)

    _add_nodes(g, shown.nodes, ids, flagged, returned or {}, boxes, run_notes(graph, shown))
    for e in shown.edges:
        if e.src in ids and e.dst in ids:
            red = e.src in flagged and e.dst in flagged
            g.edge(ids[e.src], ids[e.dst], label=_edge_label(e, by_id), **_red_edge(red))
    for i, d in enumerate(diagnostics):
        _add_note(g, i, d, [ids[n] for n in d.nodes if n in ids])

    used = {kind_of(n) for n in shown.nodes} | {"op", "leaf"} | ({"module"} if shown.boxes else set())
    g.attr("graph", label=_legend(title, [k for k in STYLES if k in used], bool(diagnostics)))
    return g.source


# -- nodes -----------------------------------------------------------------------------
def _box_drawers(graph: Graph, shown: collapse.View, diagnostics: Sequence[Diagnostic],
                 ids: dict[str, str]) -> list[tuple[str, object]]:
    """(enclosing module path, a function that adds the box) per collapsed box; the nodes
    a box hides are drawn as that box (`ids`), so diagnostics and edges point at it."""
    drawers = []
    for b in shown.boxes:
        ids[b.id] = b.id
        codes = [d.code for d in diagnostics if b.nodes.intersection(d.nodes)]
        parent = graph.module_calls[b.parent].path if b.parent is not None else ""
        drawers.append((parent, lambda g, b=b, codes=codes: g.node(b.id, label=box_label(b, codes), **box_attrs(b))))
    for nid, box_id in shown.where.items():
        ids[nid] = box_id
    return drawers


def _add_nodes(g: graphviz.Digraph, nodes: list[Node], ids: dict[str, str], flagged: set[str],
               returned: Mapping[str, TensorSummary | None], boxes: list[tuple[str, object]] = (),
               notes: Mapping[str, str] | None = None) -> None:
    """Add nodes, each inside the clusters of its module path (`encoder.layers.0` sits in
    `encoder` > `encoder.layers` > `encoder.layers.0`; a second call of a module is a
    cluster of its own), and the boxes of collapsed calls in their enclosing module's."""
    tree: dict = {}
    for n in forward_order(nodes):
        _level(tree, n.module, n.module_call).setdefault(None, []).append(n)
    for path, draw in boxes:
        _level(tree, path, None).setdefault(None, []).append(draw)
    counter = iter(range(1_000_000))
    _add_level(g, tree, ids, flagged, returned, counter, notes or {})


def _level(tree: dict, module: str | None, call: int | None) -> dict:
    level = tree
    parts = module.split(".") if module else []
    for depth in range(len(parts)):
        key = ".".join(parts[: depth + 1])
        level = level.setdefault(f"{key} (call {call})" if call and depth == len(parts) - 1 else key, {})
    return level


def forward_order(nodes: list[Node]) -> list[Node]:
    """Nodes in the order the forward made them, so Graphviz places inputs left to right
    as the code wrote them: by source line, a node without one staying after its
    predecessor in the (root-first) walk order, reversed."""
    keyed, last = [], 0
    for i, n in enumerate(reversed(nodes)):
        last = n.source.line if n.source is not None else last
        keyed.append((last, i, n))
    return [n for _, _, n in sorted(keyed, key=lambda k: k[:2])]


def _add_level(g: graphviz.Digraph, level: dict, ids: dict[str, str], flagged: set[str],
               returned: Mapping[str, TensorSummary | None], counter, notes: Mapping[str, str]) -> None:
    for n in level.get(None, []):
        if callable(n):  # a collapsed module call (see _box_drawers)
            n(g)
            continue
        label = node_label(n, returned[n.id] if n.id in returned else _NOT_ASKED)
        g.node(ids[n.id], label=label, **_node_attrs(n, n.id in flagged))
    for path, sub in level.items():
        if path is None:
            continue
        with g.subgraph(name=f"cluster_m{next(counter)}") as c:
            label = notes.get(path) or f"<font point-size='10' color='{GREY}'>{fmt.esc(path, 60)}</font>"
            c.attr(label=f"<{label}>", labelloc="t" if path in notes else "b",
                   style="rounded,dashed", color="#a8a29e", labeljust="l")
            _add_level(c, sub, ids, flagged, returned, counter, notes)


def _node_attrs(node: Node, flagged: bool) -> dict[str, str]:
    s = STYLES[kind_of(node)]
    attrs = {"shape": s.shape, "style": s.style, "fillcolor": s.fill, "color": s.border}
    if flagged:
        attrs.update(color=RED, penwidth="3")
    return attrs


def _row(text: str, size: int | None = None, color: str | None = None) -> str:
    """One line of an HTML-like label; `text` must already be escaped."""
    if size or color:
        attrs = (f' point-size="{size}"' if size else "") + (f' color="{color}"' if color else "")
        text = f"<font{attrs}>{text}</font>"
    return f"<tr><td>{text}</td></tr>"


_NOT_ASKED = object()  # the node was not among autograd.grad's inputs


def node_label(node: Node, returned: object = _NOT_ASKED) -> str:
    """The HTML-like label of a node. Every piece of user text is escaped here.

    `returned`: what autograd.grad returned for this node, when it was one of its inputs.
    """
    rows = [_row(_headline(node))]
    if node.kind != "leaf":
        if node.grad_fn:
            rows.append(_row(fmt.esc(node.grad_fn, 40), SMALL_FONT, GREY))
    if node.source is not None:
        where = fmt.esc(node.source.short, 40)
        code = fmt.esc(fmt.code(node.source.code), CODE_LIMIT)
        rows.append(_row(f"{where}  <i>{code}</i>" if code else where, SMALL_FONT))
    if node.shape is not None or node.dtype:
        text = fmt.shape(node.shape) + (" " + fmt.esc(node.dtype.replace("torch.", ""), 20) if node.dtype else "")
        value = fmt.value(node.value) if node.kind == "leaf" or node.is_root else None
        rows.append(_row(text + (f" = {fmt.esc(value, 40)}" if value is not None else ""), SMALL_FONT, GREY))
    if returned is not _NOT_ASKED:  # autograd.grad leaves .grad alone: its answer is returned
        got = fmt.esc(fmt.tensor(returned), 40)  # type: ignore[arg-type]
        rows.append(_row(f'autograd.grad returned <font point-size="16"><b>{got}</b></font>', color=GRAD))
    if node.kind == "leaf" and (node.grad_before is not None or node.grad_after is not None):
        before = fmt.esc(fmt.tensor(node.grad_before), 40)
        after = fmt.esc(fmt.tensor(node.grad_after), 40)
        big = returned is _NOT_ASKED
        after = f'<font point-size="16"><b>{after}</b></font>' if big else after
        rows.append(_row(f".grad {before} → {after}", None if big else SMALL_FONT, GRAD))
    if node.is_root:
        rows.append(_row(f"root · seed <b>{fmt.esc(fmt.tensor(node.seed), 40)}</b>", color="#9d174d"))
    if node.created_by_backward and node.created_by:
        rows.append(_row(f"made by backward of {fmt.esc(node.created_by, 50)}", SMALL_FONT, "#6d28d9"))
    return '<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def _headline(node: Node) -> str:
    """`<b>y</b> = mul` for a named op, `<b>mul</b>` for an unnamed one, `<b>w</b>` for a leaf."""
    name = fmt.esc(node.name, 40)
    op = fmt.esc(node.op or "", 30)
    tag = ' <font point-size="9">(parameter)</font>' if node.is_parameter else ""
    if node.kind == "leaf" or not op:
        return f"<b>{name or op or fmt.esc(node.grad_fn, 40) or '?'}</b>{tag}"
    if name and name != node.op:
        return f"<b>{name}</b> = {op}{tag}"
    return f"<b>{op}</b>{tag}"


# -- edges -----------------------------------------------------------------------------
def _edge_label(edge: Edge, by_id: dict[str, Node]) -> str:
    """`grad 2` (bold) over `∂y/∂a = 2` (small): what flowed back, and the local derivative."""
    rows = []
    if edge.grad is not None:
        rows.append(f'<font point-size="12" color="{GRAD}"><b>grad {fmt.esc(fmt.tensor(edge.grad), 40)}</b></font>')
    local = fmt.local(edge.local)
    if local is not None:
        rows.append(f'<font point-size="{SMALL_FONT}" color="{GREY}">{_partial(edge, by_id)} = {fmt.esc(local, 40)}</font>')
    return "<" + "<br/>".join(rows) + ">" if rows else ""


def _partial(edge: Edge, by_id: dict[str, Node]) -> str:
    """`∂y/∂a` when both ends have short names, else `local`."""
    dst, src = by_id[edge.dst].name, by_id[edge.src].name
    if dst and src and len(dst) <= 12 and len(src) <= 12:
        return f"∂{fmt.esc(dst)}/∂{fmt.esc(src)}"
    return "local"


def _red_edge(red: bool) -> dict[str, str]:
    return {"color": RED, "penwidth": "2.5", "fontcolor": RED} if red else {}


# -- diagnostics and legend ------------------------------------------------------------
def _add_note(g: graphviz.Digraph, i: int, d: Diagnostic, targets: list[str]) -> None:
    # Graphviz rejects an empty <font></font>, so the source line is added only when known.
    where = f'<br/><font point-size="{SMALL_FONT}">{fmt.esc(d.sources[0].short, 40)}</font>' if d.sources else ""
    label = f'<<font color="{RED}"><b>{fmt.esc(d.code, 20) or "!"}</b> {fmt.esc(d.title, 60)}</font>{where}>'
    g.node(f"diag{i}", label=label, shape="note", style="filled", fillcolor="#fee2e2", color=RED)
    for t in targets:
        g.edge(f"diag{i}", t, style="dashed", color=RED, dir="none", constraint="false")


def _legend(title: str | None, kinds: list[str], diagnostics: bool) -> str:
    cells = "".join(
        f'<td bgcolor="{STYLES[k].fill}" border="1" color="{STYLES[k].border}">'
        f'<font point-size="{SMALL_FONT}">{STYLES[k].label}</font></td>'
        for k in kinds
    )
    cells += f'<td><font point-size="{SMALL_FONT}" color="{GRAD}">→ gradient flowing back</font></td>'
    if diagnostics:
        cells += f'<td border="1" color="{RED}"><font point-size="{SMALL_FONT}" color="{RED}">diagnostic</font></td>'
    span = len(kinds) + 1 + diagnostics
    head = f'<tr><td colspan="{span}" align="left"><b>{fmt.esc(title, 100)}</b></td></tr>' if title else ""
    return f'<<table border="0" cellspacing="4" cellpadding="3">{head}<tr>{cells}</tr></table>>'
