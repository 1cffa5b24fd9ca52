"""Passes that repeat the last quiet one: a training loop's graph, step after step.

A training loop builds the same graph every step, and most of its passes are quiet: they
record no edge gradients, so nothing of the pass is written on their op nodes or edges.
The next pass over a graph that is the same as the last quiet pass's (same wiring and
roots; at each place an op of the same class, forward op, line, module and output, in the
same statement grouping, an internal node of the same class and output, or the same leaf
tensor, unchanged, under the same names) shares that pass's op `Node` and `Edge` objects
instead of making its own. Its roots (they carry its loss and seed) and its
leaves (they carry its `.grad`) are its own. A pass that records edge gradients never
shares, and is never shared.

This exists for speed: building ~40 model objects per step is a measurable part of a
traced training step (docs/benchmarks.md). The checks below read only what the recorder
and the walk read anyway.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from typing import TYPE_CHECKING, Any

from ..model import Edge, LightNumbers, Node, Repeat, RepeatLayout, copy_node
from . import names
from ._torch import input_metadata
from .opvalues import queue_op_value
from .recorder import OpInfo
from .summaries import _device_name, _dtype_name

if TYPE_CHECKING:
    from .graph_index import GraphIndex
    from .summaries import PendingBatch


class QuietTemplate:
    """What a quiet pass's graph looked like, to recognise the next pass that repeats it."""

    def __init__(self, index: "GraphIndex", fns: list, histories: list, api: str = "",
                 structure_key: int | None = None) -> None:
        graph = index.graph
        self.number = next(_NUMBERS)  # (what listeners know its repeats by: model.Repeat)
        self.light: Any = None  # how a steady pass repeats it from its numbers alone (light.py), once asked
        self.api = api  # the backward API its pass called (a steady pass's is this one's)
        self.structure_key = structure_key  # (a big graph's hash, shared by its repeats: backward.py)
        self.histories = histories  # of the leaves, in order (the same tensors' when repeated)
        self.wiring = index.wiring
        self.edges: list[Edge] = graph.edges
        self.nodes: list[Node] = graph.nodes
        self.module_calls = graph.module_calls  # (shared too: see walk)
        self.roots = [k for k, node in enumerate(graph.nodes) if node.is_root]
        self.generation = names.generation()
        # per node: an op's key (see `_op_key`), or a leaf's (weakref to its tensor, shape,
        # dtype, device, requires_grad); empty when the nodes cannot be shared (then only
        # the edges are, with graphs wired alike)
        self.keys: list[tuple] = []
        self.leaves: list[int] = []  # the leaves' places
        self.descriptions: list[dict] = []  # the leaves' nodes without anything of their pass
        # op nodes that show their (small) forward value: each pass's is its own
        at = {id(node): k for k, node in enumerate(graph.nodes)}
        self.valued = [at[id(node)] for node, _ in index.pending_values if node.kind == "op" and id(node) in at]
        # each node's autograd class: what a steady pass, whose ops no recorder saw, is
        # compared on (see `replay`)
        self.classes: list[type] = list(map(type, fns))
        # ... and its number of inputs, absent ones too (light.py reads `next_functions` whole)
        self.arity: list[int] = [len(fn.next_functions) for fn in fns]
        # can a steady pass repeat it? Not when saved-tensor hooks ran (such a node is never
        # called, and only the recorder knows)
        self.replayable = not any(type(note) is OpInfo and note.saved_hooks for note in index.notes)
        if not _shareable(index, fns):
            self.replayable = False
            return
        first = next(note for note in index.notes if note is not None)
        tensors = iter(index.leaves)
        for k, (node, note, fn) in enumerate(zip(graph.nodes, index.notes, fns)):
            if node.kind == "leaf":
                _, leaf = next(tensors)
                self.leaves.append(k)
                self.descriptions.append(_description(node))
                self.keys.append((weakref.ref(leaf), leaf.shape, leaf.dtype, leaf.device, leaf.requires_grad))
            else:
                self.keys.append(_op_key(note, first) if note is not None else _untagged_key(fn))

    def fill(self, index: "GraphIndex", fns: list, roots: list[int], batch: "PendingBatch", max_values: int) -> bool:
        """Give `index` this template's nodes and edges, if its graph repeats the template's.

        `index.notes` holds the recorder's note of each node (None for leaves), `roots` the
        places of the pass's roots; the wiring was compared already. Leaves and roots get
        nodes of their own. Returns False, leaving `index` untouched, when the graph differs.
        """
        notes, keys = index.notes, self.keys
        if len(notes) != len(keys) or sorted(set(roots)) != self.roots or self.generation != names.generation() \
                or names.any_named(fns):
            return False
        first = next((note for note in notes if note is not None), None)
        if type(first) is not OpInfo:
            return False
        leaves = set(self.leaves)
        for k, note in enumerate(notes):
            if k in leaves:
                continue
            if note is None:
                if _untagged_key(fns[k]) != keys[k]:
                    return False
            elif type(note) is not OpInfo or _op_key(note, first) != keys[k]:
                return False
        return self._share_if_same_leaves(index, fns, batch, max_values)

    def replay(self, index: "GraphIndex", fns: list, roots: list[int], batch: "PendingBatch",
               max_values: int) -> bool:
        """`fill` for a steady pass (steady.py): its ops ran with the recorder off, so no
        notes say what made them. The graph repeats the template when it is wired alike
        (compared already), its nodes are of the same classes, its roots at the same
        places and its leaves the same tensors, unchanged: then it shares the template's
        nodes and edges, as in `fill`. The small forward values of its ops but the roots'
        are not read (only the recorder holds an op's output): those nodes show none."""
        if not self.replayable or len(fns) != len(self.classes) or sorted(set(roots)) != self.roots \
                or self.generation != names.generation() or list(map(type, fns)) != self.classes \
                or names.any_named(fns):
            return False
        return self._share_if_same_leaves(index, fns, batch, max_values)

    def _share_if_same_leaves(self, index: "GraphIndex", fns: list, batch: "PendingBatch", max_values: int) -> bool:
        """Share the template with `index` when the pass's leaves are the template's tensors,
        unchanged (the rest compared already)."""
        found = []
        keys = self.keys
        for k in self.leaves:
            leaf = getattr(fns[k], "variable", None)
            ref, shape, dtype, device, requires_grad = keys[k]
            if leaf is None or not (ref() is leaf and leaf.shape == shape and leaf.dtype is dtype
                                    and leaf.device == device and leaf.requires_grad == requires_grad):
                return False
            found.append(leaf)
        self._share(index, fns, found, batch, max_values)
        return True

    def _share(self, index: "GraphIndex", fns: list, found: list, batch: "PendingBatch", max_values: int) -> None:
        """The graph repeats: share the op nodes and edges, make the roots and leaves anew."""
        nodes = self.fresh_nodes()
        for k in self.valued:
            note = index.notes[k]
            if note is not None and k not in self.roots:  # (None: a steady pass, see `replay`)
                queue_op_value(index, nodes[k], note, fns[k], batch)
        for k, leaf in zip(self.leaves, found):
            node = nodes[k]
            index.leaf_tensors[node.id] = leaf
            index.leaves.append((node, leaf))
            if leaf.numel() <= max_values:
                index.pending_values.append((node, batch.keep(leaf)))
        index.graph.nodes = nodes
        index.graph.edges = list(self.edges)
        index.edges_shared = index.shares_nodes = index.repeated = True
        index.histories = self.histories

    def fresh_nodes(self) -> list[Node]:
        """A repeat's nodes: the template's op nodes, but roots, valued ops and leaves anew
        (they carry the pass's own numbers), without numbers yet."""
        layout = self.layout
        roots = [fresh_root(self.nodes[k]) for k in layout.roots]
        return LightNumbers(layout, roots, [None] * len(layout.leaves)).nodes()

    @functools.cached_property
    def layout(self) -> RepeatLayout:
        """Where a repeat's own nodes and numbers go (shared by its passes; light passes'
        listeners read their numbers through it). Only of a template whose nodes are
        shared (`keys` known)."""
        own = {k: i for i, k in enumerate(self.leaves)} | {k: -1 - j for j, k in enumerate(self.roots)}
        return RepeatLayout(
            nodes=self.nodes, roots=self.roots, leaves=self.leaves,
            valued=[k for k in self.valued if k not in own],  # (an op's value is the pass's own: its node is too)
            leaf_nodes=[leaf_from(d) for d in self.descriptions],
            grad_kinds=[(d["shape"], _dtype_name(self.keys[k][2]), _device_name(self.keys[k][3]))
                        for k, d in zip(self.leaves, self.descriptions)],  # (a leaf's .grad is of its kind)
            own=sorted(own.items()),
            repeat=Repeat(self.number, tuple(sorted({*self.roots, *self.leaves, *self.valued}))))


