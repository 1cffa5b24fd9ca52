"""An output folder: `report.html` plus one `pass-NNN.svg` per drawn pass.

Used by `gradscope trace`, `gradscope demo` and `gradscope render`. Each graph is laid
out once and the same SVG goes both into its file and into the report. A graph that
cannot be laid out in its timeout leaves its `.dot` beside the others; graphs the time
budget does not reach get a note in the report saying how to draw them later.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..model import Trace
from ..signals import signals_deferred
from .drawing import DEFAULT_BUDGET, Job, draw_all
from .html import trace_to_html
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


@dataclass
class Written:
    """What an output folder got: the files, the graphs that could not be laid out, the
    passes left undrawn (budget spent or drawing stopped), and the signal that stopped it."""

    files: list[Path] = field(default_factory=list)
    errors: list[LayoutError] = field(default_factory=list)
    not_drawn: list[int] = field(default_factory=list)
    stopped_by: BaseException | None = None


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
    drawing = draw_all(jobs, budget=budget, timeout=timeout)
    written = Written(stopped_by=drawing.stopped_by)
    for job in jobs:
        picture = drawing.svgs.get(job.key)
        if isinstance(picture, LayoutError):
            written.errors.append(picture)
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
                                        pictures=pictures, linked=True), encoding="utf-8")
    written.files.insert(0, report)
    record(out_dir, [*written.files, *([trace_path] if trace_path else [])])
    return written


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
