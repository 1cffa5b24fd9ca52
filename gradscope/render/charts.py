"""The report's "over time" section for long runs: every parameter's gradient norm (and
value norm and update ratio, where recorded) across passes, grouped by module, the worst
first; and the loss curve.

Each chart is inline SVG with no script. A series longer than `BUCKETS` points is drawn as
a min/max envelope, one band per bucket of passes, so a chart costs the same few hundred
bytes for 50 passes as for 50,000 and still shows every spike: a bucket's band reaches its
true minimum and maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..model import Trace
from ..series import FLAGS, LeafSeries, by_module, leaf_series, loss_series, running_of, span
from . import fmt

BUCKETS = 60  # bands per chart: the page's size no longer grows with the number of passes
WIDTH, HEIGHT = 230, 62
LOSS_WIDTH, LOSS_HEIGHT = 480, 110
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 6, 4, 13
MANY_PASSES = 30  # runs longer than this (or with more leaves than the small plots show) get charts
COLORS = {"grad": "#1d4ed8", "value": "#57534e", "update": "#7c3aed", "loss": "#b45309"}
AXIS_NAMES = {"grad": "‖grad‖", "value": "‖w‖", "update": "‖Δw‖/‖w‖", "loss": "loss"}


@dataclass
class Bucket:
    """Passes `x0`..`x1` of a series: the least and greatest finite value among them
    (None when none was finite) and whether any was NaN or infinite."""

    x0: float
    x1: float
    lo: float | None
    hi: float | None
    bad: bool


def envelope(xs: Sequence[float], ys: Sequence[float | None], buckets: int = BUCKETS) -> list[Bucket]:
    """`(xs, ys)` (xs ascending; a None y is missing) cut into at most `buckets` equal spans
    of x, each with its min and max; one bucket per point when the series is short."""
    points = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if not points:
        return []
    if len(points) <= buckets:
        return [_bucket(x, x, [y]) for x, y in points]
    first, last = points[0][0], points[-1][0]
    span = (last - first) / buckets or 1.0
    groups: dict[int, list[tuple[float, float]]] = {}
    for x, y in points:
        groups.setdefault(min(int((x - first) / span), buckets - 1), []).append((x, y))
    return [_bucket(g[0][0], g[-1][0], [y for _, y in g]) for _, g in sorted(groups.items())]


def _bucket(x0: float, x1: float, ys: list[float]) -> Bucket:
    good = [y for y in ys if math.isfinite(y)]
    return Bucket(x0, x1, min(good) if good else None, max(good) if good else None, len(good) < len(ys))


def chart(title: str, xs: Sequence[float], ys: Sequence[float | None], *, kind: str, log: bool,
          x_range: tuple[float, float] | None = None, size: tuple[int, int] = (WIDTH, HEIGHT),
          counts: tuple[int, int] | None = None) -> str:
    """One compact SVG chart of a series as its min/max envelope; NaN/Inf as red ticks on top.

    `log`: a log y axis (norms and ratios span decades; values ≤ 0 sit on the bottom edge).
    `x_range`: the passes the axis spans (the whole run, so charts line up). `data-min` and
    `data-max` hold the series' true finite extremes, which the band reaches.
    `counts`: (finite, all) points of a series held as its buckets' extremes (a long run's
    running series), for `data-points` and the tooltip; else counted from `ys`.
    """
    width, height = size
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM
    finite = [y for y in ys if y is not None and math.isfinite(y)]
    shown = [y for y in finite if y > 0] if log else finite
    x0, x1 = x_range or ((min(xs), max(xs)) if xs else (0, 1))
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = (min(shown), max(shown)) if shown else (1.0, 10.0)
    t0, t1 = (math.log10(y0), math.log10(y1)) if log else (y0, y1)
    if t0 == t1:  # a flat series sits in the middle
        t0, t1 = t0 - 1, t1 + 1

    def px(x: float) -> float:
        return PAD_LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        t = (math.log10(y) if y > 0 else t0) if log else y
        return PAD_TOP + (1 - (t - t0) / (t1 - t0)) * plot_h

    color = COLORS[kind]
    bands = envelope(xs, ys)
    extremes = f' data-min="{min(finite)!r}" data-max="{max(finite)!r}"' if finite else ""
    finite_count, total = counts if counts is not None else (len(finite), len(ys))
    parts = [
        f'<svg class="gs-chart" data-series="{kind}"{extremes} data-points="{total}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img"><title>{fmt.esc(_tooltip(title, ys, finite, finite_count, total))}</title>',
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafaf9" stroke="#e7e5e4"/>',
        _text(PAD_LEFT - 3, PAD_TOP + 8, _tick(y1) if shown else "", "end"),
        # a log axis with nothing above 0 to show: its one value, 0, on the bottom edge
        _text(PAD_LEFT - 3, PAD_TOP + plot_h, _tick(y0) if shown else "0" if finite else "", "end"),
        _text(PAD_LEFT - 3, PAD_TOP + plot_h / 2 + 3, AXIS_NAMES[kind], "end"),
        _text(PAD_LEFT, height - 2, f"pass {fmt.num(x0)}", "start"),
        _text(width - PAD_RIGHT, height - 2, fmt.num(x1), "end"),
    ]
    for run in _runs(bands):
        upper = [(px(x), py(hi)) for x, _, hi in run]
        lower = [(px(x), py(lo)) for x, lo, _ in reversed(run)]
        if len(run) == 1:
            (x, top), (_, bottom) = upper[0], lower[0]
            parts.append(f'<line x1="{x:.1f}" y1="{top - 1:.1f}" x2="{x:.1f}" y2="{bottom + 1:.1f}" '
                         f'stroke="{color}" stroke-width="2"/>')
            continue
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
        parts.append(f'<polygon points="{coords}" fill="{color}" fill-opacity="0.25" stroke="{color}" '
                     f'stroke-width="1.2" stroke-linejoin="round"/>')
    for b in bands:
        if b.bad:
            x = px((b.x0 + b.x1) / 2)
            parts.append(f'<line class="gs-nonfinite" x1="{x:.1f}" y1="{PAD_TOP}" x2="{x:.1f}" y2="{PAD_TOP + 7}" '
                         f'stroke="#dc2626" stroke-width="2"/>')
    return "".join(parts) + "</svg>"


def _tooltip(title: str, ys: Sequence[float | None], finite: list[float], finite_count: int, total: int) -> str:
    last = next((y for y in reversed(ys) if y is not None), None)
    lo, hi = (fmt.num(min(finite)), fmt.num(max(finite))) if finite else ("–", "–")
    return (f"{title}: min {lo}, max {hi}, last {fmt.num(last) if last is not None else '–'} "
            f"({finite_count} of {total} finite)")


def _runs(bands: list[Bucket]) -> list[list[tuple[float, float, float]]]:
    """Consecutive buckets that hold a finite value, each as (its middle x, min, max): a gap
    (NaN, missing) breaks the band."""
    runs: list[list[tuple[float, float, float]]] = [[]]
    for b in bands:
        if b.lo is None or b.hi is None:
            runs.append([])
        else:
            runs[-1].append(((b.x0 + b.x1) / 2, b.lo, b.hi))
    return [r for r in runs if r]


def _tick(y: float) -> str:
    """An axis label short enough for the margin: `0.012`, `3e-4`, `1.2e6`."""
    if y != 0 and (abs(y) < 1e-2 or abs(y) >= 1e5):
        mantissa, exp = f"{y:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return fmt.num(float(f"{y:.3g}"))


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:g}" y="{y:g}" font-size="9" text-anchor="{anchor}">{fmt.esc(text)}</text>'


# -- the section -----------------------------------------------------------------------------
def wants_charts(trace: Trace, small_plots: int) -> bool:
    """Whether `trace` is a long run: more passes than `MANY_PASSES`, or more named leaves
    than the report's small per-leaf plots (`small_plots`) draw. (A run whose passes were
    thinned in memory counts all of its passes and leaves, from its running series.)"""
    passes = (span(trace) or (0, 0, 0))[0]
    if passes > MANY_PASSES:
        return True
    running = running_of(trace)
    if running is not None:
        names = {s.name for s in running.leaf_series()}
    else:
        names = {n.name for p in trace.passes for n in p.graph.leaves if n.name}
    return len(names) > small_plots and passes > 1


def over_time_section(trace: Trace) -> str:
    """The "over time" section: loss curves, then one card per leaf grouped by module, the
    modules holding the worst leaves first."""
    series = leaf_series(trace)
    losses = loss_series(trace)
    covered = span(trace)
    if (not series and not losses) or covered is None:
        return ""
    passes, first, last = covered
    x_range = (first, last)
    parts = [f'<p class="gs-note">{len(series)} leaves over {passes} passes, on log axes (the '
             "loss too when it spans decades). Each band spans the least and greatest value in its slice of "
             f"passes (at most {BUCKETS} slices a chart); red ticks mark NaN/Inf. ‖w‖ and ‖Δw‖/‖w‖ are shown "
             "where values were recorded (small tensors, see <code>trace(values=...)</code>).</p>"]
    if passes != len(trace.passes):
        parts.append(f'<p class="gs-note gs-drawn-from" data-passes="{passes}">These charts cover all '
                     f"{passes:,} passes of the run (their numbers gathered pass by pass as it ran); the graphs "
                     f"and tables elsewhere in this report are drawn from the {len(trace.passes):,} passes held "
                     "in memory (the header above says which).</p>")
    for s in losses:
        curve = chart(s.name, s.passes, s.values, kind="loss", log=_spans_decades(s.values), x_range=x_range,
                      size=(LOSS_WIDTH, LOSS_HEIGHT), counts=s.counts)
        parts.append(f'<figure class="gs-loss"><figcaption>loss curve: {fmt.esc(s.name, 60)}</figcaption>'
                     f"{curve}</figure>")
    flagged = [s for s in series if s.flags]
    if flagged:
        parts.append(f'<p class="gs-flagged">{len(flagged)} of {len(series)} leaves flagged: ' + ", ".join(
            f"<code>{fmt.esc(s.name, 60)}</code> ({fmt.esc(', '.join(s.flags))})" for s in flagged[:20])
            + (" …" if len(flagged) > 20 else "") + "</p>")
    modules = [f'<div class="gs-module" data-module="{fmt.esc(module)}"><h3>{fmt.esc(module)}</h3>'
               f'<div class="gs-params">{"".join(_card(s, x_range) for s in members)}</div></div>'
               for module, members in by_module(series)]
    parts.append(f'<div class="gs-modules">{"".join(modules)}</div>')
    return (f'<section id="over-time"><h2>Parameters over time ({len(series)} leaves)</h2>'
            + "".join(parts) + "</section>")


def _spans_decades(values: list[float]) -> bool:
    """A loss that falls from 2.3 to 0.001 reads better on a log axis; one that crosses 0 cannot."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) >= 100 * min(finite)


