"""How a collapsed module call looks in DOT: its label and style (see collapse.py)."""

from __future__ import annotations

from typing import Any, Callable

from ..model import Graph
from . import fmt
from .collapse import Box, DrawnLoop, View

FILL, BORDER, RED, GREY, GRAD = "#f5f5f4", "#57534e", "#dc2626", "#57534e", "#1d4ed8"
SMALL = 9
_PER_CALL_SHOWN = 12  # per-call numbers shown in a folded box


def box_attrs(box: Box) -> dict[str, str]:
    attrs = {"shape": "box", "style": "filled,bold", "fillcolor": FILL, "color": BORDER, "penwidth": "1.6"}
    if box.flagged:
        attrs.update(color=RED, penwidth="3", fillcolor="#fee2e2")
    return attrs


def box_drawer(box: Box, codes: list[str]) -> Callable[[Any], None]:
    """What adds the box to a `graphviz.Digraph` (called when its cluster is drawn)."""
    return lambda g: g.node(box.id, label=box_label(box, codes), **box_attrs(box))


def box_label(box: Box, codes: list[str]) -> str:
    """`blocks.0–11  Block ×12`, its parameters and their gradient norm, in/out shapes,
    the per-call norms of a fold, and what a diagnostic inside it says. Escaped here."""
    path = fmt.esc(box.path or "(top)", 40)
    if box.count > 1 and box.last_path != box.path:
        path = f"{path} – {fmt.esc(box.last_path.rsplit('.', 1)[-1], 12)}"
    times = f' <font point-size="14" color="{RED if box.flagged else BORDER}"><b>×{box.count}</b></font>' \
        if box.count > 1 else ""
    rows = [f"<tr><td><b>{path}</b>  {fmt.esc(box.cls, 30)}{times}</td></tr>"]
    each = " each" if len(box.grad_norms) > 1 else ""  # (a loop's calls of one module share them)
    facts = [f"{_count(box.parameters)} params{each}"] if box.parameters else []
    norm = box.grad_norm
    if norm is not None:
        facts.append(f'<font color="{GRAD}">‖grad‖ {fmt.esc(fmt.num(norm))}</font>')
    if facts:
        rows.append(_small(" · ".join(facts)))
    if box.inputs or box.outputs:
        shapes = lambda s: " ".join(fmt.shape(x) for x in s) or "–"  # noqa: E731
        rows.append(_small(f"in {fmt.esc(shapes(box.inputs), 60)} → out {fmt.esc(shapes(box.outputs), 60)}", GREY))
    if len(box.grad_norms) > 1 and any(g is not None for g in box.grad_norms):
        rows.append(f"<tr><td>{_per_call(box.grad_norms)}</td></tr>")
    if box.flagged:
        what = ", ".join(fmt.esc(c, 20) for c in codes) or "a diagnostic"
        rows.append(f'<tr><td><font color="{RED}"><b>⚠ holds {what}</b> (expand to see)</font></td></tr>')
    return '<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def run_notes(graph: Graph, shown: View) -> dict[str, str]:
    """Cluster key -> what its label adds, for open calls drawn once for a run of N."""
    notes = {}
    for run in shown.runs:
        first = graph.module_calls[run.calls[0]]
        key = f"{first.path} (call {first.call})" if first.call else first.path
        last = fmt.esc(run.last_path.rsplit(".", 1)[-1], 12)
        which = f"to {last}, drawn once" if run.last_path != run.path else "one call per loop step, drawn once"
        per_call = _per_call(run.grad_norms) \
            if len(run.grad_norms) > 1 and any(g is not None for g in run.grad_norms) else ""
        head = (f'<font point-size="14" color="{BORDER}"><b>{fmt.esc(key, 60)}  ×{run.count}</b></font>'
                f'<font point-size="11" color="{GREY}">  {fmt.esc(run.cls, 30)} ({which})</font>')
        rows = f'<tr><td align="left">{head}</td></tr>' + (f"<tr><td>{per_call}</td></tr>" if per_call else "")
        notes[key] = f'<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{rows}</table>'
    return notes


def _per_call(norms: list[float | None]) -> str:
    """A small table: each call's parameters' gradient norm."""
    cells = "".join(
        f'<td><font point-size="8" color="{GRAD}">{fmt.esc(fmt.num(g)) if g is not None else "–"}</font></td>'
        for g in norms[:_PER_CALL_SHOWN]
    )
    more = "<td>…</td>" if len(norms) > _PER_CALL_SHOWN else ""
    return (f'<table border="0" cellspacing="1" cellpadding="1"><tr>'
            f'<td><font point-size="8" color="{GREY}">‖grad‖ per call</font></td>{cells}{more}</tr></table>')


def _small(text: str, color: str | None = None) -> str:
    attrs = f' color="{color}"' if color else ""
    return f'<tr><td><font point-size="{SMALL}"{attrs}>{text}</font></td></tr>'


def _count(n: int) -> str:
    """7,087,872 -> `7.1M`; 1,536 -> `1.5k`."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def loop_label(loop: DrawnLoop) -> str:
    """`↻ ×98 loop steps at prog.py:24, drawn once`: the note beside an unrolled loop."""
    where = f" at {fmt.esc(loop.source, 60)}" if loop.source else ""
    return (f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="2"><tr><td>'
            f'<font point-size="14" color="{BORDER}"><b>↻ ×{loop.count}</b></font></td></tr>'
            f'<tr><td><font point-size="{SMALL}" color="{GREY}">loop steps{where}, drawn once '
            f"({loop.period} ops each)</font></td></tr></table>>")
