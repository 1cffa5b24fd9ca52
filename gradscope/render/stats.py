"""Per-parameter gradient statistics over a run's passes: `gradscope stats trace.json`.

One row per named leaf (a parameter, or a tensor the script named): in how many passes
it got a gradient, its gradient norm first, last, smallest and largest, the passes where
the gradient was NaN/Inf, and a verdict, worst first: non-finite, no gradient,
exploding, vanishing, ok.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..model import TensorSummary, Trace
from . import fmt

VANISHING = 1e-7  # largest norm over the run below this: the gradient vanished
EXPLODING = 1e3  # a norm above this, or the last grown this many times the first
VERDICTS = ("non-finite", "no gradient", "exploding", "vanishing", "ok")


@dataclass
class ParameterStats:
    name: str
    shape: list[int] | None
    passes: int = 0  # passes that reached it
    with_grad: int = 0  # of those, passes where it had a .grad after backward
    nonfinite: int = 0  # passes where that .grad held NaN or Inf
    first: float | None = None
    last: float | None = None
    min: float | None = None
    max: float | None = None
    verdict: str = "ok"
    # (pass index, gradient norm or None) for every pass that reached it, for charts
    points: list[tuple[int, float | None]] = field(default_factory=list, repr=False)


def gradient_norm(t: TensorSummary | None) -> float | None:
    """The 2-norm of a .grad summary (a scalar's absolute value when only its value is kept)."""
    if t is None:
        return None
    if t.norm is not None:
        return t.norm
    s = t.scalar()
    return abs(float(s)) if isinstance(s, (int, float)) and not isinstance(s, bool) else None


def parameter_stats(trace: Trace) -> list[ParameterStats]:
    """One ParameterStats per named leaf of the trace, worst first."""
    rows: dict[str, ParameterStats] = {}
    for p in trace.passes:
        for leaf in p.graph.leaves:
            if not leaf.name:
                continue
            row = rows.get(leaf.name)
            if row is None:
                row = rows[leaf.name] = ParameterStats(leaf.name, leaf.shape)
            row.passes += 1
            g = leaf.grad_after
            norm = gradient_norm(g)
            row.points.append((p.index, norm))
            if g is None:
                continue
            row.with_grad += 1
            if not g.finite or (norm is not None and not math.isfinite(norm)):
                row.nonfinite += 1
            elif norm is not None:
                row.first = norm if row.first is None else row.first
                row.last = norm
                row.min = norm if row.min is None else min(row.min, norm)
                row.max = norm if row.max is None else max(row.max, norm)
    for row in rows.values():
        row.verdict = _verdict(row)
    return sorted(rows.values(), key=lambda r: VERDICTS.index(r.verdict))


def _verdict(row: ParameterStats) -> str:
    if row.nonfinite:
        return "non-finite"
    if row.with_grad == 0 or not row.max:
        return "no gradient"
    if row.max > EXPLODING or (row.first and row.last is not None and row.last / row.first > EXPLODING):
        return "exploding"
    if row.max < VANISHING:
        return "vanishing"
    return "ok"


def stats_table(trace: Trace) -> str:
    """The table `gradscope stats` prints."""
    rows = parameter_stats(trace)
    if not rows:
        return "no named leaves in this trace"
    head = ["parameter", "shape", "passes", "grad", "NaN/Inf", "first ‖g‖", "last ‖g‖", "min ‖g‖", "max ‖g‖", "verdict"]
    body = [[r.name, fmt.shape(r.shape), str(r.passes), str(r.with_grad), str(r.nonfinite),
             *(fmt.num(v) if v is not None else "-" for v in (r.first, r.last, r.min, r.max)), r.verdict]
            for r in rows]
    widths = [max(len(line[k]) for line in [head, *body]) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def stats_json(trace: Trace) -> list[dict]:
    """The same rows as plain data (`gradscope stats --json`), without the per-pass norms."""
    return [{k: v for k, v in asdict(r).items() if k != "points"} for r in parameter_stats(trace)]
