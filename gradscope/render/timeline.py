"""Gradients over time in the report: one small chart per parameter, every parameter.

Charts are grouped by module (the name up to its last dot) and ordered worst first
(non-finite, no gradient, exploding, vanishing, then the rest; see `stats`). A long run is
drawn in at most `BUCKETS` columns: each column's band spans the smallest and largest
norm of its passes (a min/max envelope, so a spike is never averaged away), its line
their mean, on a log scale when the norms span decades. A page of thousands of passes and
hundreds of parameters stays a few MB.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..model import Trace
from . import fmt
from .stats import ParameterStats, parameter_stats

BUCKETS = 120
# the report's first charts (html.py's) show a short run's first 31 leaves one point per
# pass; this section is for runs past them: many passes, or more parameters
LONG_RUN, MANY_PARAMETERS = 100, 31
WIDTH, HEIGHT, TOP = 240, 52, 14


def gradient_timeline(trace: Trace) -> str:
    """The report section, or "" for a short run with a few parameters."""
    if len(trace.passes) < 2:
        return ""
    rows = [r for r in parameter_stats(trace) if len(r.points) > 1]
    if not rows or (len(trace.passes) < LONG_RUN and len(rows) <= MANY_PARAMETERS):
        return ""
    groups: dict[str, list[ParameterStats]] = {}
    for r in rows:  # worst first: a group comes where its worst parameter does
        groups.setdefault(r.name.rpartition(".")[0] or "(top level)", []).append(r)
    parts = []
    for module, members in groups.items():
        bad = sum(r.verdict != "ok" for r in members)
        note = f" · {bad} to look at" if bad else ""
        parts.append(f'<details class="gs-timeline" open><summary><code>{fmt.esc(module)}</code> '
                     f"({len(members)} parameter{'s' if len(members) != 1 else ''}{note})</summary>"
                     f'<div class="gs-plots">{"".join(chart(r) for r in members)}</div></details>')
    return (f'<section id="gradients-over-time"><h2>Gradient norms over {len(trace.passes):,} passes, '
            f'every parameter</h2>{"".join(parts)}</section>')


def buckets(points: Sequence[tuple[int, float | None]], count: int = BUCKETS) -> list[tuple[float, float, float, bool]]:
    """`points` in at most `count` columns: (min, max, mean of the finite norms, any non-finite).
    A column without a finite norm has NaN for its numbers."""
    n = len(points)
    size = max(1, -(-n // count))
    out = []
    for start in range(0, n, size):
        values = [y for _, y in points[start:start + size] if y is not None]
        finite = [y for y in values if math.isfinite(y)]
        nan = float("nan")
        out.append((min(finite), max(finite), sum(finite) / len(finite)) if finite else (nan, nan, nan))
        out[-1] += (len(finite) < len(values),)
    return out


def chart(row: ParameterStats) -> str:
    """A small SVG: the norm's envelope and mean across the run, non-finite columns in red."""
    cols = buckets(row.points)
    finite = [v for lo, hi, _, _ in cols for v in (lo, hi) if math.isfinite(lo)]
    positive = [v for v in finite if v > 0]
    log = bool(positive) and len(positive) == len(finite) and max(positive) / min(positive) > 100
    scale = (lambda v: math.log10(v)) if log else (lambda v: v)
    lo, hi = (min(map(scale, finite)), max(map(scale, finite))) if finite else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = WIDTH / max(len(cols) - 1, 1)

    def y(v: float) -> str:
        return f"{TOP + (1 - (scale(v) - lo) / (hi - lo)) * (HEIGHT - TOP - 2):.1f}"

    upper = [f"{k * step:.1f},{y(c[1])}" for k, c in enumerate(cols) if math.isfinite(c[0])]
    lower = [f"{k * step:.1f},{y(c[0])}" for k, c in enumerate(cols) if math.isfinite(c[0])]
    mean = [f"{k * step:.1f},{y(c[2])}" for k, c in enumerate(cols) if math.isfinite(c[0])]
    last = fmt.num(row.last) if row.last is not None else "-"
    title = f"{row.name} · {row.verdict} · last ‖g‖={last}" + (" (log scale)" if log else "")
    parts = [f'<svg class="gs-plot" data-kind="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{fmt.esc(title)}</title>',
             f'<text x="2" y="10" font-size="10">{fmt.esc(title, 48)}</text>']
    if upper:
        parts.append(f'<polygon fill="#bfdbfe" stroke="none" points="{" ".join(upper + lower[::-1])}"/>')
        parts.append(f'<polyline fill="none" stroke="#1d4ed8" stroke-width="1" points="{" ".join(mean)}"/>')
    parts += [f'<line x1="{k * step:.1f}" y1="{TOP}" x2="{k * step:.1f}" y2="{HEIGHT}" stroke="#dc2626"/>'
              for k, c in enumerate(cols) if c[3]]
    return "".join(parts) + "</svg>"
