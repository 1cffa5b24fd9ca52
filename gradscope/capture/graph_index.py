"""The live side of a pass's `Graph`: model node ids <-> autograd nodes and leaf tensors.

Made by the walk (walk.py), held by the pass recorder and the live checks while the pass
runs, dropped when it ends (it is the only place a pass keeps torch objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model import Graph, Node
from .summaries import Box


@dataclass
class GraphIndex:
    """The live side of a `Graph` during one pass: model node id <-> autograd node."""

    graph: Graph
    node_of: dict[str, object] = field(default_factory=dict)  # id -> grad_fn / AccumulateGrad
    position: dict[int, int] = field(default_factory=dict)  # id(grad_fn) -> its place in graph.nodes
    leaf_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # leaf node id -> tensor
    leaves: list[tuple[Node, torch.Tensor]] = field(default_factory=list)  # leaf nodes and their tensors
    notes: list = field(default_factory=list)  # per node (in order): its NodeTable note, or None
    # leaf values queued on the pass's batch: filled in by `finish_leaf_values` after resolve
    pending_values: list[tuple[Node, Box]] = field(default_factory=list)
    wiring: list[tuple[int, int, int]] = field(default_factory=list)  # (consumer, index, input) numbers, sorted
    edges_shared: bool = False  # graph.edges are another pass's Edge objects (see repeat.py)
    shares_nodes: bool = False  # graph.nodes holds another pass's op nodes (see repeat.py)
    repeated: bool = False  # the graph repeats the last quiet pass's (see repeat.py)
    histories: list | None = None  # the leaves' LeafHistory, in order, when a template knew them

    def node_for(self, t: torch.Tensor) -> Node | None:
        """The node of tensor `t` in this graph (its grad_fn's, or a leaf's), or None."""
        fn = t.grad_fn
        if fn is None:
            if not t.requires_grad:
                return None
            fn = accumulate_node(t)
        k = self.position.get(id(fn))
        return None if k is None else self.graph.nodes[k]


def accumulate_node(leaf: torch.Tensor):
    """The AccumulateGrad node of a leaf (what consumers of the leaf point at)."""
    return torch.autograd.graph.get_gradient_edge(leaf).node
