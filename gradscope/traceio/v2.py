"""Format version 2: each distinct graph structure once, each pass as its numbers.

A training loop builds the same graph every step; what is new each step is a few numbers
per parameter (its `.grad`), the loss, and on sampled passes the edge gradients. So a
version-2 trace holds

    sources:    [Source]                     every source line once, referred to by position
    structures: [{nodes, edges, module_calls}]  a graph without its numbers: node fields that
                                             describe the graph (id, op, name, source, module,
                                             shape, ...) and edges as [src, dst, index]
                                             positions in `nodes`
    passes:     [{index, api, ..., graph: structure position,
                  nodes: [[position, {value, grad_after, ...}]],   only nodes with numbers
                  edges: [[position, grad, local]]}]               only edges with numbers

Tensor summaries leave out what their node already says (shape, dtype, device) and
fields at their defaults. Loading gives passes whose graphs share the structure's node
and edge objects where the pass has no numbers of its own, as capture's repeated passes
do, so a loaded long run costs about its numbers in memory too.
"""

from __future__ import annotations

import operator
from dataclasses import asdict
from typing import Any

from ..model import Diagnostic, Edge, Event, Graph, ModuleCall, Node, Pass, Source, TensorSummary, Trace
from .decode import Malformed, check_graph, checker, decode, free_form, numbers, value_of
from .plain import plain_summary

VERSION = 2

# what a node says of the graph, and what it says of one pass
STRUCTURE_FIELDS = ("id", "kind", "name", "grad_fn", "op", "source", "module", "shape", "dtype", "device",
                    "requires_grad", "is_parameter", "is_root", "created_by_backward", "created_by", "module_call")
NUMBER_FIELDS = ("value", "value_norm", "grad_before", "grad_after", "grad_carried_over", "seed", "grad_outputs", "saved")
SUMMARY_FIELDS = ("norm", "max_abs", "mean", "nan", "inf", "value", "counts_exact")
_structure_of = operator.attrgetter(*STRUCTURE_FIELDS)
_NODE_DEFAULTS = {f: getattr(Node, f) for f in STRUCTURE_FIELDS + NUMBER_FIELDS if hasattr(Node, f)}
_SUMMARY_DEFAULTS = {"device": "cpu", "norm": None, "max_abs": None, "mean": None, "nan": 0, "inf": 0,
                     "value": None, "counts_exact": True}
_PASS_DEFAULTS = {"source": None, "retain_graph": False, "create_graph": False, "step": 0,
                  "edge_gradients": True, "inputs": [], "results": [], "error": None}


