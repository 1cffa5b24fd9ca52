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

import math
import operator
from dataclasses import MISSING, asdict, fields
from itertools import compress
from typing import Any, Iterable

from ..events import LeafUpdate, OptimizerStep
from ..model import (
    Diagnostic,
    Event,
    Graph,
    LazyGraph,
    LightNumbers,
    ModuleCall,
    Node,
    Pass,
    Repeat,
    RepeatLayout,
    Source,
    TensorSummary,
    Trace,
)
from .jsonio import dumps

VERSION = 2

# what a node says of the graph, and what it says of one pass
STRUCTURE_FIELDS = ("id", "kind", "name", "grad_fn", "op", "source", "module", "shape", "dtype", "device",
                    "requires_grad", "is_parameter", "is_root", "created_by_backward", "created_by", "module_call")
NUMBER_FIELDS = ("value", "value_norm", "grad_before", "grad_after", "grad_carried_over", "seed", "grad_outputs", "saved")
SUMMARY_FIELDS = ("norm", "max_abs", "mean", "nan", "inf", "value", "counts_exact")
structure_of = operator.attrgetter(*STRUCTURE_FIELDS)  # a node's structure fields, in that order
_numbers_of = operator.attrgetter(*NUMBER_FIELDS)
_NODE_DEFAULTS = {f.name: f.default for f in fields(Node) if f.default is not MISSING}
_SUMMARY_DEFAULTS = {"device": "cpu", "norm": None, "max_abs": None, "mean": None, "nan": 0, "inf": 0,
                     "value": None, "counts_exact": True}