def _card(s: LeafSeries, x_range: tuple[float, float]) -> str:
    flags = "".join(f' <span class="gs-flag gs-flag-{FLAGS.index(f)}">{fmt.esc(f)}</span>' for f in s.flags)
    charts = [chart(f"‖{s.name}.grad‖", s.passes, s.grad_norm, kind="grad", log=True, x_range=x_range,
                    counts=s.counts("grad"))]
    if any(v is not None for v in s.value_norm):
        value_xs, value_ys = s.value_points()
        charts.append(chart(f"‖{s.name}‖", value_xs, value_ys, kind="value", log=True, x_range=x_range,
                            counts=s.counts("value")))
    if s.update_ratio:
        xs, ys = zip(*s.update_ratio)
        charts.append(chart(f"{s.name}: ‖Δw‖/‖w‖", xs, ys, kind="update", log=True, x_range=x_range,
                            counts=s.counts("update")))
    shape = f' <span class="gs-shape">{fmt.esc(fmt.shape(s.shape))}</span>' if s.shape is not None else ""
    return (f'<div class="gs-param" data-param="{fmt.esc(s.name)}" data-flags="{fmt.esc(" ".join(s.flags))}">'
            f'<div class="gs-param-head"><b>{fmt.esc(s.name, 60)}</b>{shape}{flags}</div>{"".join(charts)}</div>')
