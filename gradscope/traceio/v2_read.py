"""Reading format version 2 (see v2.py for the layout): model objects built from the
records, every field checked, structures shared between the passes that repeat them."""

from __future__ import annotations

import operator
from dataclasses import fields
from typing import Any

from ..model import Diagnostic, Edge, Event, Graph, ModuleCall, Node, Pass, Source, TensorSummary, Trace
from .decode import Malformed, check_graph, checker, decode, free_form, numbers, value_of
from .plain import plain_summary
from .v2 import NUMBER_FIELDS, STRUCTURE_FIELDS


class Decoder:
    """Builds model objects from version-2 records, checking every field."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.structures: list[Graph] = []
        self._node_index: dict[int, dict[str, Node]] = {}  # a structure's nodes by id, once asked

    def add_sources(self, items: Any, where: str = "sources") -> None:
        for k, s in enumerate(as_list(items, where)):
            self.sources.append(decode(Source, s, f"{where}[{k}]"))

    def add_structures(self, items: Any, where: str = "structures") -> None:
        for k, s in enumerate(as_list(items, where)):
            self.structures.append(self._structure(s, f"{where}[{k}]"))

    def source(self, ref: Any, where: str) -> Source | None:
        if ref is None:
            return None
        return self.sources[_position(ref, len(self.sources), where)]

    def _structure(self, data: Any, where: str) -> Graph:
        if not isinstance(data, dict):
            raise Malformed(where, "expected an object")
        nodes = []
        for k, n in enumerate(as_list(data.get("nodes"), f"{where}.nodes")):
            at = f"{where}.nodes[{k}]"
            if not isinstance(n, dict) or not n.keys() <= set(STRUCTURE_FIELDS):
                raise Malformed(at, "expected a node's structure fields")
            node = decode(Node, {**n, "source": None}, at)
            node.source = self.source(n.get("source"), f"{at}.source")
            nodes.append(node)
        edges = []
        for k, e in enumerate(as_list(data.get("edges"), f"{where}.edges")):
            at = f"{where}.edges[{k}]"
            if not isinstance(e, list) or len(e) != 3:
                raise Malformed(at, "expected [source position, consumer position, input index]")
            src, dst = (_position(e[i], len(nodes), at) for i in (0, 1))
            edges.append(Edge(nodes[src].id, nodes[dst].id, value_of(int, e[2], f"{at}[2]")))
        calls = value_of(list[ModuleCall], data.get("module_calls", []), f"{where}.module_calls")
        graph = Graph(nodes, edges, calls)
        check_graph(graph, where)
        return graph

    def graph(self, structure: Any, node_numbers: Any, edge_numbers: Any, where: str) -> Graph:
        """The graph of a pass: the structure's objects, copies where the pass has numbers."""
        number = _position(structure, len(self.structures), f"{where}.graph")
        template = self.structures[number]
        nodes = list(template.nodes)
        for k, item in enumerate(as_list(node_numbers or [], f"{where}.nodes")):
            at = f"{where}.nodes[{k}]"
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], dict):
                raise Malformed(at, "expected [node position, numbers]")
            pos = _position(item[0], len(nodes), at)
            nodes[pos] = _with_numbers(template.nodes[pos], item[1], at)
        edges = list(template.edges)
        by_id = self._node_index.get(number, {})
        if edge_numbers and not by_id:
            by_id = self._node_index[number] = {n.id: n for n in template.nodes}
        for k, item in enumerate(as_list(edge_numbers or [], f"{where}.edges")):
            at = f"{where}.edges[{k}]"
            if not isinstance(item, list) or len(item) != 3:
                raise Malformed(at, "expected [edge position, gradient, local derivative]")
            pos = _position(item[0], len(edges), at)
            e = template.edges[pos]
            ref = by_id[e.src]
            edges[pos] = Edge(e.src, e.dst, e.index, grad=read_summary(item[1], ref, f"{at}[1]"),
                              local=numbers(item[2], f"{at}[2]"))
        return Graph(nodes, edges, template.module_calls)

    def pass_(self, data: Any, where: str) -> Pass:
        if not isinstance(data, dict):
            raise Malformed(where, "expected an object (a pass)")
        graph = self.graph(data.get("graph"), data.get("nodes"), data.get("edges"), where)
        fields = {k: v for k, v in data.items() if k not in ("graph", "nodes", "edges", "source", "results")}
        p = decode(Pass, {**fields, "graph": {}}, where)
        p.graph = graph
        p.source = self.source(data.get("source"), f"{where}.source")
        p.results = [read_summary(r, None, f"{where}.results[{k}]")
                     for k, r in enumerate(as_list(data.get("results", []), f"{where}.results"))]
        return p

    def event(self, data: Any, where: str) -> Event:
        if not isinstance(data, dict):
            raise Malformed(where, "expected an object (an event)")
        e = decode(Event, {k: v for k, v in data.items() if k not in ("source", "graph")}, where)
        e.source = self.source(data.get("source"), f"{where}.source")
        g = data.get("graph")
        if g is not None:
            if not isinstance(g, dict):
                raise Malformed(f"{where}.graph", "expected an object")
            e.graph = self.graph(g.get("structure"), g.get("nodes"), g.get("edges"), f"{where}.graph")
        return e

    def diagnostic(self, data: Any, where: str) -> Diagnostic:
        if not isinstance(data, dict):
            raise Malformed(where, "expected an object (a diagnostic)")
        d = decode(Diagnostic, {k: v for k, v in data.items() if k != "sources"}, where)
        d.sources = [self.source(s, f"{where}.sources[{k}]") or Source("", 0)
                     for k, s in enumerate(as_list(data.get("sources", []), f"{where}.sources"))]
        return d


