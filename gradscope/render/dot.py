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
from typing import Callable, Iterable, Mapping, Sequence

import graphviz

from ..model import Diagnostic, Edge, Graph, Node, TensorSummary
from . import collapse, fmt
from .boxes import box_drawer, loop_label, run_notes
from .names import display_names

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
    requires_grad: bool = False,
    depth: int | str | None = "auto",
    expand: Sequence[str] = (),
    fold: bool = True,
) -> str:
    """The DOT source of `graph`, with the nodes and edges that `diagnostics` name in red.

    `title` goes above the legend at the bottom; `graph_id` prefixes the SVG element ids,
    so several graphs can share one HTML page. `returned` maps node ids to what
    `torch.autograd.grad` returned for them: that, not `.grad`, is the answer of such a pass.
    `requires_grad` shows each node's requires_grad, and for an op where it comes from.
    `depth`, `expand`, `fold`: which module calls are drawn as boxes (see collapse.py).
    """
    g = graphviz.Digraph(name=graph_id, format="svg")
    g.attr("graph", id=graph_id, rankdir="TB", nodesep="0.35", ranksep="0.45", fontname=FONT,
           labelloc="b", labeljust="l", newrank="true")
    g.attr("node", fontname=FONT, fontsize="11", margin="0.12,0.06", penwidth="1.3")
    g.attr("edge", fontname=FONT, fontsize="10", color=GRAD, dir="back", arrowsize="0.8")

    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}  # never put user ids into DOT
    flagged = {nid for d in diagnostics for nid in d.nodes if nid in ids}
    shown = collapse.view(graph, depth, expand, fold, flagged)
    boxes = _box_drawers(graph, shown, diagnostics, ids)

    addends: dict[str, list[TensorSummary | None]] = {}
    inputs: dict[str, list[str]] = {}
    for e in graph.edges:
        addends.setdefault(e.src, []).append(e.grad)
        inputs.setdefault(e.dst, []).append(e.src)
    drawing = _Drawing(ids, flagged, returned or {}, addends, inputs if requires_grad else None,
                       display_names(forward_order(graph.nodes)), run_notes(graph, shown))
    _add_nodes(g, shown.nodes, drawing, boxes)
    for e in shown.edges:
        if e.src in ids and e.dst in ids:
            red = e.src in flagged and e.dst in flagged
            g.edge(ids[e.src], ids[e.dst], label=_edge_label(e, drawing.names), **_red_edge(red))
    for i, loop in enumerate(shown.loops):  # a note beside the first copy of an unrolled loop
        if loop.first in ids:
            g.node(f"loop{i}", label=loop_label(loop), shape="note", style="dashed", color="#57534e")
            g.edge(f"loop{i}", ids[loop.first], style="dotted", arrowhead="none", dir="none", color="#57534e")
    for i, d in enumerate(diagnostics):
        _add_note(g, i, d, [ids[n] for n in d.nodes if n in ids])

    used = {kind_of(n) for n in shown.nodes} | {"op", "leaf"} | ({"module"} if shown.boxes else set())
    g.attr("graph", label=_legend(title, [k for k in STYLES if k in used], bool(diagnostics)))
    return g.source


# -- nodes -----------------------------------------------------------------------------
@dataclass
class _Drawing:
    """What drawing a node needs beyond the node: its DOT id, whether a diagnostic flags it,
    what autograd.grad returned for it, the gradients its edges carried."""

    ids: dict[str, str]
    flagged: set[str]
    returned: Mapping[str, TensorSummary | None]
    addends: dict[str, list[TensorSummary | None]]
    inputs: dict[str, list[str]] | None  # ids of each node's inputs, to show requires_grad
    names: dict[str, str]  # the name drawn for each node
    notes: Mapping[str, str]  # cluster titles of folded module calls (`×12` and their norms)
    clusters: int = 0


