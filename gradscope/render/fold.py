"""Folding repeated blocks: a run of sibling module calls of the same structure, each
feeding the next (a transformer's blocks 0-11, a ResNet stage's blocks), drawn once.

Two kinds of fold. A run of collapsed boxes becomes one box marked ×N (collapse.py). A run
of open calls is drawn as its first call, its cluster marked ×N with each call's numbers,
and the others hidden: the edges that leave the last call leave from the first call's
output instead. A run is folded open only when that picture is faithful: each call has
one output the next consumes, takes no other op input from outside the run, and holds
nothing a diagnostic points at.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..model import Graph, ModuleCall, Node
from .memo import Memo, inputs_index, node_index

_BY_NAME: Memo[dict[str, Node]] = Memo()  # a graph's nodes by name (names repeat: the last wins)


@dataclass
class FoldedRun:
    """Calls `calls` (places in Graph.module_calls) drawn as the first one."""

    calls: list[int]
    path: str  # the first call's path
    last_path: str
    cls: str
    grad_norms: list[float | None] = field(default_factory=list)  # per call: its parameters' gradient norm

    @property
    def count(self) -> int:
        return len(self.calls)


def signature(graph: Graph, node_ids: set[str] | list[str], cls: str, parameters: Iterable[str] = ()) -> tuple:
    """Equal for calls of the same structure: class, the ops inside, parameter shapes.

    Ops that work on the call's inputs alone (`x.transpose(0, 1)` before attention) are
    left out: autograd makes them only when the input requires grad, so the first of a
    stack of blocks (fed by data) would otherwise differ from the others (fed by a block).
    An input is the call's own when it is among `node_ids` or a leaf named in `parameters`."""
    ids = set(node_ids)
    by_id = node_index(graph)
    nodes = [by_id[n] for n in ids]
    outer = _input_only(graph, ids, set(parameters))
    if all(n.id in outer for n in nodes if n.kind == "op"):
        outer = set()  # a call without weights (an activation): its ops are its structure
    ops = Counter(n.grad_fn for n in nodes if n.kind == "op" and n.id not in outer)
    # (a module call's nodes are its ops: its weights are found by name; LSTMCell(1, 12) and
    # LSTMCell(12, 12) have the same ops but are not the same block)
    weights = [*(n for n in nodes if n.kind == "leaf"), *_leaves_named(graph, parameters)]
    shapes = tuple(sorted(tuple(n.shape or ()) for n in weights))
    return cls, tuple(sorted(ops.items())), shapes


def _input_only(graph: Graph, ids: set[str], parameters: set[str]) -> set[str]:
    """The op nodes among `ids` that depend on nothing of the call's own: only on tensors
    from outside it (through other such ops)."""
    inputs, by_id = inputs_index(graph), node_index(graph)
    found: set[str] = set()
    state: dict[str, bool] = {}
    for start in ids:
        stack = [start]
        while stack:  # depth first, without recursion (an unrolled call can be thousands deep)
            n = stack[-1]
            if n in state:
                stack.pop()
                continue
            pending = [s for s in inputs.get(n, ()) if s in ids and s not in state]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            node = by_id[n]
            own = node.kind != "op" or not inputs.get(n)
            for s in inputs.get(n, ()):
                if s in ids:
                    own = own or not state[s]
                else:
                    src = by_id[s]
                    own = own or (src.kind == "leaf" and src.name in parameters)
            state[n] = not own  # True: input-only
            if not own:
                found.add(n)
    return found


def parameter_nodes(graph: Graph, call: ModuleCall) -> list[Node]:
    """The leaf nodes of a call's parameters (those the graph holds)."""
    return _leaves_named(graph, call.parameters)


def _leaves_named(graph: Graph, names: Iterable[str]) -> list[Node]:
    by_name = _BY_NAME.get(graph, (id(graph.nodes), len(graph.nodes)), lambda: {n.name: n for n in graph.nodes})
    return [by_name[p] for p in names if p in by_name and by_name[p].kind == "leaf"]


