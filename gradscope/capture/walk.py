"""Walking grad_fn chains into a model `Graph`.

The walk is iterative (a chain of 100,000 ops is fine) and keeps no torch object once it
returns, except the `GraphIndex` that a backward pass holds while it runs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..model import Edge, Graph, Node
from .argnames import argument_name
from .names import NAME_KEY, explicit_leaf_name
from .recorder import META_KEY, OpInfo, assigned_name
from .summaries import Box, PendingBatch, SummaryOptions, _dtype_name

if TYPE_CHECKING:
    from .tracer import Tracer

BACKWARD_TAG = "gradscope.created_by"  # metadata key on nodes that a create_graph backward made

_BACKWARD_SUFFIX = re.compile(r"Backward\d*$")


@dataclass
class GraphIndex:
    """The live side of a `Graph` during one pass: model node id <-> autograd node."""

    graph: Graph
    node_of: dict[str, object] = field(default_factory=dict)  # id -> grad_fn / AccumulateGrad
    id_of: dict[int, str] = field(default_factory=dict)  # id(grad_fn) -> node id (alive during the pass)
    leaf_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # leaf node id -> tensor
    # leaf values queued on the pass's batch: filled in by `finish_leaf_values` after resolve
    pending_values: list[tuple[Node, Box]] = field(default_factory=list)


@functools.lru_cache(maxsize=None)
def op_from_class(grad_fn_name: str) -> str:
    """`MulBackward0` -> "mul": the forward op, for nodes no recorder saw."""
    base = _BACKWARD_SUFFIX.sub("", grad_fn_name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower() or grad_fn_name


def walk(
    roots: list[torch.Tensor],
    tracer: "Tracer | None" = None,
    batch: PendingBatch | None = None,
) -> GraphIndex:
    """Build the graph behind `roots` as it stands now.

    Leaf values (small leaves only) are queued on `batch` when given, so a pass brings them
    to the host together with its gradients; otherwise they are read at once.
    """
    graph = Graph()
    index = GraphIndex(graph)
    own_batch = batch is None
    if own_batch:
        batch = PendingBatch(tracer.summary_options if tracer else SummaryOptions())

    pending_values = index.pending_values
    stack: list[object] = []

    def add(fn) -> str:
        key = id(fn)
        node_id = index.id_of.get(key)
        if node_id is None:
            node_id = f"n{len(graph.nodes)}"
            index.id_of[key] = node_id
            index.node_of[node_id] = fn
            graph.nodes.append(_make_node(node_id, fn, index, tracer, batch, pending_values))
            stack.append(fn)
        return node_id

    for t in roots:
        fn = t.grad_fn
        if fn is None and t.requires_grad:
            fn = _accumulate_node(t)
        if fn is None:
            continue
        node_id = add(fn)
        graph.node(node_id).is_root = True

    while stack:
        fn = stack.pop()
        dst = index.id_of[id(fn)]
        for i, (nxt, _) in enumerate(fn.next_functions):
            if nxt is not None:
                graph.edges.append(Edge(src=add(nxt), dst=dst, index=i))
    graph.edges.sort(key=lambda e: (int(e.dst[1:]), e.index))

    _name_ops(graph, index)
    if own_batch:
        batch.resolve()
        finish_leaf_values(pending_values)
    return index


def finish_leaf_values(pending_values: list[tuple[Node, Box]]) -> None:
    for node, box in pending_values:
        node.value = box.value


def _accumulate_node(leaf: torch.Tensor):
    """The AccumulateGrad node of a leaf (what consumers of the leaf point at)."""
    return torch.autograd.graph.get_gradient_edge(leaf).node


def _make_node(node_id, fn, index, tracer, batch, pending_values) -> Node:
    cls = type(fn).__name__
    if cls == "AccumulateGrad":
        leaf = fn.variable
        index.leaf_tensors[node_id] = leaf
        node = Node(
            id=node_id,
            kind="leaf",
            name=_leaf_name(leaf, tracer) or "",
            grad_fn=cls,
            shape=list(leaf.shape),
            dtype=_dtype_name(leaf.dtype),
            device=str(leaf.device),
            requires_grad=leaf.requires_grad,
            is_parameter=isinstance(leaf, torch.nn.Parameter)
            or bool(tracer and leaf in tracer.modules.parameter_names),
        )
        if tracer is not None:
            node.source = tracer.leaf_sources.get(leaf)
        if leaf.numel() <= batch.options.max_values:
            pending_values.append((node, batch.keep(leaf)))
        return node

    meta = fn.metadata
    info: OpInfo | None = meta.get(META_KEY)
    node = Node(id=node_id, kind="op", name=meta.get(NAME_KEY, ""), grad_fn=cls)
    if info is not None:
        node.op, node.source, node.module = info.op, info.source, info.module
    else:
        node.op = op_from_class(cls)
        created_by = meta.get(BACKWARD_TAG)
        if created_by is not None:
            node.created_by_backward = True
            node.created_by = created_by
    shape_meta = getattr(fn, "_input_metadata", None)
    if shape_meta:
        m = shape_meta[0]
        node.shape = list(m.shape)
        node.dtype = _dtype_name(m.dtype)
        node.device = str(m.device)
    return node


def _leaf_name(leaf: torch.Tensor, tracer) -> str | None:
    name = explicit_leaf_name(leaf)
    if name is None and tracer is not None:
        name = tracer.modules.parameter_names.get(leaf) or tracer.leaf_names.get(leaf)
    return name


def _name_ops(graph: Graph, index: GraphIndex) -> None:
    """Give each op node the name its line assigns, and short labels to the rest.

    Several ops can run on one line (`y = (x + w) * (w + 1)`): the assignment target names
    the last op of that statement; the others are labelled by op (`add_1`, `add_2`).
    """
    last_of_stmt: dict[int, tuple[int, str]] = {}
    infos: dict[str, OpInfo] = {}
    for node in graph.nodes:
        if node.kind != "op" or node.name:
            continue
        info = index.node_of[node.id].metadata.get(META_KEY)
        if info is None:
            continue
        infos[node.id] = info
        best = last_of_stmt.get(info.stmt)
        if best is None or info.seq > best[0]:
            last_of_stmt[info.stmt] = (info.seq, node.id)
    for seq, node_id in last_of_stmt.values():
        name = assigned_name(infos[node_id])
        if name:
            graph.node(node_id).name = name
    _name_leaves_by_use(graph, index)
    _label_unnamed(graph)


def _name_leaves_by_use(graph: Graph, index: GraphIndex) -> None:
    """Name leaves made before the trace after the variable a consuming line passes."""
    unnamed = {n.id for n in graph.nodes if n.kind == "leaf" and not n.name}
    for edge in graph.edges:
        if edge.src not in unnamed:
            continue
        info = index.node_of[edge.dst].metadata.get(META_KEY)
        if info is None or info.source is None:
            continue
        name = argument_name(info.source.code, info.op, edge.index, len(info.inputs))
        if name:
            graph.node(edge.src).name = name
            unnamed.discard(edge.src)


def _label_unnamed(graph: Graph) -> None:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.name:
            continue
        base = node.op if node.kind == "op" else "leaf"
        counts[base] = counts.get(base, 0) + 1
        node.name = f"{base}_{counts[base]}"