def _box_drawers(graph: Graph, shown: collapse.View, diagnostics: Sequence[Diagnostic],
                 ids: dict[str, str]) -> list[tuple[str, Callable[[graphviz.Digraph], None]]]:
    """(enclosing module path, a function that adds the box) per collapsed box; the nodes
    a box hides are drawn as that box (`ids`), so diagnostics and edges point at it."""
    drawers: list[tuple[str, Callable[[graphviz.Digraph], None]]] = []
    for b in shown.boxes:
        ids[b.id] = b.id
        codes = [d.code for d in diagnostics if b.nodes.intersection(d.nodes)]
        parent = graph.module_calls[b.parent].path if b.parent is not None else ""
        drawers.append((parent, box_drawer(b, codes)))
    for nid, box_id in shown.where.items():
        ids[nid] = box_id
    return drawers


def _add_nodes(g: graphviz.Digraph, nodes: list[Node], drawing: _Drawing,
               boxes: Sequence[tuple[str, object]] = ()) -> None:
    """Add nodes, each inside the clusters of its module path (`encoder.layers.0` sits in
    `encoder` > `encoder.layers` > `encoder.layers.0`; a second call of a module is a
    cluster of its own), and the boxes of collapsed calls in their enclosing module's."""
    tree: dict = {}
    for n in forward_order(nodes):
        _level(tree, n.module, n.module_call).setdefault(None, []).append(n)
    for path, draw in boxes:
        _level(tree, path, None).setdefault(None, []).append(draw)
    _add_level(g, tree, drawing)


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


def _add_level(g: graphviz.Digraph, level: dict, drawing: _Drawing) -> None:
    for n in level.get(None, []):
        if callable(n):  # a collapsed module call (see _box_drawers)
            n(g)
            continue
        returned = drawing.returned[n.id] if n.id in drawing.returned else _NOT_ASKED
        label = node_label(n, returned, drawing.addends.get(n.id, ()), drawing.names[n.id])
        if drawing.inputs is not None:
            inputs = [drawing.names.get(i, "?") for i in drawing.inputs.get(n.id, [])]
            label = _with_row(label, _requires_grad_row(n, inputs))
        g.node(drawing.ids[n.id], label=label, **_node_attrs(n, n.id in drawing.flagged))
    for path, sub in level.items():
        if path is None:
            continue
        drawing.clusters += 1
        with g.subgraph(name=f"cluster_m{drawing.clusters}") as c:
            label = drawing.notes.get(path) or f"<font point-size='10' color='{GREY}'>{fmt.esc(path, 60)}</font>"
            c.attr(label=f"<{label}>", labelloc="t" if path in drawing.notes else "b",
                   style="rounded,dashed", color="#a8a29e", labeljust="l")
            _add_level(c, sub, drawing)


def _node_attrs(node: Node, flagged: bool) -> dict[str, str]:
    s = STYLES[kind_of(node)]
    attrs = {"shape": s.shape, "style": s.style, "fillcolor": s.fill, "color": s.border,
             "tooltip": tooltip(node)}
    if flagged:
        attrs.update(color=RED, penwidth="3")
    return attrs


def tooltip(node: Node) -> str:
    """What hovering a node shows: its full name, op and grad_fn, source line and module,
    one per line (as a Graphviz escString: a backslash is doubled, `\\n` breaks a line)."""
    kind = "parameter" if node.is_parameter else "leaf tensor" if node.kind == "leaf" else "op"
    lines = [f"{node.name or '?'} ({kind})"]
    if node.kind != "leaf":
        lines.append(f"op {node.op or '?'}")
    if node.source is not None:
        code = fmt.code(node.source.code)
        src = node.source  # a notebook cell's temporary file means nothing to the reader
        where = src.short if src.cell is not None else f"{src.file}:{src.line}"
        lines.append(where + (f"  {code}" if code else ""))
    if node.module:
        lines.append(f"module {node.module}")
    # escaped: Graphviz keeps entities as they are, and a stand-in picture (the DOT) stays inert
    return "\\n".join(fmt.esc(line).replace("\\", "\\\\") for line in lines)