def grad_norm(params: list[Node]) -> float | None:
    """The 2-norm of the gradients these leaves got (None when none is known)."""
    norms = [n.grad_after.norm for n in params if n.grad_after is not None and n.grad_after.norm is not None]
    return math.sqrt(sum(x * x for x in norms)) if norms else None


def fold_open_runs(graph: Graph, candidates: list[int], expanded: set[int], flagged: set[str],
                   where: dict[str, str]) -> tuple[list[FoldedRun], set[int]]:
    """Find runs among `candidates` (open calls, in order) and fold them open; a call the
    user expanded (in `expanded`) is drawn as itself, between runs.

    Fills `where` (hidden node id -> the node drawn for it) and returns the runs and the
    places of the calls hidden (the runs' later calls; not their sub-calls)."""
    calls = graph.module_calls
    consumers: dict[str, list[str]] = {}
    inputs: dict[str, list[str]] = {}
    for e in graph.edges:
        consumers.setdefault(e.src, []).append(e.dst)
        inputs.setdefault(e.dst, []).append(e.src)
    runs: list[FoldedRun] = []
    hidden: set[int] = set()
    by_parent: dict[int | None, list[int]] = {}
    for i in candidates:
        by_parent.setdefault(calls[i].parent, []).append(i)
    gone: set[int] = set()  # hidden calls and the calls inside them
    for parent in sorted(by_parent, key=lambda p: -1 if p is None else p):  # outer calls first
        siblings = by_parent[parent]
        if parent in gone:
            gone.update(siblings)
            continue
        run: list[int] = []
        for i in siblings + [-1]:
            if run and i >= 0 and not {i, run[-1]} & expanded and _continues(graph, run, i, consumers):
                run.append(i)
                continue
            if len(run) > 1:
                folded = _fold(graph, run, flagged, consumers, inputs, where)
                if folded is not None:
                    runs.append(folded)
                    hidden.update(run[1:])
                    gone.update(run[1:])
            run = [i]
    return runs, hidden


def _continues(graph: Graph, run: list[int], i: int, consumers: dict[str, list[str]]) -> bool:
    calls = graph.module_calls
    last, nxt = calls[run[-1]], calls[i]
    if signature(graph, last.nodes, last.cls, last.parameters) != signature(graph, nxt.nodes, nxt.cls, nxt.parameters):
        return False
    inside = set(nxt.nodes)
    return any(d in inside for n in last.nodes for d in consumers.get(n, ()))


def _fold(graph: Graph, run: list[int], flagged: set[str], consumers: dict[str, list[str]],
          inputs: dict[str, list[str]], where: dict[str, str]) -> FoldedRun | None:
    calls = [graph.module_calls[i] for i in run]
    by_id = node_index(graph)
    members = [set(c.nodes) for c in calls]
    everything = set().union(*members)
    first_out = {n for n in members[0] for d in consumers.get(n, ()) if d in members[1]}
    last_out = {n for n in members[-1] for d in consumers.get(n, ()) if d not in everything}
    if len(first_out) != 1 or len(last_out) > 1:
        return None
    hidden = set().union(*members[1:])
    if hidden & flagged:
        return None
    for k in range(1, len(members)):
        for n in members[k]:
            for src in inputs.get(n, ()):
                if src not in members[k] and src not in members[k - 1] and by_id[src].kind != "leaf":
                    return None  # an op input from outside the run (a mask): not faithful
    drawn = next(iter(first_out))
    for n in hidden:
        where[n] = drawn
    for node in graph.nodes:  # the hidden calls' own weights go with them
        if node.kind == "leaf" and node.id not in flagged:
            used = consumers.get(node.id, ())
            if used and all(d in hidden for d in used):
                where[node.id] = drawn
    return FoldedRun(list(run), calls[0].path, calls[-1].path, calls[0].cls,
                     [grad_norm(parameter_nodes(graph, c)) for c in calls])
