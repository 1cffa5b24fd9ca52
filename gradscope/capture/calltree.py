"""A pass's module structure: which module call made each op node, and the module tree.

Runs once per walked graph. Op nodes the recorder noted carry their module call; the
internal nodes of an op call (a linear's transpose, an attention's views) inherit the
source line, module and call of the op call that made them (see opcalls.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Graph, ModuleCall
from ._torch import sequence_nr
from .opcalls import owner_note
from .recorder import OpInfo

if TYPE_CHECKING:
    from .modulecalls import CallLog
    from .nodetable import NodeTable


def attach_module_calls(graph: Graph, fns: list, notes: list, table: "NodeTable", log: "CallLog") -> None:
    """Give `graph`'s op nodes their source and module where the op call that made them is
    known, number their module calls (`Node.module_call`) and build `graph.module_calls`.
    `fns` and `notes` line up with `graph.nodes` (the autograd node and its note, or None)."""
    forward = table.forward_notes()
    made_in: list[tuple] = []  # (node, call id)
    for node, fn, note in zip(graph.nodes, fns, notes):
        if node.kind != "op":
            continue
        if note is None:
            note = owner_note(forward, sequence_nr(fn), OpInfo)
            if note is None:
                continue
            node.source, node.module = note.source, note.module
        elif type(note) is not OpInfo:
            continue
        if note.call:
            made_in.append((node, note.call))
    graph.module_calls = _tree(made_in, log)


def _tree(made_in: list[tuple], log: "CallLog") -> list[ModuleCall]:
    records = log.records
    used: set[int] = set()
    for _, call in made_in:
        while call and call not in used and call in records:
            used.add(call)
            call = records[call][2]
    place: dict[int, int] = {}
    numbers: dict[str, int] = {}
    calls: list[ModuleCall] = []
    for call in sorted(used):  # ids grow as calls begin: forward order
        path, cls, parent = records[call]
        number = numbers.get(path, 0)
        numbers[path] = number + 1
        place[call] = len(calls)
        calls.append(ModuleCall(path, cls.__name__, number, place.get(parent), list(log.parameters.get(path, ()))))
    for node, call in made_in:
        k = place.get(call)
        if k is None:
            continue
        # ("" for ops in the outermost module's own forward: inside the model, in no submodule)
        node.module, node.module_call = calls[k].path, calls[k].call
        while k is not None:
            calls[k].nodes.append(node.id)
            k = calls[k].parent
    return calls