def _row(text: str, size: int | None = None, color: str | None = None) -> str:
    """One line of an HTML-like label; `text` must already be escaped."""
    if size or color:
        attrs = (f' point-size="{size}"' if size else "") + (f' color="{color}"' if color else "")
        text = f"<font{attrs}>{text}</font>"
    return f"<tr><td>{text}</td></tr>"


_NOT_ASKED = object()  # the node was not among autograd.grad's inputs


def node_label(node: Node, returned: object = _NOT_ASKED, addends: Sequence[TensorSummary | None] = (),
               name: str | None = None) -> str:
    """The HTML-like label of a node. Every piece of user text is escaped here.

    `returned`: what autograd.grad returned for this node, when it was one of its inputs.
    `addends`: the gradients sent to a leaf along its edges (shown as their sum when small).
    `name`: the name to draw (see names.py), the node's own by default.
    """
    name = node.name if name is None else name
    rows = [_row(_headline(node, name))]
    if node.kind != "leaf":
        if node.grad_fn:
            rows.append(_row(fmt.esc(node.grad_fn, 40), SMALL_FONT, GREY))
    if node.source is not None:
        where = fmt.esc(node.source.short, 40)
        code = fmt.esc(fmt.code(node.source.code), CODE_LIMIT)
        rows.append(_row(f"{where}  <i>{code}</i>" if code else where, SMALL_FONT))
    if node.shape is not None or node.dtype:
        text = fmt.shape(node.shape) + (" " + fmt.esc(node.dtype.replace("torch.", ""), 20) if node.dtype else "")
        rows.append(_row(text, SMALL_FONT, GREY))
    value = fmt.value(node.value)
    if value is not None:  # the forward value, so `∂y/∂a = b = 2` can be read off b's box
        rows.append(_row(f"{fmt.esc(name or node.op)} = {fmt.esc(value, 40)}", 12))
    if returned is not _NOT_ASKED:  # autograd.grad leaves .grad alone: its answer is returned
        got = fmt.esc(fmt.tensor(returned), 40)  # type: ignore[arg-type]
        rows.append(_row(f'autograd.grad returned <font point-size="16"><b>{got}</b></font>', color=GRAD))
    total = _grad_sum(node, addends, name)
    if total is not None and returned is _NOT_ASKED:
        rows.append(_row(f'<font point-size="16"><b>{fmt.esc(total, 80)}</b></font>', color=GRAD))
    elif node.kind == "leaf" and (node.grad_before is not None or node.grad_after is not None):
        before = fmt.esc(fmt.tensor(node.grad_before), 40)
        after = fmt.esc(fmt.tensor(node.grad_after), 40)
        big = returned is _NOT_ASKED
        after = f'<font point-size="16"><b>{after}</b></font>' if big else after
        rows.append(_row(f".grad {before} → {after}", None if big else SMALL_FONT, GRAD))
    if node.is_root and node.seed is not None:  # gradscope.graph(y): no backward, so no seed
        rows.append(_row(f"root · seed <b>{fmt.esc(fmt.tensor(node.seed), 40)}</b>", color="#9d174d"))
    if node.saved:  # what a node no line shows computes with: pow's exponent, mul's factor
        shown = ", ".join(f"{fmt.esc(k, 20)} = {fmt.esc(fmt.value(v) or '…', 20)}" for k, v in node.saved.items())
        rows.append(_row(f"saved {shown}", SMALL_FONT, "#6d28d9"))
    if node.created_by_backward and node.created_by:
        op, _, call = node.created_by.partition("; ")
        rows.append(_row(f"made by backward of {fmt.esc(op, 50)}", SMALL_FONT, "#6d28d9"))
        if call:
            rows.append(_row(fmt.esc(call, 90), SMALL_FONT, "#6d28d9"))
    return '<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def _requires_grad_row(node: Node, inputs: list[str]) -> str:
    """`requires_grad=True` and why: set on a leaf, inherited by an op from its inputs."""
    flag = f"<b>requires_grad={node.requires_grad}</b>"
    if node.kind == "leaf":
        why = "set when it was created" if node.requires_grad else ""
    else:
        why = "from " + ", ".join(fmt.esc(n, 30) for n in dict.fromkeys(inputs)) if inputs else ""
    return _row(f"{flag} {why}".strip(), None, "#047857")


