"""One graph as the explorer's JSON: short keys, numbers rounded, user text left as data
(the page only ever sets it as text, never as HTML)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ...model import Diagnostic, Edge, Graph, Node, Pass, Source, TensorSummary
from ..collapse import view
from ..fold import grad_norm, parameter_nodes
from ..memo import node_index

MAX_SERIES = 64  # passes in a node's chart across passes
MAX_VALUE_CHARS = 2000  # a value shown in the details panel (bigger: statistics only)


def graph_data(number: int, passes: Sequence[Pass], diagnostics: Sequence[Diagnostic] = ()) -> dict[str, Any]:
    """The explorer's data for the graph shared by `passes` (the first is the one shown;
    the others give each node's numbers across passes)."""
    p = passes[0]
    g = p.graph
    sources: dict[tuple, int] = {}
    src_list: list[list[Any]] = []

    def src(s: Source | None) -> int:
        if s is None:
            return -1
        key = (s.file, s.line, s.code, s.cell)
        if key not in sources:
            sources[key] = len(src_list)
            src_list.append([s.short, s.file if s.cell is None else s.short, s.line, s.code])
        return sources[key]

    home = _homes(g)
    flagged = {n for d in diagnostics for n in d.nodes if d.pass_index in (None, p.index)}
    nodes = [_node(n, home.get(n.id, -1), src(n.source), n.id in flagged) for n in g.nodes]
    edges = [_edge(e) for e in g.edges]
    calls = [[c.path, c.cls, c.call, -1 if c.parent is None else c.parent, _params(g, c), _num(_gnorm(g, c))]
             for c in g.module_calls]
    shown = view(g, "auto", flagged=flagged)
    depths = _depths(g)
    if shown.depth is None:
        open_calls = list(range(len(g.module_calls)))
    else:
        open_calls = [i for i, d in enumerate(depths) if d <= shown.depth]
    folds = [b.calls for b in shown.boxes if b.count > 1] + [r.calls for r in shown.runs]
    run_calls = {i for r in shown.runs for i in r.calls}
    open_calls = [i for i in open_calls if i not in run_calls]  # a run drawn once: ×N box here
    return {
        "graph": number, "pass": p.index, "passes": [q.index for q in passes],
        "nodes": nodes, "edges": edges, "calls": calls, "sources": src_list,
        "open": open_calls, "folds": folds, "depths": depths,
        "series": _series(g, passes), "seriesPasses": _sampled(passes),
        "diagnostics": [[d.code, d.title, [n for n in d.nodes if n in home or _has(g, n)]] for d in diagnostics
                        if d.pass_index in (None, p.index)],
    }


def _has(g: Graph, node_id: str) -> bool:
    return node_id in node_index(g)


def _depths(g: Graph) -> list[int]:
    out: list[int] = []
    for c in g.module_calls:
        above = out[c.parent] if c.parent is not None else 0
        out.append(above + (1 if c.path else 0))
    return out


def _homes(g: Graph) -> dict[str, int]:
    """Each node's innermost module call; a leaf goes in the innermost call holding all its
    consumers (a block's weights sit in the block)."""
    home: dict[str, int] = {}
    for i, c in enumerate(g.module_calls):  # a call begins after its parent: inner calls win
        for nid in c.nodes:
            home[nid] = i
    parent = [c.parent for c in g.module_calls]

    def chain(i: int | None) -> list[int]:
        out = []
        while i is not None and i >= 0:
            out.append(i)
            i = parent[i]
        return out[::-1]

    consumers: dict[str, list[str]] = {}
    for e in g.edges:
        consumers.setdefault(e.src, []).append(e.dst)
    for n in g.nodes:
        if n.kind != "leaf" or n.is_root or n.id in home:
            continue
        into = consumers.get(n.id, [])
        if not into or any(d not in home for d in into):
            continue
        common = chain(home[into[0]])
        for d in into[1:]:
            other = chain(home[d])
            k = 0
            while k < min(len(common), len(other)) and common[k] == other[k]:
                k += 1
            common = common[:k]
        if common:
            home[n.id] = common[-1]
    return home


