"""The short terminal summary printed after a run: what was traced, written and found."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..model import Trace
from .fmt import lines_of
from .select import family_text, graph_groups, graphs_text, run_passes


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _rel(path: Path) -> str:
    """The path relative to the working folder when it is inside it: shorter to read."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive on Windows
        return str(path)


def summary(trace: Trace, written: Sequence[Path] = (), name: str = "") -> str:
    """A few lines for stderr: passes and graphs, files written, diagnostics with file:line."""
    groups = graph_groups(trace)
    of = f" of {name}" if name else ""
    run, held = run_passes(trace)
    lines = [f"gradscope: traced {_plural(run, 'pass', 'passes')} ({graphs_text(groups)}{held}){of}"]
    lines += [f"  graph {g.number}: {family_text(g)}" for g in groups if g.graphs > 1][:5]
    for i, path in enumerate(written):
        lines.append(("  wrote " if i == 0 else "        ") + _rel(path))
    if trace.diagnostics:
        lines.append(f"  {_plural(len(trace.diagnostics), 'diagnostic')}:")
        for d in trace.diagnostics:
            where = f"  {lines_of(d)}" if d.sources else ""
            lines.append(f"    {d.severity:<7} {d.code} {d.title}{where}")
    else:
        lines.append("  no diagnostics")
    return "\n".join(lines)

