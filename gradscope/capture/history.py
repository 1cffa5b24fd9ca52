"""What a trace remembers of each leaf tensor from one pass to the next."""

from __future__ import annotations

from typing import Any

from .idtable import IdTable


class LeafHistory:
    """A leaf's last pass, and the `.grad` that pass left (kept in `TraceState.leaf_histories`)."""

    __slots__ = ("last_pass", "grad", "grad_described")

    def __init__(self) -> None:
        self.last_pass: tuple[int, str] | None = None  # (pass index, the leaf's node id in it)
        # (weakref to the .grad its last pass left, that grad's _version, the leaf's Node then)
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
