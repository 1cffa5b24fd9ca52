"""What a `create_graph=True` backward builds, marked so that later passes draw it by name.

A double-backward (a gradient penalty, second derivatives) runs through nodes that the
first backward made: the recorder never saw their ops. The first pass marks them with
the op and call whose backward made them, and names the gradients it returns (`dy/dx`,
`w.grad`), so the next pass through them is drawn with those names.
"""

from __future__ import annotations

from typing import Any

import torch

from ..model import Source
from .backward_call import BackwardCall
from .graph_index import GraphIndex
from .names import name_node
from .nodetable import BackwardMade
from .recorder import OpInfo
from .source import assignment_target
from .state import TraceState


def mark_made_by_backward(state: TraceState, index: GraphIndex | None, tagged: set[int], call: BackwardCall,
                          source: Source | None, fn: Any, grad_inputs: tuple) -> None:
    """Note, on each node that `fn`'s backward built into `grad_inputs`, which op's backward
    made it, in which pass, by which call ("pow at x.py:3; pass 0, ..."). `tagged`: ids
    already marked by this pass."""
    notes = state.nodes
    info = notes.get(fn)
    op = f"{info.op} at {info.source.short}" if type(info) is OpInfo and info.source else type(fn).__name__
    at = f" at {source.short}" if source else ""
    label = f"{op}; pass {state.next_pass_index}, {call.api}{at} with create_graph=True"
    known = index.position if index else {}
    for g in grad_inputs:
        if not isinstance(g, torch.Tensor) or g.grad_fn is None:
            continue
        stack = [g.grad_fn]
        while stack:
            n = stack.pop()
            if id(n) in known or id(n) in tagged or type(n).__name__ == "AccumulateGrad":
                continue
            if notes.get(n) is not None:
                continue
            notes.add(n, BackwardMade(type(n), label, g))
            tagged.add(id(n))
            stack.extend(nxt for nxt, _ in n.next_functions if nxt is not None)


def name_new_gradients(index: GraphIndex, call: BackwardCall, source: Source | None, result: Any) -> None:
    """Name the differentiable gradients a create_graph pass made: `grad_1[0]` (the line's
    target), `dy/dx`, `w.grad`."""
    graph = index.graph
    if call.api == "torch.autograd.grad":
        target = assignment_target(source.code) if source else None
        roots = "".join(n.name for n in graph.roots)
        for i, (grad, inp) in enumerate(zip(result, call.inputs)):
            input_node = index.node_for(inp)
            wrt = input_node.name if input_node else "input"
            _name_tensor(grad, f"{target}[{i}]" if target else f"d{roots}/d{wrt}")
    else:
        for node, leaf in index.leaves:
            _name_tensor(leaf.grad, f"{node.name}.grad")


def _name_tensor(t: Any, name: str) -> None:
    if isinstance(t, torch.Tensor) and t.grad_fn is not None:
        name_node(t.grad_fn, name, replace=False)
