"""An output folder: `report.html` plus one `pass-NNN.svg` per drawn pass.

Used by `gradscope trace`, `gradscope demo` and `gradscope render`. Each graph is laid
out once and the same SVG goes both into its file and into the report. A graph that
cannot be laid out in time leaves its `.dot` beside the others and the rest is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..model import Trace
from .html import trace_to_html
from .layout import DEFAULT_TIMEOUT, LayoutError, layout
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
    """What an output folder got: the files, and the graphs that could not be laid out."""

    files: list[Path] = field(default_factory=list)
    errors: list[LayoutError] = field(default_factory=list)


def write_outputs(trace: Trace, out_dir: Path, timeout: float = DEFAULT_TIMEOUT,
                  extra_passes: Iterable[int] = (), pictures: Sequence[Path] = (),
                  view: Mapping[str, Any] | None = None) -> Written:
    """Draw each distinct graph of `trace` (and `extra_passes`) into `out_dir`, then the report
    (which embeds `pictures`, images the script saved). `view`: `depth`, `expand`, `fold`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("pass-[0-9]*.svg"), *out_dir.glob("pass-[0-9]*.dot"),
                  *out_dir.glob("event-[0-9]*.svg"), *out_dir.glob("event-[0-9]*.dot")]:
        stale.unlink()  # pictures of an earlier run would pass for this one's
    written = Written()
    to_draw = sorted({i for g in graph_groups(trace) for i in g.drawn} | set(extra_passes))
    by_index = {p.index: p for p in trace.passes}
    svgs = {i: _draw(pass_dot(trace, by_index[i], **(view or {})), out_dir / svg_name(i), timeout, written) for i in to_draw}
    event_svgs = {i: _draw(event_dot(trace, i), out_dir / event_svg_name(i), timeout, written)
                  for i, _, _ in event_graphs(trace)}
    report = out_dir / "report.html"
    report.write_text(trace_to_html(trace, svgs=svgs, event_svgs=event_svgs, timeout=timeout, pictures=pictures),
                      encoding="utf-8")
    written.files.insert(0, report)
    return written


def _draw(source: str, svg_path: Path, timeout: float, written: Written) -> str | LayoutError:
    """Lay out one graph into `svg_path` (or leave its .dot and return the error)."""
    try:
        svg = layout(source, "svg", timeout=timeout, dot_path=svg_path.with_suffix(".dot")).decode("utf-8")
    except LayoutError as exc:
        written.errors.append(exc)
        written.files.append(exc.dot_path)
        return exc
    svg_path.write_text(svg, encoding="utf-8")
    svg_path.with_suffix(".dot").unlink(missing_ok=True)  # left by an earlier run that timed out
    written.files.append(svg_path)
    return svg