# -- writing ------------------------------------------------------------------------------
class Encoder:
    """Turns passes and events into version-2 records, remembering the structures and
    sources written so far (a streaming writer keeps one for the whole run)."""

    def __init__(self) -> None:
        self.sources: list[dict] = []
        self.structures: list[dict] = []
        self._source_ids: dict[Any, int] = {}
        self._structure_ids: dict[tuple, int] = {}
        self._node_keys: dict[tuple, int] = {}
        # per model object seen: (the object, its structure key, whether it carries numbers);
        # capture's repeated passes share objects, so most lookups end here
        self._seen: dict[int, tuple] = {}
        # the last graph's (module calls, their number, edges, node keys, structure position)
        self._last: tuple | None = None

    # sources
    def source(self, src: Source | None) -> int | None:
        if src is None:
            return None
        key = (src.file, src.line, src.code, src.function, src.cell)
        found = self._source_ids.get(key)
        if found is None:
            found = self._source_ids[key] = len(self.sources)
            self.sources.append(_non_default(asdict(src), {"code": "", "function": "", "cell": None}))
        return found

    # graphs
    def graph(self, graph: Graph) -> tuple[int, list, list]:
        """(structure position, node numbers, edge numbers) of a graph."""
        node_keys, numbered = [], []
        seen = self._seen
        for k, node in enumerate(graph.nodes):
            entry = seen.get(id(node))
            if entry is None or entry[0] is not node:
                entry = seen[id(node)] = (node, self._node_key(node), _has_numbers(node))
            node_keys.append(entry[1])
            if entry[2]:
                numbered.append(k)
        edges, calls_list = graph.edges, graph.module_calls
        positions: dict[str, int] | None = None
        memo = self._last
        if memo is not None and memo[0] is calls_list and memo[1] == len(calls_list) and memo[3] == node_keys \
                and len(memo[2]) == len(edges) and all(map(operator.is_, memo[2], edges)):
            # the last graph's edge objects and module calls between the same nodes (a repeated
            # pass shares them): its structure, without hashing the whole graph again
            structure = memo[4]
        else:
            positions = {n.id: k for k, n in enumerate(graph.nodes)}
            edge_keys = [(positions[e.src], positions[e.dst], e.index) for e in edges]
            # (module calls are compared by their fields: `asdict` on every pass would cost
            # more than the rest of the pass's record)
            calls = tuple(map(_call_key, calls_list))
            key = (tuple(node_keys), tuple(edge_keys), calls)
            structure = self._structure_ids.get(key)
            if structure is None:
                structure = self._structure_ids[key] = len(self.structures)
                record = {"nodes": [self._node_structure(n) for n in graph.nodes],
                          "edges": [list(e) for e in edge_keys]}
                if calls:
                    record["module_calls"] = [asdict(c) for c in calls_list]
                self.structures.append(record)
            self._last = (calls_list, len(calls_list), list(edges), node_keys, structure)
        edge_numbers = []
        for k, e in enumerate(edges):
            if e.grad is not None or e.local is not None:
                if positions is None:
                    positions = {n.id: j for j, n in enumerate(graph.nodes)}
                ref = graph.nodes[positions[e.src]]
                edge_numbers.append([k, summary(e.grad, ref), e.local])
        node_numbers = [[k, _node_numbers(graph.nodes[k])] for k in numbered]
        if len(seen) > 200_000:  # a long run's fresh leaves: forget, the cache is only a shortcut
            seen.clear()
        return structure, node_numbers, edge_numbers

    def _node_key(self, node: Node) -> int:
        key = _structure_of(node)  # (a blank node reads its defaults from the class)
        src, shape = key[5], key[7]
        key = key[:5] + (None if src is None else (src.file, src.line, src.code, src.function),
                         key[6], None if shape is None else tuple(shape)) + key[8:]
        found = self._node_keys.get(key)
        if found is None:
            found = self._node_keys[key] = len(self._node_keys)
        return found

    def _node_structure(self, node: Node) -> dict:
        d = node.__dict__
        out = {}
        for f in STRUCTURE_FIELDS:
            v = d.get(f, _NODE_DEFAULTS.get(f))
            if f in ("id", "kind", "name", "grad_fn") or v != _NODE_DEFAULTS.get(f):
                out[f] = self.source(v) if f == "source" else v
        return out

    # passes, events, diagnostics
    def pass_record(self, p: Pass) -> dict:
        structure, node_numbers, edge_numbers = self.graph(p.graph)
        out: dict[str, Any] = {"index": p.index, "api": p.api, "graph": structure}
        for f, default in _PASS_DEFAULTS.items():
            v = getattr(p, f)
            if v != default:
                if f == "source":
                    v = self.source(v)
                elif f == "results":
                    v = [summary(r, None) for r in v]
                out[f] = v
        if node_numbers:
            out["nodes"] = node_numbers
        if edge_numbers:
            out["edges"] = edge_numbers
        return out

    def event_record(self, e: Event) -> dict:
        out: dict[str, Any] = {"kind": e.kind}
        if e.source is not None:
            out["source"] = self.source(e.source)
        if e.pass_index is not None:
            out["pass_index"] = e.pass_index
        if e.data:
            out["data"] = e.data
        if e.graph is not None:
            structure, node_numbers, edge_numbers = self.graph(e.graph)
            out["graph"] = {"structure": structure, "nodes": node_numbers, "edges": edge_numbers}
        return out

    def diagnostic_record(self, d: Diagnostic) -> dict:
        out = _non_default(asdict(d), {"hint": "", "sources": [], "nodes": [], "pass_index": None,
                                       "event_index": None}, keep=("code", "severity", "title", "message"))
        if d.sources:
            out["sources"] = [self.source(s) for s in d.sources]
        return out


def to_dict(trace: Trace, header: dict) -> dict:
    """A whole trace as one version-2 document (`header` holds format and version)."""
    enc = Encoder()
    passes = [enc.pass_record(p) for p in trace.passes]
    events = [enc.event_record(e) for e in trace.events]
    diagnostics = [enc.diagnostic_record(d) for d in trace.diagnostics]
    return {**header, "meta": trace.meta, "sources": enc.sources, "structures": enc.structures,
            "passes": passes, "events": events, "diagnostics": diagnostics}


