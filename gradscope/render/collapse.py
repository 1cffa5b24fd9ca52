"""What to draw of a big graph: module calls collapsed to boxes, repeated blocks folded.

A pure transform of the model (no DOT here): `view(graph, depth, expand, fold)` returns
the nodes drawn as themselves, the boxes that stand for whole module calls, and the edges
between them. A call's depth counts the module calls around it (the outermost module is
0, its children 1, `blocks.3.attn` in a GPT 2). With `depth=N` every call deeper than N
is one box, unless `expand` names it (or a call inside it); `fold` draws a run of calls
of the same structure that feed one another (blocks 0-11) as one box marked ×N.
`depth="auto"` draws a graph of at most `MAX_BOXES` nodes in full, as it is (unless it
holds an unrolled loop), and a larger one at the deepest depth that fits. `depth="modules"` (`MODULES`) is the coarsest
view: each outermost module call one box, the top module's too (drawn when even the
default view does not lay out in time). Unrolled loops are drawn once (loops.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..model import Edge, Graph, ModuleCall, Node
from .fold import FoldedRun, fold_open_runs, grad_norm, parameter_nodes, signature
from .loops import Loop, loops
from .memo import node_index

MAX_BOXES = 150  # what a person can take in on one screen (depth="auto")
MODULES = "modules"  # the module-level view: every outermost module call one box, the whole model too


@dataclass
class Box:
    """One module call drawn as a box, or a folded run of calls of the same structure."""

    id: str  # "box0", ...: never a node id
    calls: list[int]  # places in Graph.module_calls, in forward order
    path: str  # the first call's path
    last_path: str  # the last call's path (a fold: `blocks.11`)
    cls: str
    parent: int | None  # the enclosing call's place in Graph.module_calls
    nodes: set[str] = field(default_factory=set)  # the graph nodes it holds
    parameters: int = 0  # elements of its parameters (the first call's, for a fold)
    grad_norms: list[float | None] = field(default_factory=list)  # per call: its parameters' gradient norm
    inputs: list[list[int]] = field(default_factory=list)  # shapes of tensors entering it
    outputs: list[list[int]] = field(default_factory=list)  # ... and leaving it
    flagged: bool = False  # holds a node a diagnostic points at

    @property
    def count(self) -> int:
        return len(self.calls)

    @property
    def grad_norm(self) -> float | None:
        """Its parameters' gradient norm (a fold: over all its calls)."""
        known = [g for g in self.grad_norms if g is not None]
        return math.sqrt(sum(g * g for g in known)) if known else None


@dataclass
class DrawnLoop:
    """An unrolled loop drawn as its first copy: `first` is the drawn id (node or box) where
    its body starts, `count` the copies it stands for, `source` the body's first line."""

    first: str
    count: int
    period: int
    source: str


@dataclass
class View:
    """What to draw: `nodes` as themselves, `boxes`, and `edges` between them (an edge's
    `src`/`dst` is a node id or a box id). `where` maps each hidden node id to its box's id.
    `depth` is the depth drawn (None: every node)."""

    nodes: list[Node]
    boxes: list[Box]
    edges: list[Edge]
    where: dict[str, str] = field(default_factory=dict)
    depth: int | None = None
    runs: list[FoldedRun] = field(default_factory=list)  # open calls drawn once for a run (fold.py)
    loops: list[DrawnLoop] = field(default_factory=list)  # unrolled loops drawn once (loops.py)

    @property
    def size(self) -> int:
        """How many boxes the picture has (nodes drawn plus collapsed boxes)."""
        return len(self.nodes) + len(self.boxes)


def view(graph: Graph, depth: int | str | None = "auto", expand: Sequence[str] = (), fold: bool = True,
         flagged: Iterable[str] = ()) -> View:
    """What to draw of `graph` (see the module docstring). `flagged`: node ids that
    diagnostics point at (the boxes holding them are flagged too)."""
    if depth not in ("auto", None, MODULES) and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise ValueError(f"depth must be a whole number >= 0, None or 'auto', not {depth!r}")
    flagged = set(flagged)
    if depth == MODULES:
        return _collapse(graph, -1, _depths(graph.module_calls), expand, fold, flagged)
    if depth == "auto":
        full = View(list(graph.nodes), [], list(graph.edges))
        small = len(graph.nodes) <= MAX_BOXES and not (fold and loops(graph))
        if small or not (graph.module_calls or fold):  # (a small graph with a loop: drawn folded)
            return full
        depths = _depths(graph.module_calls)
        best = None
        for d in range(max(depths, default=0), -1, -1):
            best = _collapse(graph, d, depths, expand, fold, flagged)
            if best.size <= MAX_BOXES:
                break
        return best if best is not None and best.size < full.size else full
    if depth is None or not (graph.module_calls or fold):
        return View(list(graph.nodes), [], list(graph.edges))
    return _collapse(graph, int(depth), _depths(graph.module_calls), expand, fold, flagged)  # (a number here)