def from_dict(data: dict) -> Trace:
    dec = Decoder()
    dec.add_sources(data.get("sources", []))
    dec.add_structures(data.get("structures", []))
    return Trace(
        passes=[dec.pass_(p, f"passes[{k}]") for k, p in enumerate(as_list(data.get("passes", []), "passes"))],
        events=[dec.event(e, f"events[{k}]") for k, e in enumerate(as_list(data.get("events", []), "events"))],
        diagnostics=[dec.diagnostic(d, f"diagnostics[{k}]")
                     for k, d in enumerate(as_list(data.get("diagnostics", []), "diagnostics"))],
        meta=free_form(data.get("meta", {}), "meta"),
    )


def read_summary(data: Any, ref: Node | None, where: str) -> TensorSummary | None:
    """A summary written by `summary`, with its node's shape, dtype and device filled in."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise Malformed(where, "expected an object (a tensor summary)")
    fast = plain_summary(data, ref)
    if fast is not None:
        return fast
    full = dict(data)
    if ref is not None:
        if "shape" not in full and ref.shape is not None:
            full["shape"] = ref.shape
        if "dtype" not in full and ref.dtype is not None:
            full["dtype"] = ref.dtype
        if "device" not in full and ref.device is not None:
            full["device"] = ref.device
    return decode(TensorSummary, full, where)


# (made once: `float | None` built and hashed for every node of every pass costs more than the check)
_FLOAT_OR_NONE, _BOOL, _SAVED = checker(float | None), checker(bool), checker(dict[str, Any])
_NUMBER_FIELDS = frozenset(NUMBER_FIELDS)
_NODE_FIELDS = tuple(f.name for f in fields(Node))  # a Node's fields, in its constructor's order
_fields_of = operator.attrgetter(*_NODE_FIELDS)
_AT = {name: k for k, name in enumerate(_NODE_FIELDS)}


def _with_numbers(node: Node, data: dict, where: str) -> Node:
    """A copy of structure node `node` that carries one pass's numbers (built from its
    fields in order: a loaded long run makes one per leaf per pass)."""
    if not data.keys() <= _NUMBER_FIELDS:
        raise Malformed(where, f"unknown fields {sorted(data.keys() - set(NUMBER_FIELDS))}")
    own = list(_fields_of(node))
    own[_AT["grad_outputs"]] = []
    if "value" in data:
        own[_AT["value"]] = numbers(data["value"], f"{where}.value")
    if "value_norm" in data:
        own[_AT["value_norm"]] = _FLOAT_OR_NONE(data["value_norm"], f"{where}.value_norm")
    for f in ("grad_before", "grad_after", "seed"):
        if f in data:
            own[_AT[f]] = read_summary(data[f], node, f"{where}.{f}")
    if "grad_carried_over" in data:
        own[_AT["grad_carried_over"]] = _BOOL(data["grad_carried_over"], f"{where}.grad_carried_over")
    if "grad_outputs" in data:
        own[_AT["grad_outputs"]] = [read_summary(g, node, f"{where}.grad_outputs[{k}]")
                                    for k, g in enumerate(as_list(data["grad_outputs"], f"{where}.grad_outputs"))]
    if "saved" in data:
        own[_AT["saved"]] = _SAVED(data["saved"], f"{where}.saved")
    return Node(*own)


def as_list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise Malformed(where, "expected a list")
    return value


def _position(value: Any, size: int, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size:
        return value
    raise Malformed(where, f"expected a position from 0 to {size - 1}")

