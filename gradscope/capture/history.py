"""What a trace remembers of each leaf tensor from one pass to the next."""

from __future__ import annotations

from typing import Any

from ..model import LazyGraph
from .idtable import IdTable


class LeafHistory:
    """A leaf's last pass, and the `.grad` that pass left (kept in `TraceState.leaf_histories`)."""

    __slots__ = ("last_pass", "grad", "grad_described")

    def __init__(self) -> None:
        self.last_pass: tuple[int, str] | None = None  # (pass index, the leaf's node id in it)
        # (weakref to the .grad its last pass left, that grad's _version, that pass's Graph,
        # the leaf's place in it: not its Node, which a light pass makes only when read)
        self.grad: tuple | None = None
        # the last summary of its .grad that says only shape, dtype and device (passes share it)
        self.grad_described: Any = None


def history_of(histories: IdTable, leaf: Any) -> LeafHistory:
    """The leaf's history, started empty the first time."""
    history = histories.get(leaf)
    if history is None:
        history = LeafHistory()
        histories.set(leaf, history)
    return history


def grad_name(history: LeafHistory) -> str | None:
    """The leaf's name in the pass that left its `.grad` (None when none did), read without
    making a light pass's nodes."""
    if history.grad is None:
        return None
    graph, place = history.grad[2], history.grad[3]
    if isinstance(graph, LazyGraph) and not graph.made:
        layout = graph.numbers.layout
        return layout.leaf_nodes[layout.leaves.index(place)].name
    return graph.nodes[place].name