def _depths(calls: list[ModuleCall]) -> list[int]:
    """Each call's depth: the calls with a path around it and itself (the outermost module,
    path "", is 0)."""
    depths: list[int] = []
    for c in calls:
        above = depths[c.parent] if c.parent is not None else 0
        depths.append(above + (1 if c.path else 0))
    return depths


def _is_open(path: str, expand: Sequence[str]) -> bool:
    """Expanding `a.b` opens `a`, `a.b` and every call inside `a.b`."""
    return any(e == path or e.startswith(path + ".") or path.startswith(e + ".") for e in expand)


def _collapse(graph: Graph, depth: int, depths: list[int], expand: Sequence[str], fold: bool,
              flagged: set[str]) -> View:
    calls = graph.module_calls
    unrolled = [lp for lp in loops(graph) if not _holds_flagged(lp, flagged)] if fold else []
    copy_of: dict[str, str] = {}  # a later copy's node -> the first copy's
    for lp in unrolled:
        copy_of.update(lp.counterparts())
    # a call inside a later copy of a loop is drawn as the first copy's call
    copied = [bool(c.nodes) and all(n in copy_of for n in c.nodes) for c in calls]
    # a call is a box when deeper than `depth` and not expanded, unless inside a box already
    closed = [(bool(c.path) or depth < 0) and depths[i] > depth and not _is_open(c.path, expand)
              for i, c in enumerate(calls)]
    open_calls: list[int] = []
    in_box = [False] * len(calls)
    for i, c in enumerate(calls):
        in_box[i] = c.parent is not None and (in_box[c.parent] or closed[c.parent])
        if not in_box[i] and not closed[i] and c.path and not copied[i]:
            open_calls.append(i)
    where: dict[str, str] = {}
    expanded = {i for i in open_calls if _is_open(calls[i].path, expand)}
    runs, hidden = fold_open_runs(graph, open_calls, expanded, flagged, where) if fold else ([], set())
    gone = [False] * len(calls)  # hidden by an open fold, or inside a call that is
    boxes = []
    later: list[int] = []  # boxes of later copies of a loop: counted in the first copy's box
    for i, c in enumerate(calls):
        gone[i] = i in hidden or (c.parent is not None and gone[c.parent])
        if closed[i] and not in_box[i] and not gone[i]:
            if copied[i]:
                later.append(i)
            else:
                boxes.append(_box(graph, i))
    for b in boxes:
        for nid in b.nodes:
            where[nid] = b.id
    _absorb_leaves(graph, boxes, where)
    if fold:
        boxes = _fold(graph, boxes, where)
    for nid, first in copy_of.items():
        where[nid] = where.get(first, first)
    _count_copies(graph, boxes, later, copy_of, where, runs, open_calls)
    shown = _finish(graph, boxes, where, flagged, depth)
    shown.runs = runs
    shown.loops = [DrawnLoop(where.get(lp.blocks[0][0], lp.blocks[0][0]), lp.count, lp.period,
                             _first_line(graph, lp)) for lp in unrolled]
    return shown


def _holds_flagged(lp: Loop, flagged: set[str]) -> bool:
    """A loop whose later copies hold a node a diagnostic points at is drawn in full."""
    return any(n in flagged for block in lp.blocks[1:] for n in block)


def _first_line(graph: Graph, lp: Loop) -> str:
    by_id = node_index(graph)
    for nid in lp.blocks[0]:
        src = by_id[nid].source
        if src is not None:
            return src.short
    return ""


