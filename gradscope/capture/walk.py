"""Walking grad_fn chains into a model `Graph`.

The walk is iterative (a chain of 100,000 ops is fine) and keeps no torch object once it
returns, except the `GraphIndex` that a backward pass holds while it runs.
"""

from __future__ import annotations

import functools
import re
from math import prod
from typing import TYPE_CHECKING

import torch

from ..model import Edge, Graph, Node
from ._torch import ACCUMULATE_GRAD, input_metadata, saved_label, saved_value_attributes, sequence_nr
from .argnames import argument_name
from .calltree import attach_module_calls
from .graph_index import GraphIndex
from .graph_index import accumulate_node as _accumulate_node
from .names import explicit_leaf_name, node_name
from .opvalues import queue_op_value
from .recorder import OpInfo, assigned_name
from .repeat import QuietTemplate
from .summaries import (
    _DTYPE_NAMES,
    Box,
    PendingBatch,
    SummaryOptions,
    _device_name,
    _dtype_name,
    plain_shape,
)

if TYPE_CHECKING:
    from .state import TraceState

_BACKWARD_SUFFIX = re.compile(r"Backward\d*$")
_ACCUMULATE_GRAD = ACCUMULATE_GRAD  # the node class of leaves


@functools.lru_cache(maxsize=None)
def op_from_class(grad_fn_name: str) -> str:
    """`MulBackward0` -> "mul": the forward op, for nodes no recorder saw."""
    base = _BACKWARD_SUFFIX.sub("", grad_fn_name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower() or grad_fn_name


def walk(
    roots: list[torch.Tensor],
    state: TraceState | None = None,
    batch: PendingBatch | None = None,
    like: QuietTemplate | None = None,
    steady: bool = False,
) -> GraphIndex:
    """Build the graph behind `roots` as it stands now.

    Leaf values (small leaves only) are queued on `batch` when given, so a pass brings them
    to the host together with its gradients; otherwise they are read at once. `like`: the
    last quiet pass's template; a graph that repeats it shares its op nodes and edges (see
    repeat.py). `steady`: the graph's ops ran with the recorder off (steady.py): no notes
    say what made them, and a graph that repeats `like` is recognised by its classes. (This
    runs before every recorded backward: it is written for few Python operations per node.)
    """
    graph = Graph()
    index = GraphIndex(graph)
    own_batch = batch is None
    if own_batch:
        batch = PendingBatch(state.summary_options if state else SummaryOptions())

    # Number the autograd nodes in the order they are found, and collect the edges as
    # (consumer number, input index, input number) to sort once at the end.
    number: dict[int, int] = {}
    fns: list = []
    roots_found: list[int] = []
    for t in roots:
        fn = t.grad_fn
        if fn is None and t.requires_grad:
            fn = _accumulate_node(t)
        if fn is None:
            continue
        if id(fn) not in number:
            number[id(fn)] = len(fns)
            fns.append(fn)
        roots_found.append(number[id(fn)])
    raw_edges: list[tuple[int, int, int]] = []
    stack = list(fns)
    while stack:
        fn = stack.pop()
        dst = number[id(fn)]
        i = -1
        for nxt, _ in fn.next_functions:
            i += 1
            if nxt is None:
                continue
            k = number.get(id(nxt))
            if k is None:
                k = number[id(nxt)] = len(fns)
                fns.append(nxt)
                stack.append(nxt)
            raw_edges.append((dst, i, k))

    ids = _node_ids(len(fns))
    index.position = number
    index.node_of = dict(zip(ids, fns))
    raw_edges.sort()
    index.wiring = raw_edges
    notes = state.nodes if state is not None and not steady else None
    index.notes = [None if type(fn) is _ACCUMULATE_GRAD or notes is None else notes.get(fn) for fn in fns]
    if like is not None and like.wiring == raw_edges:
        share = like.replay if steady else like.fill
        if share(index, fns, roots_found, batch, batch.options.max_values):
            graph.module_calls = like.module_calls
            return index
        graph.edges = list(like.edges)  # wired alike: the edges are the same, the nodes are not
        index.edges_shared = True
    else:
        graph.edges = [Edge(ids[src], ids[dst], i) for dst, i, src in raw_edges]
    namer = _Namer()
    make = _NodeMaker(index, state, batch, namer)
    graph.nodes = list(map(make, ids, fns, index.notes))
    for k in roots_found:
        graph.nodes[k].is_root = True
    namer.name(graph, index, notes)
    if notes is not None:  # (a steady pass's changed graph: no op was seen, no module call either)
        attach_module_calls(graph, fns, index.notes, notes, state.modules.calls)
    if own_batch:
        batch.resolve()
        finish_leaf_values(index.pending_values)
    return index


_NODE_IDS: list[str] = []
_NODE_IDS_KEPT = 4096


def _node_ids(n: int) -> list[str]:
    """["n0", ..., "n<n-1>"]: every pass numbers its nodes alike, so the strings are kept."""
    if len(_NODE_IDS) < min(n, _NODE_IDS_KEPT):
        _NODE_IDS.extend(f"n{k}" for k in range(len(_NODE_IDS), min(n, _NODE_IDS_KEPT)))
    return _NODE_IDS[:n] if n <= len(_NODE_IDS) else _NODE_IDS + [f"n{k}" for k in range(len(_NODE_IDS), n)]


def blank_node(id: str, kind: str, name: str, grad_fn: str) -> Node:
    """A model `Node` with every other field at its default (the walk fills them in)."""
    return Node(id, kind, name, grad_fn)


def finish_leaf_values(pending_values: list[tuple[Node, Box]]) -> None:
    for node, box in pending_values:
        node.value = box.value


class _NodeMaker:
    """Makes the model `Node` of one autograd node (called once per node, in order)."""

    def __init__(self, index: GraphIndex, state, batch: PendingBatch, namer: "_Namer") -> None:
        self.index, self.state, self.batch, self.namer = index, state, batch, namer
        self.max_values = batch.options.max_values
        self.parameter_names = state.modules.parameter_names if state is not None else None

    def __call__(self, node_id: str, fn, note) -> Node:
        if type(fn) is _ACCUMULATE_GRAD:
            return self._leaf(node_id, fn.variable)
        cls = type(fn).__name__
        node = blank_node(node_id, "op", node_name(fn) or "", cls)
        if type(note) is OpInfo:
            node.op, node.source, node.module = note.op, note.source, note.module
            if not node.name:
                self.namer.ops.append((node, note))
        else:
            node.op = op_from_class(cls)
            if note is not None:  # a BackwardMade
                node.created_by_backward = True
                node.created_by = note.label
                node.saved = saved_numbers(fn) or None
        output = note.output if type(note) is OpInfo else None
        if output is None:
            shape_meta = input_metadata(fn)
            if shape_meta:
                m = shape_meta[0]
                output = m.shape, m.dtype, m.device
        if output is not None:
            shape, dtype, device = output
            node.shape = _dims(shape)
            node.dtype = _DTYPE_NAMES.get(dtype) or _dtype_name(dtype)
            node.device = _device_name(device)
            if type(note) is OpInfo and _small(node.shape, self.max_values):
                queue_op_value(self.index, node, note, fn, self.batch)
        return node

    def _leaf(self, node_id: str, leaf: torch.Tensor) -> Node:
        index, state = self.index, self.state
        index.leaf_tensors[node_id] = leaf
        node = blank_node(node_id, "leaf", _leaf_name(leaf, state) or "", "AccumulateGrad")
        index.leaves.append((node, leaf))
        node.shape = plain_shape(leaf.shape) if leaf.is_nested else list(leaf.shape)
        node.dtype = _DTYPE_NAMES.get(leaf.dtype) or _dtype_name(leaf.dtype)
        node.device = _device_name(leaf.device)
        node.requires_grad = leaf.requires_grad
        node.is_parameter = isinstance(leaf, torch.nn.Parameter) or (
            self.parameter_names is not None and leaf in self.parameter_names
        )
        if state is not None:
            node.source = state.leaf_sources.get(leaf)
        if leaf.numel() <= self.max_values:
            index.pending_values.append((node, self.batch.keep(leaf)))
        if not node.name:
            self.namer.leaves.add(node_id)
        return node


SAVED_SHOWN = 4  # the most elements of a saved tensor shown


def saved_numbers(fn) -> dict:
    """The numbers a node saved for backward, when each is a number or a tiny CPU tensor:
    `{"exponent": 1.0, "self": 3.0}` for the pow a create_graph backward built. Only for
    such nodes (few): it reads every saved attribute."""
    found = {}
    for attr in saved_value_attributes(fn):
        try:
            v = getattr(fn, attr)
        except Exception:  # freed, or modified in place: nothing to show
            continue
        if isinstance(v, torch.Tensor):
            if v.device.type != "cpu" or v.numel() > SAVED_SHOWN or v.is_complex():
                continue
            v = v.item() if v.numel() == 1 else v.tolist()
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        found[saved_label(attr)] = v
    return found


def _small(dims: list[int], limit: int) -> bool:
    """At most `limit` elements (a ragged dimension, -1, is never small)."""
    n = 1
    for d in dims:
        if d < 0:
            return False
        n *= d
    return n <= limit


def _dims(shape) -> list[int]:
    """A node's output shape as plain ints (a nested tensor's ragged dimension: -1)."""
    dims = list(shape)
    try:
        if type(prod(dims)) is int:  # (a ragged dimension is symbolic: so is the product)
            return dims
    except Exception:
        pass
    return plain_shape(dims)


def _leaf_name(leaf: torch.Tensor, state) -> str | None:
    name = explicit_leaf_name(leaf)
    if name is None and state is not None:
        name = state.modules.parameter_names.get(leaf) or state.leaf_names.get(leaf)
    return name


class _Namer:
    """Names op nodes after the line that made them, and leaves after the variable a
    consuming line passes; labels the rest (`add_1`, `leaf_1`)."""

    def __init__(self) -> None:
        self.ops: list[tuple[Node, OpInfo]] = []  # op nodes without an explicit name
        self.leaves: set[str] = set()  # leaf node ids without a name

    def name(self, graph: Graph, index: GraphIndex, notes) -> None:
        """Several ops can run on one line (`y = (x + w) * (w + 1)`): the assignment target
        names the last op of that statement; the others are labelled by op."""
        last_of_stmt: dict[int, tuple[int, Node, OpInfo]] = {}
        for node, info in self.ops:
            best = last_of_stmt.get(info.stmt)
            if best is None or info.seq > best[0]:
                last_of_stmt[info.stmt] = (info.seq, node, info)
        for _, node, info in last_of_stmt.values():
            name = assigned_name(info)
            if name:
                node.name = name
        if self.leaves and notes is not None:
            _name_leaves_by_use(graph, index, self.leaves, notes)
        _label_unnamed(_forward_order(graph, list(index.node_of.values())))


def _forward_order(graph: Graph, fns: list) -> list[Node]:
    """The graph's nodes in the order the forward made them: ops by their autograd sequence
    number (counted as nodes are made), each leaf just before the first op that used it."""
    at = {node.id: k for k, node in enumerate(graph.nodes)}
    key: dict[str, tuple] = {}
    for node, fn in zip(graph.nodes, fns):
        if node.kind == "op":
            key[node.id] = (sequence_nr(fn), 1, 0)
    for e in graph.edges:
        if graph.nodes[at[e.src]].kind == "leaf" and e.dst in key:
            used = (key[e.dst][0], 0, e.index)
            key[e.src] = min(key.get(e.src, used), used)
    return sorted(graph.nodes, key=lambda n: key.get(n.id, (-1, 0, at[n.id])))


def _name_leaves_by_use(graph: Graph, index: GraphIndex, unnamed: set[str], notes) -> None:
    """Name leaves made before the trace after the variable a consuming line passes."""
    by_id: dict[str, Node] = {}
    for edge in graph.edges:
        if edge.src not in unnamed:
            continue
        info = notes.get(index.node_of[edge.dst])
        if type(info) is not OpInfo or info.source is None:
            continue
        name = argument_name(info.source.code, info.op, edge.index, len(info.inputs))
        if name:
            by_id = by_id or {n.id: n for n in graph.nodes}  # (built once, if any leaf gets a name)
            by_id[edge.src].name = name
            unnamed.discard(edge.src)


def _label_unnamed(order: list[Node]) -> None:
    """Unnamed nodes are called after their op, numbered in forward order: the first linear
    is `linear`, the next `linear_1` (as torch.fx numbers them); a leaf is `leaf`, `leaf_1`."""
    taken = {node.name for node in order if node.name}
    counts: dict[str, int] = {}
    for node in order:
        if node.name:
            continue
        base = (node.op or "op") if node.kind == "op" else "leaf"
        node.name = _next_free(base, counts, taken)


def _next_free(base: str, counts: dict[str, int], taken: set[str]) -> str:
    """`base`, then `base_1`, `base_2`, ...: the first not in `taken` (which it joins)."""
    k = counts.get(base, 0)
    name = base if k == 0 else f"{base}_{k}"
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    counts[base] = k + 1
    taken.add(name)
    return name
