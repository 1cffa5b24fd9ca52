"""Which passes get drawn: a training loop builds the same graph every step, so each
distinct graph (`Graph.signature()`) is drawn once, at its first pass, plus every pass
a diagnostic points at. A 1,000-step loop gives a handful of pictures, not 1,000; and
graphs that differ only in how many times a loop ran (episodes of different lengths)
are one family, drawn once (loops.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

from ..model import Diagnostic, Event, Pass, Trace
from ..series import span
from .dot import diagnostics_for, graph_to_dot
from .loops import family_key, main_count
from .memo import Memo


@dataclass
class GraphGroup:
    """The passes that share one graph structure, or one family of structures: graphs that
    differ only in how many times a loop ran (episodes of different lengths, loops.py)."""

    number: int  # 1-based, in order of first appearance
    passes: list[int] = field(default_factory=list)  # every pass with this graph
    drawn: list[int] = field(default_factory=list)  # the passes that get a picture
    graphs: int = 1  # distinct graph structures in the family
    lengths: list[int] = field(default_factory=list)  # how many times its loop ran, each length seen

    def lengths_text(self) -> str:
        """`lengths 12, 30, 60` (or `lengths 2–60, 41 seen` when many)."""
        if not self.lengths:
            return ""
        if len(self.lengths) > 8:
            return f"lengths {self.lengths[0]}–{self.lengths[-1]}, {len(self.lengths)} seen"
        return "lengths " + ", ".join(map(str, self.lengths))


_GROUPS: Memo[list[GraphGroup]] = Memo()  # each trace's families, found once


def graph_groups(trace: Trace) -> list[GraphGroup]:
    """The graph families of `trace` (most are one distinct graph), with the passes that
    share each and those to draw. Kept while the trace lives, until its passes change."""
    stamp = (id(trace.passes), len(trace.passes), id(trace.diagnostics), len(trace.diagnostics))
    return _GROUPS.get(trace, stamp, lambda: _graph_groups(trace))


def _graph_groups(trace: Trace) -> list[GraphGroup]:
    # Only a diagnostic that names its pass earns that pass a picture: node ids repeat in
    # every step of a loop, so one without a pass would otherwise draw them all.
    diagnosed = {d.pass_index for d in trace.diagnostics if d.pass_index is not None}
    family_of: dict[str, Hashable] = {}  # a graph's signature -> its family's key
    by_family: dict[Hashable, GraphGroup] = {}
    lengths: dict[Hashable, set[int]] = {}
    memo: dict[int, str] = {}  # (the passes' nodes live as long as this call: the trace holds them)
    for p in trace.passes:
        sig = p.graph.signature(memo)
        fam = family_of.get(sig)
        if fam is None:
            fam = family_of[sig] = family_key(p.graph)
            if fam in by_family:
                by_family[fam].graphs += 1
            if (count := main_count(p.graph)) is not None:
                lengths.setdefault(fam, set()).add(count)
        group = by_family.get(fam)
        if group is None:
            group = by_family[fam] = GraphGroup(number=len(by_family) + 1)
            group.drawn.append(p.index)
        elif p.index in diagnosed:
            group.drawn.append(p.index)
        group.passes.append(p.index)
    for fam, group in by_family.items():
        group.lengths = sorted(lengths.get(fam, ()))
    return list(by_family.values())


def graphs_text(groups: list[GraphGroup]) -> str:
    """`1 distinct graph`, `3 distinct graphs`, or `41 distinct graphs in 2 families`."""
    graphs = sum(g.graphs for g in groups)
    text = f"{graphs} distinct graph{'s' if graphs != 1 else ''}"
    if graphs != len(groups):
        text += f" in {len(groups)} famil{'ies' if len(groups) != 1 else 'y'}"
    return text


def family_text(g: GraphGroup) -> str:
    """What a family's heading adds: `a family of 9 graphs that differ only in how many
    times a loop ran (lengths 12, 30, 60), drawn once`; empty for a single graph."""
    if g.graphs < 2:
        return ""
    lengths = f" ({g.lengths_text()})" if g.lengths else ""
    return f"a family of {g.graphs} graphs that differ only in how many times a loop ran{lengths}, drawn once"


def pass_diagnostics(trace: Trace, p: Pass) -> list[Diagnostic]:
    """The diagnostics drawn on pass `p`'s graph."""
    return diagnostics_for(trace.diagnostics, p.graph, p.index)


def pass_title(p: Pass, trace: Trace | None = None) -> str:
    """`pass 0 · Tensor.backward at lesson.py:6 · step 3`, the caption of a pass's graph
    (and why its edges carry no gradients, when they do not)."""
    where = f" at {p.source.short}" if p.source else ""
    step = f" · step {p.step}" if p.step else ""
    sampled = ""
    if not p.edge_gradients:
        off = trace is not None and (trace.meta.get("options") or {}).get("gradients") == "off"
        sampled = " · edge gradients off (trace(gradients=\"off\"))" if off else \
            " · edge gradients not recorded (a repeat; see trace(every=))"
    made = " · create_graph=True: its backward is a graph too" if p.create_graph else ""
    return f"pass {p.index} · {p.api}{where}{made}{step}{sampled}"


def svg_name(pass_index: int) -> str:
    """The file name of a pass's picture in an output folder."""
    return f"pass-{pass_index:03d}.svg"


def pass_dot(trace: Trace | None, p: Pass, note: str = "", **view: Any) -> str:
    """The DOT of pass `p`: its graph, diagnostics (those of `trace`), caption (and `note`
    under it), and what autograd.grad returned. `view`: `depth`, `expand`, `fold` (see
    collapse.py)."""
    returned = dict(zip(p.inputs, p.results)) if p.kind == "grad" else None
    diagnostics = pass_diagnostics(trace, p) if trace is not None else []
    title = pass_title(p, trace) + (f"\n{note}" if note else "")
    return graph_to_dot(p.graph, diagnostics, title=title,
                        graph_id=f"p{p.index}", returned=returned, **view)


def event_graphs(trace: Trace) -> list[tuple[int, Event, list[Diagnostic]]]:
    """Events that carry the graph as it stood (a leaf edited in place before any backward),
    with the diagnostics drawn on it: (event index, event, diagnostics)."""
    found = []
    for i, e in enumerate(trace.events):
        diagnostics = [d for d in trace.diagnostics if d.event_index == i]
        if e.graph is not None and (diagnostics or e.kind == REQUIRES_GRAD_READ):
            found.append((i, e, diagnostics))
    return found


REQUIRES_GRAD_READ = "requires-grad-read"  # (capture/graph_snapshots.py)


def event_title(e: Event) -> str:
    """`the graph as it stood at leaf_inplace.py:23, when the error was raised`."""
    where = f" at {e.source.short}" if e.source else ""
    if e.kind == REQUIRES_GRAD_READ:
        return f"the graph as it stood{where}, when the script read .requires_grad (no backward ran)"
    error = torch_error(e)
    return f"the graph as it stood{where}, when PyTorch raised\n{error}" if error else \
        f"the graph as it stood{where}, when the error was raised"


def torch_error(e: Event) -> str:
    """PyTorch's own error text for an event that recorded one (a leaf edited in place):
    `RuntimeError: a leaf Variable that requires grad is being used in an in-place operation.`"""
    message = e.data.get("message") if e.kind == "leaf-inplace-error" else None
    return f"RuntimeError: {message}" if isinstance(message, str) and message else ""


def event_svg_name(event_index: int) -> str:
    return f"event-{event_index:03d}.svg"


def event_dot(trace: Trace, event_index: int) -> str:
    e = trace.events[event_index]
    if e.graph is None:
        raise ValueError(f"event {event_index} ({e.kind}) holds no graph to draw")
    diagnostics = [d for d in trace.diagnostics if d.event_index == event_index]
    return graph_to_dot(e.graph, diagnostics, title=event_title(e), graph_id=f"e{event_index}",
                        requires_grad=e.kind == REQUIRES_GRAD_READ)


def run_passes(trace: Trace) -> tuple[int, str]:
    """How many passes the run had, and for a run that held only a sample of them in
    memory (`gradscope trace`) what the pictures are drawn from: ", 180 held for the
    pictures" (else "")."""
    run = (span(trace) or (len(trace.passes),))[0]
    return run, f", {len(trace.passes):,} held for the pictures" if run != len(trace.passes) else ""
