"""What gradscope knows of autograd nodes, kept beside them rather than on them.

The obvious place for a note on a node is `grad_fn.metadata`, but the first read of
`metadata` makes torch allocate a per-node object; measured on a 10-layer MLP training
step (CPU), that alone cost 2.4 ms of a 17 ms step and doubled its page faults, more than
all of gradscope's own Python. So notes live here, keyed by the node's sequence number
(`grad_sequence_nr(fn)`, a per-thread counter that is never reused) and checked against
the node's class.

Nodes cannot be weak-referenced, so the table cannot see a node die. A training step's
notes go when the backward that consumes its graph is over (one pass later); for graphs
no backward frees, each note keeps a weak reference to a tensor the node belongs to, and
when the table has doubled it walks the graphs of the tensors still alive and drops the
notes of nodes it cannot reach.
"""

from __future__ import annotations

import weakref
from typing import Any

from ._torch import sequence_nr

_FIRST_SWEEP = 1 << 14  # notes kept before the first sweep


class BackwardMade:
    """A note on a node that a `create_graph=True` backward built (no forward op made it)."""

    __slots__ = ("cls", "label", "tensor", "key")

    def __init__(self, cls: type, label: str, tensor: Any) -> None:
        self.cls = cls
        self.key = 0  # set by NodeTable.add
        self.label = label  # the forward op whose backward made it, e.g. "pow at lesson.py:3"
        self.tensor = weakref.ref(tensor)


class NodeTable:
    """autograd node -> its note (an `OpInfo` or a `BackwardMade`), by sequence number.

    Nodes that backward builds may come from another thread (a GPU's backward thread), whose
    sequence numbers are counted apart: their notes are kept apart too, so that they never
    replace the note of a forward node with the same number.
    """

    def __init__(self) -> None:
        self._notes: dict[int, Any] = {}  # forward ops (made in the thread the trace records)
        self._made: dict[int, BackwardMade] = {}  # nodes made by create_graph backwards
        self._retiring: list = []  # the notes of the last freed graph
        self._sweep_at = _FIRST_SWEEP

    def get(self, fn) -> Any:
        """The note on `fn`, or None."""
        return self._find(sequence_nr(fn), type(fn))

    def forward_notes(self) -> dict[int, Any]:
        """Sequence number -> note of the forward ops (read-only: see opcalls.owner_note)."""
        return self._notes

    def key_if_new(self, fn) -> int | None:
        """`fn`'s key, or None when it has a note already (the recorder's `get` and `put` in one)."""
        key = sequence_nr(fn)
        return key if self._find(key, type(fn)) is None else None

    def put(self, key: int, note: Any) -> None:
        """Note a forward op's node under the key `key_if_new` gave."""
        self._store(self._notes, key, note)

    def add(self, fn, note: Any) -> None:
        """Note `fn` (`note.cls` is `type(fn)`, `note.tensor` a weak reference to a tensor
        whose graph holds `fn`; `note.key` is set here)."""
        self._store(self._made if type(note) is BackwardMade else self._notes, sequence_nr(fn), note)

    def _store(self, table: dict, key: int, note: Any) -> None:
        note.key = key
        table[key] = note
        if len(self._notes) + len(self._made) >= self._sweep_at:
            self._sweep()

    def _find(self, key: int, cls: type) -> Any:
        note = self._notes.get(key)
        if note is not None and note.cls is cls:
            return note
        if self._made:
            note = self._made.get(key)
            if note is not None and note.cls is cls:
                return note
        return None

    def retire(self, graph_notes: list) -> None:
        """A backward freed the graph of these notes (None for nodes without one): they are
        dropped after the next pass, not at once (a later backward into the freed graph,
        PyTorch's error, is still named)."""
        notes = self._notes
        for note in self._retiring:
            if notes.get(note.key) is note:
                del notes[note.key]
        self._retiring = [note for note in graph_notes if note is not None and notes.get(note.key) is note]

    def __len__(self) -> int:
        return len(self._notes) + len(self._made)

    def clear(self) -> None:
        self._notes.clear()
        self._made.clear()
        self._retiring = []

    def _sweep(self) -> None:
        """Drop the notes of nodes no live tensor's graph reaches."""
        seen: set[int] = set()  # sequence numbers (wrapper ids are reused once freed)
        stack = []
        for note in [*self._notes.values(), *self._made.values()]:
            t = note.tensor()
            try:
                fn = t.grad_fn if t is not None else None
            except RuntimeError:  # a view whose base was edited in place under no_grad
                fn = None
            if fn is not None and sequence_nr(fn) not in seen:
                seen.add(sequence_nr(fn))
                stack.append(fn)
        while stack:
            for nxt, _ in stack.pop().next_functions:
                if nxt is not None and sequence_nr(nxt) not in seen:
                    seen.add(sequence_nr(nxt))
                    stack.append(nxt)
        self._notes = {k: v for k, v in self._notes.items() if k in seen}
        self._made = {k: v for k, v in self._made.items() if k in seen}
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(self))