def _params(g: Graph, c) -> int:
    return sum(math.prod(n.shape) for n in parameter_nodes(g, c) if n.shape is not None)


def _gnorm(g: Graph, c) -> float | None:
    return grad_norm(parameter_nodes(g, c))


def _num(x: Any) -> Any:
    """A float as JSON can hold it: 6 significant digits; NaN and infinities as strings."""
    if isinstance(x, bool) or x is None or isinstance(x, int):
        return x
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return float(f"{x:.6g}")
    return None


def _value(v: Any) -> Any:
    if v is None:
        return None
    text = repr(v)
    return v if len(text) <= MAX_VALUE_CHARS else None


def _clean(v: Any) -> Any:
    """Values (nested lists) with NaN/inf as strings, JSON-safe."""
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return _num(v) if isinstance(v, (int, float)) else (str(v) if v is not None else None)


def _tensor(t: TensorSummary | None) -> dict[str, Any] | None:
    if t is None:
        return None
    out: dict[str, Any] = {"s": t.shape, "t": t.dtype, "d": t.device, "n": _num(t.norm), "m": _num(t.max_abs),
                           "a": _num(t.mean)}
    if t.nan:
        out["nan"] = t.nan
    if t.inf:
        out["inf"] = t.inf
    if _value(t.value) is not None:
        out["v"] = _clean(t.value)
    return out


def _node(n: Node, home: int, source: int, flagged: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"i": n.id, "k": n.kind, "g": n.grad_fn}
    for key, v in (("n", n.name), ("o", n.op), ("mod", n.module), ("s", n.shape), ("t", n.dtype),
                   ("d", n.device), ("cb", n.created_by)):
        if v:
            out[key] = v
    if n.module_call:
        out["mc"] = n.module_call
    if home >= 0:
        out["c"] = home
    if source >= 0:
        out["src"] = source
    if n.is_parameter:
        out["p"] = 1
    if n.is_root:
        out["r"] = 1
    if flagged:
        out["f"] = 1
    if _value(n.value) is not None:
        out["v"] = _clean(n.value)
    grads = [_tensor(t) for t in n.grad_outputs]
    if any(grads):
        out["go"] = grads
    if n.grad_before is not None:
        out["gb"] = _tensor(n.grad_before)
    if n.grad_after is not None:
        out["ga"] = _tensor(n.grad_after)
    if n.seed is not None:
        out["seed"] = _tensor(n.seed)
    return out


def _edge(e: Edge) -> list[Any]:
    local = _clean(e.local) if e.local is not None and _value(e.local) is not None else None
    return [e.src, e.dst, e.index, _tensor(e.grad), local]


def _sampled(passes: Sequence[Pass]) -> list[int]:
    if len(passes) <= MAX_SERIES:
        return [q.index for q in passes]
    return [passes[round(k * (len(passes) - 1) / (MAX_SERIES - 1))].index for k in range(MAX_SERIES)]


def _series(g: Graph, passes: Sequence[Pass]) -> dict[str, list[Any]]:
    """Node id -> its gradient norm in each pass that shares the graph (the leaves: their
    `.grad` after the pass); only when there is more than one pass."""
    if len(passes) < 2:
        return {}
    if len(passes) > MAX_SERIES:  # a long run: passes spread evenly over it
        passes = [passes[round(k * (len(passes) - 1) / (MAX_SERIES - 1))] for k in range(MAX_SERIES)]
    out: dict[str, list[Any]] = {}
    for q in passes:
        by_id = {n.id: n for n in q.graph.nodes}
        for n in g.nodes:
            m = by_id.get(n.id)
            t = None if m is None or m.grad_fn != n.grad_fn else (m.grad_after if m.kind == "leaf" else m.grad)
            out.setdefault(n.id, []).append(_num(t.norm) if t is not None else None)
    return {k: v for k, v in out.items() if any(x is not None for x in v)}