def _count_copies(graph: Graph, boxes: list[Box], later: list[int], copy_of: dict[str, str],
                  where: dict[str, str], runs: list[FoldedRun], open_calls: list[int]) -> None:
    """Count the calls of a loop's later copies in the first copy's box (`lstm1 LSTMCell
    ×199`), and mark the first copy's open calls ×N as an open fold is."""
    by_id = {b.id: b for b in boxes}
    for i in later:
        c = graph.module_calls[i]
        box = by_id.get(where.get(c.nodes[0], ""))
        if box is not None:
            box.calls.append(i)
            if c.path != box.path:  # the same module again has the same parameters: one norm
                box.grad_norms.append(grad_norm(parameter_nodes(graph, c)))
    copies: dict[int, list[int]] = {}
    first_call: dict[tuple[str, str], int] = {}  # (its first node, path) -> a call of the first copy
    for i, c in enumerate(graph.module_calls):
        if c.nodes and c.nodes[0] not in copy_of:
            first_call.setdefault((c.nodes[0], c.path), i)
    for i, c in enumerate(graph.module_calls):
        if c.nodes and c.nodes[0] in copy_of and all(n in copy_of for n in c.nodes):
            j = first_call.get((copy_of[c.nodes[0]], c.path))
            if j is not None and j in open_calls:
                copies.setdefault(j, [j]).append(i)
    folded = {r.calls[0] for r in runs}
    for j, same in copies.items():
        if j not in folded:
            c = graph.module_calls[j]
            runs.append(FoldedRun(same, c.path, c.path, c.cls, [grad_norm(parameter_nodes(graph, c))]))


def _box(graph: Graph, i: int) -> Box:
    c = graph.module_calls[i]
    box = Box(f"box{i}", [i], c.path, c.path, c.cls, c.parent, set(c.nodes))
    params = parameter_nodes(graph, c)
    box.parameters = sum(math.prod(n.shape) for n in params if n.shape is not None)
    box.grad_norms = [grad_norm(params)]
    return box


def _absorb_leaves(graph: Graph, boxes: list[Box], where: dict[str, str]) -> None:
    """A leaf all of whose consumers are in one box (a block's weights) goes in that box."""
    consumers: dict[str, set[str | None]] = {}
    for e in graph.edges:
        consumers.setdefault(e.src, set()).add(where.get(e.dst))
    by_id = {b.id: b for b in boxes}
    for n in graph.nodes:
        if n.kind == "leaf" and not n.is_root and n.id not in where:
            into = consumers.get(n.id, set())
            if len(into) == 1 and (box_id := next(iter(into))) in by_id:
                where[n.id] = box_id
                by_id[box_id].nodes.add(n.id)


def _fold(graph: Graph, boxes: list[Box], where: dict[str, str]) -> list[Box]:
    """Merge runs of sibling boxes of the same structure, each feeding the next."""
    feeds = {(where.get(e.src), where.get(e.dst)) for e in graph.edges}  # (input's box, consumer's box)
    folded: list[Box] = []
    last = ""  # the id the last box folded into the run had before
    signatures = {b.id: signature(graph, b.nodes, b.cls, graph.module_calls[b.calls[0]].parameters) for b in boxes}
    for box in sorted(boxes, key=lambda b: b.calls[0]):
        run = folded[-1] if folded else None
        if (run is not None and run.parent == box.parent and signatures[run.id] == signatures[box.id]
                and (last, box.id) in feeds):
            run.calls += box.calls
            run.last_path = box.path
            run.nodes |= box.nodes
            run.grad_norms += box.grad_norms
            for nid in box.nodes:
                where[nid] = run.id
        else:
            folded.append(box)
        last = box.id
    return folded


def _finish(graph: Graph, boxes: list[Box], where: dict[str, str], flagged: set[str], depth: int) -> View:
    """The edges between what is drawn (one per pair of ends), and each box's shapes."""
    by_id = {b.id: b for b in boxes}
    node_of = node_index(graph)
    edges: list[Edge] = []
    seen: set[tuple[str, str]] = set()
    crossing: set[tuple[str, str]] = set()  # (node, box) pairs whose shape is noted
    for e in graph.edges:
        src, dst = where.get(e.src, e.src), where.get(e.dst, e.dst)
        if src == dst:
            continue
        shape = node_of[e.src].shape
        if src in by_id and (e.src, src) not in crossing:
            crossing.add((e.src, src))
            _add_shape(by_id[src].outputs, shape)
        if dst in by_id and (e.src, dst) not in crossing:
            crossing.add((e.src, dst))
            _add_shape(by_id[dst].inputs, shape)
        if (src, dst) in seen:
            continue
        seen.add((src, dst))
        if src == e.src and dst == e.dst:
            edges.append(e)
        else:  # the gradient that crossed the boundary; no local derivative between boxes
            edges.append(Edge(src, dst, e.index, e.grad, None))
    for b in boxes:
        b.flagged = bool(b.nodes & flagged)
    nodes = [n for n in graph.nodes if n.id not in where]
    return View(nodes, boxes, edges, where, depth)


def _add_shape(shapes: list[list[int]], shape: list[int] | None) -> None:
    if shape is not None and list(shape) not in shapes and len(shapes) < 4:
        shapes.append(list(shape))