_NUMBERS = itertools.count()


def unshare(index: "GraphIndex") -> None:
    """Give a graph that shares another pass's nodes and edges copies of its own (a pass
    that records edge gradients writes them there)."""
    graph = index.graph
    if index.shares_nodes:
        graph.nodes = [node if node.kind == "leaf" or node.is_root else copy_node(node) for node in graph.nodes]
        for node in graph.nodes:
            node.grad_outputs = list(node.grad_outputs)
        index.shares_nodes = False
    if index.edges_shared:
        graph.edges = [Edge(e.src, e.dst, e.index) for e in graph.edges]
        index.edges_shared = False


def _shareable(index: "GraphIndex", fns: list) -> bool:
    """Can other passes share this graph's nodes? It needs an op the recorder saw (its
    first), notes that are the recorder's (not a create_graph backward's), and no node with
    an explicit name (those live on the autograd node)."""
    notes = index.notes
    return (
        any(type(note) is OpInfo for note in notes)
        and all(note is None or type(note) is OpInfo and note.output is not None for note in notes)
        and not names.any_named(fns)
    )


def _op_key(note: OpInfo, first: OpInfo) -> tuple:
    """What an op node is drawn from. Statement and order are relative to the graph's first
    op: the ops of one statement, named by its assignment, are then the same ones."""
    return (note.cls, note.op, note.source, note.module, note.output, note.stmt - first.stmt, note.seq - first.seq)


def _untagged_key(fn) -> tuple:
    """An op node no recorded op made (a linear's weight transpose): its class and output."""
    meta = input_metadata(fn)
    m = meta[0] if meta else None
    return (type(fn), None) if m is None else (type(fn), m.shape, m.dtype, m.device)


def fresh_root(node: Node) -> Node:
    """A root's own copy: it will carry this pass's value and seed."""
    root = copy_node(node)
    root.grad_outputs = []
    root.value = root.seed = None
    return root


_LEAF_DESCRIPTION = ("id", "kind", "name", "grad_fn", "shape", "dtype", "device", "requires_grad", "is_parameter",
                     "source", "is_root")


def _description(leaf: Node) -> dict:
    """What a leaf node says of its tensor (not of its pass), and its (empty) list of
    gradient outputs: a leaf has none, and model lists are replaced, never edited."""
    return {**{k: getattr(leaf, k) for k in _LEAF_DESCRIPTION}, "grad_outputs": []}


def leaf_from(description: dict) -> Node:
    """A new leaf node with this description (its lists are the template's: model objects
    are records, never edited, and a long run keeps one list, not one a pass; each object a
    pass keeps is one more for the cyclic collector to walk)."""
    return Node(**description)
