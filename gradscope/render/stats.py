"""Per-parameter gradient statistics over a run's passes: `gradscope stats trace.json`.

One row per named leaf (a parameter, or a tensor the script named): in how many passes
it got a gradient, its gradient norm first, last, smallest and largest, the passes where
the gradient was NaN/Inf, and a verdict, worst first: non-finite, no gradient,
exploding, vanishing, ok. The numbers and flags are the report's (`gradscope.series`),
so the terminal and the charts never disagree about a parameter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..model import Trace
from ..series import EXPLODING, NAN, VANISHING, LeafSeries, leaf_series
from . import fmt

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


def parameter_stats(trace: Trace) -> list[ParameterStats]:
    """One ParameterStats per named leaf of the trace, worst first."""
    rows = [_row(s) for s in leaf_series(trace)]
    return sorted(rows, key=lambda r: VERDICTS.index(r.verdict))


def _row(s: LeafSeries) -> ParameterStats:
    extremes = s.grad_extremes()
    row = ParameterStats(s.name, s.shape, passes=s.taken_part, with_grad=s.with_grad, nonfinite=s.nonfinite)
    if extremes:
        row.first, row.last, row.min, row.max = extremes
    row.verdict = _verdict(s, extremes)
    return row


def _verdict(s: LeafSeries, extremes: tuple[float, float, float, float] | None) -> str:
    if NAN in s.flags:
        return "non-finite"
    if not extremes or not extremes[3]:  # never a gradient, or only zeros
        return "no gradient"
    if EXPLODING in s.flags:
        return "exploding"
    if VANISHING in s.flags:
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
    """The same rows as plain data (`gradscope stats --json`)."""
    return [asdict(r) for r in parameter_stats(trace)]