def summary(t: TensorSummary | None, ref: Node | None) -> dict | None:
    """A tensor summary without what its node (`ref`) says already, and without defaults."""
    if t is None:
        return None
    out = {}
    # (field by field, no loop over names: a long run writes hundreds of thousands)
    if ref is not None:
        if t.shape != ref.shape:
            out["shape"] = t.shape
        if t.dtype != ref.dtype:
            out["dtype"] = t.dtype
        if t.device != (ref.device if ref.device is not None else "cpu"):
            out["device"] = t.device
    else:
        if t.shape is not None:
            out["shape"] = t.shape
        if t.dtype is not None:
            out["dtype"] = t.dtype
        if t.device != "cpu":
            out["device"] = t.device
    if t.norm is not None:
        out["norm"] = t.norm
    if t.max_abs is not None:
        out["max_abs"] = t.max_abs
    if t.mean is not None:
        out["mean"] = t.mean
    if t.nan != 0:
        out["nan"] = t.nan
    if t.inf != 0:
        out["inf"] = t.inf
    if t.value is not None:
        out["value"] = t.value
    if t.counts_exact != True:  # noqa: E712  (as the other defaults: by equality)
        out["counts_exact"] = t.counts_exact
    return out


def _call_key(c: ModuleCall) -> tuple:
    return (c.path, c.cls, c.call, c.parent, tuple(c.parameters), tuple(c.nodes))


def _has_numbers(node: Node) -> bool:
    d = node.__dict__
    return (d.get("value") is not None or d.get("value_norm") is not None
            or d.get("grad_before") is not None or d.get("grad_after") is not None
            or d.get("seed") is not None or bool(d.get("grad_carried_over")) or bool(d.get("grad_outputs"))
            or d.get("saved") is not None)


def _node_numbers(node: Node) -> dict:
    d = node.__dict__
    out: dict[str, Any] = {}
    if d.get("value") is not None:
        out["value"] = d["value"]
    if d.get("value_norm") is not None:
        out["value_norm"] = d["value_norm"]
    for f in ("grad_before", "grad_after", "seed"):
        if d.get(f) is not None:
            out[f] = summary(d[f], node)
    if d.get("grad_carried_over"):
        out["grad_carried_over"] = True
    if d.get("grad_outputs"):
        out["grad_outputs"] = [summary(g, node) for g in d["grad_outputs"]]
    if d.get("saved") is not None:
        out["saved"] = d["saved"]
    return out


def _non_default(d: dict, defaults: dict, keep: tuple = ()) -> dict:
    return {k: v for k, v in d.items() if k in keep or k not in defaults or v != defaults[k]}


# -- reading ------------------------------------------------------------------------------
class Decoder:
    """Builds model objects from version-2 records, checking every field."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.structures: list[Graph] = []

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
        template = self.structures[_position(structure, len(self.structures), f"{where}.graph")]
        nodes = list(template.nodes)
        for k, item in enumerate(as_list(node_numbers or [], f"{where}.nodes")):
            at = f"{where}.nodes[{k}]"
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], dict):
                raise Malformed(at, "expected [node position, numbers]")
            pos = _position(item[0], len(nodes), at)
            nodes[pos] = _with_numbers(template.nodes[pos], item[1], at)
        edges = list(template.edges)
        for k, item in enumerate(as_list(edge_numbers or [], f"{where}.edges")):
            at = f"{where}.edges[{k}]"
            if not isinstance(item, list) or len(item) != 3:
                raise Malformed(at, "expected [edge position, gradient, local derivative]")
            pos = _position(item[0], len(edges), at)
            e = template.edges[pos]
            ref = template.node(e.src)
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


def _with_numbers(node: Node, data: dict, where: str) -> Node:
    if not data.keys() <= _NUMBER_FIELDS:
        raise Malformed(where, f"unknown fields {sorted(data.keys() - set(NUMBER_FIELDS))}")
    own = object.__new__(Node)
    own.__dict__.update(node.__dict__)
    own.grad_outputs = []
    if "value" in data:
        own.value = numbers(data["value"], f"{where}.value")
    if "value_norm" in data:
        own.value_norm = _FLOAT_OR_NONE(data["value_norm"], f"{where}.value_norm")
    for f in ("grad_before", "grad_after", "seed"):
        if f in data:
            setattr(own, f, read_summary(data[f], node, f"{where}.{f}"))
    if "grad_carried_over" in data:
        own.grad_carried_over = _BOOL(data["grad_carried_over"], f"{where}.grad_carried_over")
    if "grad_outputs" in data:
        own.grad_outputs = [read_summary(g, node, f"{where}.grad_outputs[{k}]")
                            for k, g in enumerate(as_list(data["grad_outputs"], f"{where}.grad_outputs"))]
    if "saved" in data:
        own.saved = _SAVED(data["saved"], f"{where}.saved")
    return own


def as_list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise Malformed(where, "expected a list")
    return value


def _position(value: Any, size: int, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size:
        return value
    raise Malformed(where, f"expected a position from 0 to {size - 1}")