def _with_row(label: str, row: str) -> str:
    """A node label with one more row at the end."""
    return label[: -len("</table>>")] + row + "</table>>"


def _grad_sum(node: Node, addends: Sequence[TensorSummary | None], name: str) -> str | None:
    """`w.grad = 2 + 3 = 5`: a leaf's .grad as the sum of what its edges sent (after what it
    held before, when it held a number), when every addend is one number and they do add
    up to what .grad became (a hook may have changed it: then no sum is shown)."""
    if node.kind != "leaf" or not addends or node.grad_after is None:
        return None
    parts = [a.scalar() if a is not None else None for a in addends]
    before = node.grad_before.scalar() if node.grad_before is not None else 0.0
    after = node.grad_after.scalar()
    numbers = [before, after, *parts]
    plain = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(plain) != len(numbers):
        # not numbers to add up: what .grad became, when it was None before
        return f"{name or 'leaf'}.grad = {fmt.tensor(node.grad_after)}" if node.grad_before is None else None
    held, total, *sent = plain
    summands = [held, *sent] if node.grad_before is not None else sent
    if abs(sum(summands) - total) > 1e-6 * max(1.0, abs(total)):
        return None
    terms = " + ".join(fmt.num(p) for p in summands) + " = " if len(summands) > 1 else ""
    return f"{name or 'leaf'}.grad = {terms}{fmt.num(total)}"


def _headline(node: Node, shown: str) -> str:
    """`<b>y</b> = mul` for a named op, `<b>mul</b>` for an unnamed one, `<b>w</b>` for a leaf."""
    name = fmt.esc(shown)
    op = fmt.esc(node.op or "", 30)
    tag = ' <font point-size="9">(parameter)</font>' if node.is_parameter else ""
    if node.kind == "leaf" or not op:
        return f"<b>{name or op or fmt.esc(node.grad_fn, 40) or '?'}</b>{tag}"
    if name and name != node.op:
        return f"<b>{name}</b> = {op}{tag}"
    return f"<b>{op}</b>{tag}"


# -- edges -----------------------------------------------------------------------------
def _edge_label(edge: Edge, names: dict[str, str]) -> str:
    """`grad 2` (bold) over `∂y/∂a = 2` (small): what flowed back, and the local derivative."""
    rows = []
    if edge.grad is not None:
        rows.append(f'<font point-size="12" color="{GRAD}"><b>grad {fmt.esc(fmt.tensor(edge.grad), 40)}</b></font>')
    local = fmt.local(edge.local)
    if local is not None:
        rows.append(f'<font point-size="{SMALL_FONT}" color="{GREY}">{_partial(edge, names)} = {fmt.esc(local, 40)}</font>')
    return "<" + "<br/>".join(rows) + ">" if rows else ""


def _partial(edge: Edge, names: dict[str, str]) -> str:
    """`∂y/∂a` when both ends have short names, else `local`."""
    dst, src = names.get(edge.dst), names.get(edge.src)
    if dst and src and len(dst) <= 12 and len(src) <= 12:
        return f"∂{fmt.esc(dst)}/∂{fmt.esc(src)}"
    return "local"


def _red_edge(red: bool) -> dict[str, str]:
    return {"color": RED, "penwidth": "2.5", "fontcolor": RED} if red else {}


# -- diagnostics and legend ------------------------------------------------------------
def _add_note(g: graphviz.Digraph, i: int, d: Diagnostic, targets: list[str]) -> None:
    # Graphviz rejects an empty <font></font>, so the source line is added only when known.
    where = f'<br/><font point-size="{SMALL_FONT}">{fmt.esc(fmt.lines_of(d), 80)}</font>' if d.sources else ""
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
    head = "".join(f'<tr><td colspan="{span}" align="left"><b>{fmt.esc(line, 120)}</b></td></tr>'
                   for line in (title or "").splitlines())
    return f'<<table border="0" cellspacing="4" cellpadding="3">{head}<tr>{cells}</tr></table>>'