_PASS_DEFAULTS: dict[str, Any] = {"source": None, "retain_graph": False, "create_graph": False, "step": 0,
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
        # the last graph's (nodes, their structure keys, whether each carries numbers)
        self._last_nodes: tuple[list, list[int], list[bool]] | None = None
        self._repeats: dict[int, int] = {}  # a Repeat's template -> its structure's position
        self._seed_texts: dict[tuple, tuple[TensorSummary, str]] = {}  # (see `_root_text`)
        self._layouts: dict[int, tuple[RepeatLayout, list[bool]]] = {}  # (see `_norm_alone`)

    def forget_objects(self) -> None:
        """Drop the per-object shortcuts (they hold the run's model objects); the tables of
        sources and structures written stay."""
        self._seen = {}
        self._last = self._last_nodes = None

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
        nodes = graph.nodes
        seen = self._seen
        last = self._last_nodes
        if last is not None and len(last[0]) == len(nodes):
            # a repeated pass holds the last graph's node objects but for its leaves and roots:
            # only the nodes that differ are looked up
            node_keys, flags = list(last[1]), list(last[2])
            todo: Iterable[int] = [k for k, same in enumerate(map(operator.is_, nodes, last[0])) if not same]
        else:
            node_keys, flags = [0] * len(nodes), [False] * len(nodes)
            todo = range(len(nodes))
        for k in todo:
            node = nodes[k]
            entry = seen.get(id(node))
            if entry is None or entry[0] is not node:
                entry = (node, self._node_key(node), _has_numbers(node))
                if not entry[2]:  # (a node with numbers is its pass's own: never met again)
                    seen[id(node)] = entry
            node_keys[k], flags[k] = entry[1], entry[2]
        numbered = list(compress(range(len(nodes)), flags))
        self._last_nodes = (list(nodes), node_keys, flags)
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
        key = structure_of(node)
        src, shape = key[5], key[7]
        key = key[:5] + (None if src is None else (src.file, src.line, src.code, src.function),
                         key[6], None if shape is None else tuple(shape)) + key[8:]
        found = self._node_keys.get(key)
        if found is None:
            found = self._node_keys[key] = len(self._node_keys)
        return found

    def _node_structure(self, node: Node) -> dict:
        out = {}
        for f, v in zip(STRUCTURE_FIELDS, structure_of(node)):
            if f in ("id", "kind", "name", "grad_fn") or v != _NODE_DEFAULTS.get(f):
                out[f] = self.source(v) if f == "source" else v
        return out

    # passes, events, diagnostics
    def pass_record(self, p: Pass, repeat: Repeat | None = None) -> dict:
        """A pass's record; `repeat`: how it repeats an earlier pass's graph, when capture
        says so (then only the nodes it owns are looked at; a light pass's graph says so
        itself, and its numbers are read as they are, without making its nodes)."""
        graph = p.graph
        if repeat is None and type(graph) is LazyGraph:
            repeat = graph.numbers.layout.repeat
        structure = self._repeats.get(repeat.template) if repeat is not None else None
        if structure is None or repeat is None:
            structure, node_numbers, edge_numbers = self.graph(graph)
            if repeat is not None:
                self._repeats[repeat.template] = structure
        elif type(graph) is LazyGraph and not graph.made:
            node_numbers, edge_numbers = [], []
            alone = self._norm_alone(graph.numbers.layout)
            for k, i in graph.numbers.layout.own:
                own = self._light_own(graph.numbers, i, alone)
                if isinstance(own, float):
                    node_numbers.append([k, {"grad_after": {"norm": own}}])
                elif _has_numbers(own):
                    node_numbers.append([k, _node_numbers(own)])
        else:
            nodes = graph.nodes
            node_numbers = [[k, _node_numbers(nodes[k])] for k in repeat.own if _has_numbers(nodes[k])]
            edge_numbers = []
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

    def pass_text(self, p: Pass, repeat: Repeat | None = None) -> str:
        """`{"pass": record}` as JSON text: the record's `dumps`, written out directly for a
        light pass that repeats a graph written before (a long run's most passes: their
        numbers are most of what a trace writes)."""
        structure = self._repeats.get(repeat.template) if repeat is not None else None
        if structure is None or repeat is None or p.error is not None or p.inputs or p.results or p.retain_graph \
                or p.create_graph or p.edge_gradients:
            return dumps({"pass": self.pass_record(p, repeat)})
        graph = p.graph
        parts = []
        if type(graph) is LazyGraph and not graph.made:
            parts = self._light_parts(graph.numbers)
        else:
            nodes = graph.nodes
            for k in repeat.own:
                text = self._numbers_text(nodes[k])
                if text is not None:
                    parts.append(f"[{k},{text}]")
        out = f'{{"pass":{{"index":{p.index},"api":{_text(p.api)},"graph":{structure}'
        if p.source is not None:
            out += f',"source":{self.source(p.source)}'
        if p.step != 0:
            out += f',"step":{p.step}'
        out += ',"edge_gradients":false'
        if parts:
            out += ',"nodes":[' + ",".join(parts) + "]"
        return out + "}}"

    def _numbers_text(self, node: Node) -> str | None:
        """The JSON of a node's numbers in a pass that repeats a graph (None: it has none)."""
        text = _grad_norm_text(node) or self._root_text(node)
        if text is None and _has_numbers(node):
            text = dumps(_node_numbers(node))
        return text

    def _light_parts(self, numbers: LightNumbers) -> list[str]:
        """`[place, numbers]` of each node a light pass owns, from its numbers as capture
        left them (its nodes are not made): the text `_numbers_text` gives of those nodes."""
        parts = []
        alone = self._norm_alone(numbers.layout)
        for k, i in numbers.layout.own:
            own = self._light_own(numbers, i, alone)
            # (a light pass's parameter: its .grad's norm alone, most of a long run's record)
            text = f'{{"grad_after":{{"norm":{own!r}}}}}' if isinstance(own, float) else self._numbers_text(own)
            if text is not None:
                parts.append(f"[{k},{text}]")
        return parts

    @staticmethod
    def _light_own(numbers: LightNumbers, i: int, alone: list[bool]) -> Node | float:
        """A light pass's own node `i` (a leaf's number, or -1 - a root's), or the leaf's
        `.grad` norm when that norm alone is what its node's record would say (`alone`:
        `_norm_alone` of its layout)."""
        if i < 0:
            return numbers.roots[-1 - i]
        g, values, value_norms = numbers.grads[i], numbers.values, numbers.value_norms
        if type(g) is float and alone[i] and (values is None or values[i] is None) \
                and (value_norms is None or value_norms[i] is None):
            return g
        return numbers.leaf(i)

    def _norm_alone(self, layout: RepeatLayout) -> list[bool]:
        """Per leaf of `layout`: is a norm alone the whole record of its `.grad` (a tensor
        of the leaf's own shape, dtype and device, which a node's record leaves out)?"""
        kept = self._layouts.get(id(layout))
        if kept is None or kept[0] is not layout:
            alone = [(shape, dtype, device) == (n.shape, n.dtype, n.device or "cpu")
                     for (shape, dtype, device), n in zip(layout.grad_kinds, layout.leaf_nodes)]
            if len(self._layouts) > 64:
                self._layouts.clear()
            kept = self._layouts[id(layout)] = (layout, alone)
        return kept[1]

    def _root_text(self, node: Node) -> str | None:
        """The JSON of a root's numbers when they are a number (a loss) and its seed (one
        summary object for every pass alike: its JSON is kept), else None."""
        value, seed = node.value, node.seed
        if not node.is_root or seed is None or type(value) is not float or not math.isfinite(value) \
                or _has_numbers_but_value_and_seed(node):
            return None
        key = (id(seed), None if node.shape is None else tuple(node.shape), node.dtype, node.device)
        kept = self._seed_texts.get(key)
        if kept is None or kept[0] is not seed:
            if len(self._seed_texts) > 64:
                self._seed_texts.clear()
            kept = self._seed_texts[key] = (seed, dumps(summary(seed, node)))
        return f'{{"value":{value!r},"seed":{kept[1]}}}'

    def events_text(self, events: list[Event]) -> str:
        """`{"events": [record, ...]}` as JSON text: the `dumps` of their records, an
        optimizer step's and its leaf update's (every step has them) written out directly."""
        return '{"events":[' + ",".join(map(self._event_text, events)) + "]}"

    def _event_text(self, e: Event) -> str:
        data = e.data
        if e.graph is None and e.pass_index is not None and not data.extra:
            if type(data) is OptimizerStep and data.update_norms is None and type(data.step) is int \
                    and data.optimizer:
                body = f'"optimizer":{_text(data.optimizer)},"step":{data.step}'
            elif type(data) is LeafUpdate and data.leaves and all(
                    len(x) == 2 and type(x[0]) is int and type(x[1]) is str for x in data.leaves):
                body = '"leaves":[' + ",".join(f"[{k},{_text(str(node))}]" for k, node in data.leaves) + "]"
            else:
                return dumps(self.event_record(e))
            source = "" if e.source is None else f',"source":{self.source(e.source)}'
            return f'{{"kind":"{data.KIND}"{source},"pass_index":{e.pass_index},"data":{{{body}}}}}'
        return dumps(self.event_record(e))

    def event_record(self, e: Event) -> dict:
        out: dict[str, Any] = {"kind": e.kind}
        if e.source is not None:
            out["source"] = self.source(e.source)
        if e.pass_index is not None:
            out["pass_index"] = e.pass_index
        if e.data:
            out["data"] = e.data.to_dict()  # (the record's JSON object: keys as capture emitted them)
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
    out: dict[str, Any] = {}
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


def _grad_norm_text(node: Node) -> str | None:
    """The JSON of a leaf's numbers when they are its `.grad`'s norm alone (a light pass's
    parameters), else None."""
    g = node.grad_after
    if node.kind != "leaf" or g is None or g.norm is None or not math.isfinite(g.norm) \
            or _has_numbers_but_grad(node) or g.max_abs is not None or g.mean is not None or g.value is not None \
            or g.nan or g.inf or g.counts_exact is not True or g.shape != node.shape or g.dtype != node.dtype \
            or g.device != (node.device if node.device is not None else "cpu"):
        return None
    return f'{{"grad_after":{{"norm":{g.norm!r}}}}}'


def _text(s: str) -> str:
    """A string's JSON (the few a trace repeats on every line are kept)."""
    found = _TEXTS.get(s)
    if found is None:
        found = dumps(s)
        if len(_TEXTS) < 4096:
            _TEXTS[s] = found
    return found


_TEXTS: dict[str, str] = {}


def _has_numbers_but_value_and_seed(node: Node) -> bool:
    _, value_norm, grad_before, grad_after, carried, _, grad_outputs, saved = _numbers_of(node)
    return (value_norm is not None or grad_before is not None or grad_after is not None or bool(carried)
            or bool(grad_outputs) or saved is not None)


def _has_numbers_but_grad(node: Node) -> bool:
    value, value_norm, grad_before, _, carried, seed, grad_outputs, saved = _numbers_of(node)
    return (value is not None or value_norm is not None or grad_before is not None or seed is not None
            or bool(carried) or bool(grad_outputs) or saved is not None)


def _call_key(c: ModuleCall) -> tuple:
    return (c.path, c.cls, c.call, c.parent, tuple(c.parameters), tuple(c.nodes))


def _has_numbers(node: Node) -> bool:
    value, value_norm, grad_before, grad_after, carried, seed, grad_outputs, saved = _numbers_of(node)
    return (value is not None or value_norm is not None or grad_before is not None or grad_after is not None
            or seed is not None or bool(carried) or bool(grad_outputs) or saved is not None)


def _node_numbers(node: Node) -> dict:
    value, value_norm, grad_before, grad_after, carried, seed, grad_outputs, saved = _numbers_of(node)
    out: dict[str, Any] = {}
    if value is not None:
        out["value"] = value
    if value_norm is not None:
        out["value_norm"] = value_norm
    for f, v in (("grad_before", grad_before), ("grad_after", grad_after), ("seed", seed)):
        if v is not None:
            out[f] = summary(v, node)
    if carried:
        out["grad_carried_over"] = True
    if grad_outputs:
        out["grad_outputs"] = [summary(g, node) for g in grad_outputs]
    if saved is not None:
        out["saved"] = saved
    return out


def _non_default(d: dict, defaults: dict, keep: tuple = ()) -> dict:
    return {k: v for k, v in d.items() if k in keep or k not in defaults or v != defaults[k]}
