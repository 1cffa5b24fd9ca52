"""Render-side memos of values computed from model objects (a graph's node index, its loops,
a trace's graph families), so that the model stays plain data with nothing cached in it.

A `Memo` is keyed by the object's identity: model dataclasses compare by value and are not
hashable, and two equal graphs are still two graphs. An entry lives exactly as long as its
object: a weak reference's callback drops it when the object is freed, before its `id()` can
be handed to a new object. Each entry carries a stamp (e.g. the number of nodes) that the
caller compares, so an object edited after the value was computed gets a fresh one.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Generic, Hashable, TypeVar

from gradscope.model import Edge, Graph, Node

V = TypeVar("V")


class Memo(Generic[V]):
    """One value per live object, with the stamp it was computed for."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], Hashable, V]] = {}

    def get(self, obj: Any, stamp: Hashable, compute: Callable[[], V]) -> V:
        """The value kept for `obj` at `stamp`, else `compute()` (then kept)."""
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is obj and entry[1] == stamp:
            return entry[2]
        value = compute()
        entries = self._entries

        def forget(_: weakref.ref[Any], key: int = key) -> None:
            entries.pop(key, None)

        self._entries[key] = (weakref.ref(obj, forget), stamp, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)


_BY_ID: Memo[dict[str, Node]] = Memo()
_INPUTS: Memo[dict[str, list[str]]] = Memo()


def node_index(graph: Graph) -> dict[str, Node]:
    """Node id -> node of `graph` (built once per graph, rebuilt when its nodes change)."""
    return _BY_ID.get(graph, (id(graph.nodes), len(graph.nodes)), lambda: {n.id: n for n in graph.nodes})


def inputs_index(graph: Graph) -> dict[str, list[str]]:
    """Node id -> the ids of its inputs, in edge order (rebuilt when the edges change)."""
    return _INPUTS.get(graph, (id(graph.edges), len(graph.edges)), lambda: _inputs(graph.edges))


def _inputs(edges: list[Edge]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for e in edges:
        index.setdefault(e.dst, []).append(e.src)
    return index
