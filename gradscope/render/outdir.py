"""An output folder: `report.html` plus one `pass-NNN.svg` per drawn pass.

Used by `gradscope trace`, `gradscope demo` and `gradscope render`. Each graph is laid
out once and the same SVG goes both into its file and into the report. A graph that
cannot be laid out in its timeout leaves its `.dot` beside the others; graphs the time
budget does not reach get a note in the report saying how to draw them later. A third of
the budget is kept for big graphs with modules: one that does not lay out (even folded)
is drawn as its module-level view (collapse.MODULES) rather than not at all.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..model import Pass, Trace
from ..signals import signals_deferred
from . import collapse
from .collapse import MODULES
from .drawing import DEFAULT_BUDGET, Drawing, Job, draw_all
from .html import charts_section, trace_to_html
from .layout import DEFAULT_TIMEOUT, LayoutError
from .manifest import record, remove_stale
from .select import (
    event_dot,
    event_graphs,
    event_svg_name,
    graph_groups,
    pass_dot,
    svg_name,
)

_COARSE_SHARE = 1 / 3  # of the budget, kept for module-level views


@dataclass
class Written:
    """What an output folder got: the files, the graphs that could not be laid out, the
    passes left undrawn (budget spent or drawing stopped), and the signal that stopped it."""

    files: list[Path] = field(default_factory=list)
    errors: list[LayoutError] = field(default_factory=list)
    not_drawn: list[int] = field(default_factory=list)
    stopped_by: BaseException | None = None
    module_level: list[int] = field(default_factory=list)  # passes drawn as their module-level view


def write_outputs(trace: Trace, out_dir: Path, timeout: float = DEFAULT_TIMEOUT,
                  extra_passes: Iterable[int] = (), pictures: Sequence[Path] = (),
                  budget: float = DEFAULT_BUDGET, trace_path: Path | None = None,
                  view: Mapping[str, Any] | None = None) -> Written:
    """Draw the distinct graphs of `trace` (and `extra_passes`) into `out_dir` within
    `budget` seconds in all (`timeout` each), then the report (which embeds `pictures`,
    images the script saved). `trace_path` is the saved trace the report's notes name
    for drawing later what the budget did not reach. `view`: `depth`, `expand`, `fold`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)
    by_index = {p.index: p for p in trace.passes}
    jobs = [Job(("event", i), event_dot(trace, i), out_dir / event_svg_name(i)) for i, _, _ in event_graphs(trace)]
    jobs += [Job(("pass", i), pass_dot(trace, by_index[i], **(view or {})), out_dir / svg_name(i))
             for i in drawing_order(trace, extra_passes)]
    began = time.monotonic()
    # a share of the budget is kept for the module-level views of graphs that do not lay out
    coarse = [i for i in drawing_order(trace, extra_passes) if _may_fall_back(by_index[i], view)]
    charts: list[str] = []  # (made while the graphs are laid out)
    drawing = draw_all(jobs, budget=budget * (1 - _COARSE_SHARE if coarse else 1), timeout=timeout,
                       meanwhile=lambda: charts.append(charts_section(trace)))
    written = Written()
    if drawing.stopped_by is None:
        _draw_coarse(trace, out_dir, drawing, coarse, budget - (time.monotonic() - began), view, written)
    written.stopped_by = drawing.stopped_by
    for job in jobs:
        picture = drawing.svgs.get(job.key)
        if isinstance(picture, LayoutError):
            written.errors.append(picture)
            if picture.dot_path is not None:
                written.files.append(picture.dot_path)
        elif picture is not None:
            written.files.append(job.svg_path)
            job.svg_path.with_suffix(".dot").unlink(missing_ok=True)  # left by an earlier run that timed out
    why = "drawing was interrupted" if drawing.stopped_by else f"the layout budget ({budget:g} s) ran out"
    for kind, i in drawing.not_drawn:
        later = (f"; draw it later with: gradscope render {trace_path} --pass {i} -o {out_dir / svg_name(i)}"
                 if kind == "pass" and trace_path is not None else "")
        drawing.svgs[(kind, i)] = LayoutError(f"gradscope: not drawn: {why}{later}")
        if kind == "pass":
            written.not_drawn.append(i)
    svgs = {i: picture for (kind, i), picture in drawing.svgs.items() if kind == "pass"}
    event_svgs = {i: picture for (kind, i), picture in drawing.svgs.items() if kind == "event"}
    report = out_dir / "report.html"
    # After a Ctrl-C, a second one must not cost the report
    with signals_deferred() if drawing.stopped_by else contextlib.nullcontext():
        report.write_text(trace_to_html(trace, svgs=svgs, event_svgs=event_svgs, timeout=timeout,
                                        pictures=pictures, linked=True, charts=next(iter(charts), None)),
                          encoding="utf-8")
    written.files.insert(0, report)
    record(out_dir, [*written.files, *([trace_path] if trace_path else [])])
    return written


def _may_fall_back(p: Pass, view: Mapping[str, Any] | None) -> bool:
    """Whether `p` has a module-level view to draw when its own does not lay out: a big
    graph with module calls, not asked for at module level already."""
    return (bool(p.graph.module_calls) and len(p.graph.nodes) > collapse.MAX_BOXES
            and (view or {}).get("depth") != MODULES)


def _draw_coarse(trace: Trace, out_dir: Path, drawing: Drawing, coarse: Sequence[int], budget: float,
                 view: Mapping[str, Any] | None, written: Written) -> None:
    """Draw the module-level view of each pass that did not lay out (budget spent or timed
    out) and has one, within what is left of the budget; update `drawing` with them."""
    failed = [i for kind, i in drawing.not_drawn if kind == "pass" and i in coarse]
    failed += [i for (kind, i), svg in drawing.svgs.items() if kind == "pass" and i in coarse
               and isinstance(svg, LayoutError) and "did not finish" in str(svg)]
    by_index = {p.index: p for p in trace.passes}
    fold = (view or {}).get("fold", True)
    failed = [i for i in failed
              if collapse.view(by_index[i].graph, MODULES, fold=fold).size < len(by_index[i].graph.nodes)]
    if not failed or budget <= 0:
        return
    note = "module-level view: the view asked for did not lay out in time (--timeout, --layout-budget)"
    options = {k: v for k, v in (view or {}).items() if k != "depth"}
    jobs = [Job(("pass", i), pass_dot(trace, by_index[i], note=note, **{**options, "depth": MODULES}),
                out_dir / svg_name(i)) for i in failed]
    second = draw_all(jobs, budget=budget)  # small pictures: only the budget bounds them
    for key, svg in second.svgs.items():
        if isinstance(svg, str):
            drawing.svgs[key] = svg
            drawing.not_drawn = [k for k in drawing.not_drawn if k != key]
            written.module_level.append(key[1])
    drawing.stopped_by = second.stopped_by


def drawing_order(trace: Trace, extra_passes: Iterable[int] = ()) -> list[int]:
    """The passes to draw, most useful first: those a diagnostic points at, then the first
    pass of each distinct graph, the most used graphs first, then `extra_passes`."""
    diagnosed = {d.pass_index for d in trace.diagnostics if d.pass_index is not None}
    rank: dict[int, tuple[int, int, int]] = {}
    for g in graph_groups(trace):
        for i in g.drawn:
            rank[i] = (0 if i in diagnosed else 1, -len(g.passes), i)
    for i in extra_passes:
        rank.setdefault(i, (2, 0, i))
    return sorted(rank, key=rank.__getitem__)
