"""Small helpers shared by the rules: sources from event data, node lookups, wording."""

from __future__ import annotations

import math
from typing import Any, Iterable, TypeVar

from ..events import EventData
from ..model import Diagnostic, Event, Graph, Node, Pass, Source, TensorSummary, Trace

ERROR, WARNING, INFO = "error", "warning", "info"

# A rule returns (when, Diagnostic): `when` orders diagnostics as things happened.
# Pass p is at p; an event recorded between pass p-1 and pass p is at p - 0.5.
Found = tuple[float, Diagnostic]
R = TypeVar("R", bound=EventData)


def source_of(data: Any) -> Source | None:
    """A Source from an event's plain dict (`{"file", "line", "code", "function"}`)."""
    if isinstance(data, Source):
        return data
    if not isinstance(data, dict) or not data.get("file"):
        return None
    return Source(
        file=str(data["file"]),
        line=int(data.get("line") or 0),
        code=str(data.get("code") or ""),
        function=str(data.get("function") or ""),
        cell=data["cell"] if isinstance(data.get("cell"), int) else None,
    )


def where(source: Source | None) -> str:
    """"`y.add_(1)` (line 12)" — how a message points at a line."""
    if source is None:
        return "an unknown line"
    code = strip_comment(source.code)
    if code:
        return f"`{code}` (line {source.line})"
    return f"line {source.line} ({source.file_label})"


def strip_comment(code: str) -> str:
    """`y.backward()  # adds to .grad` -> `y.backward()` (a `#` inside a string stays)."""
    quote = None
    for i, ch in enumerate(code):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return code[:i].rstrip()
    return code.strip()


def line(source: Source | None) -> str:
    return f"line {source.line}" if source is not None else "an unknown line"


def unique_sources(sources: Iterable[Source | None]) -> list[Source]:
    out: list[Source] = []
    seen = set()
    for s in sources:
        if s is None:
            continue
        key = (s.file, s.line)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def events(trace: Trace, kind: type[R]) -> list[tuple[int, Event, R]]:
    """(position, event, its typed record) of the events of one kind, in order."""
    return [(i, e, e.data) for i, e in enumerate(trace.events) if isinstance(e.data, kind)]


def event_time(e: Event) -> float:
    return (e.pass_index if e.pass_index is not None else 0) - 0.5


def pass_at(trace: Trace, index: int | None) -> Pass | None:
    if index is None:
        return None
    for p in trace.passes:
        if p.index == index:
            return p
    return None


def failed_pass(trace: Trace, e: Event) -> Pass | None:
    """The pass a "backward-error" event belongs to (it is recorded right after that pass)."""
    if e.pass_index is None:
        return None
    p = pass_at(trace, e.pass_index - 1)
    return p if p is not None and p.error else None


def node_or_none(graph: Graph | None, node_id: Any) -> Node | None:
    if graph is None or not isinstance(node_id, str):
        return None
    for n in graph.nodes:
        if n.id == node_id:
            return n
    return None


def consumers(graph: Graph, node_id: str) -> list[Node]:
    """The op nodes that read `node_id` in the forward pass."""
    by_id = {n.id: n for n in graph.nodes}
    return [by_id[e.dst] for e in graph.edges if e.src == node_id and e.dst in by_id]


def is_zero(s: TensorSummary | None) -> bool | None:
    """True when the summary is of an all-zero tensor, None when it cannot say."""
    if s is None:
        return True
    if s.max_abs is not None and not (isinstance(s.max_abs, float) and math.isnan(s.max_abs)):
        return s.max_abs == 0
    if s.norm is not None and not (isinstance(s.norm, float) and math.isnan(s.norm)):
        return s.norm == 0
    if s.value is not None:
        flat = _flatten(s.value)
        return all(v == 0 for v in flat) if flat else None
    return None


def _flatten(v: Any) -> list:
    if isinstance(v, list):
        out: list = []
        for x in v:
            out.extend(_flatten(x))
        return out
    return [v]


def show(s: TensorSummary | None) -> str:
    """A gradient as a reader wants it in a sentence: its value when it is one number."""
    if s is None:
        return "None"
    v = s.scalar()
    if v is not None:
        return f"{v:g}" if isinstance(v, float) else str(v)
    if s.norm is not None:
        return f"norm {s.norm:.4g}"
    return "a tensor of shape " + "x".join(map(str, s.shape))


def names(items: Iterable[str], limit: int = 4) -> str:
    """`w`, `w and b`, `w, b and x`, `a, b, c, d and 3 more` (each in backticks)."""
    items = [f"`{i}`" for i in items if i] or ["a leaf tensor"]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith(("s", "x", "ch", "sh")) else f"{n} {word}s"


def op_label(op: str) -> str:
    """How an op is named in a sentence: `setitem` is an assignment to part of a tensor."""
    return {"setitem": "item assignment (`t[...] = ...`)"}.get(op, op)
