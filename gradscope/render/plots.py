"""Tiny inline SVG line plots for the HTML report: no JavaScript, no libraries.

A training loop's gradients across passes, one small chart per leaf. Points that are
NaN or infinite cannot be placed on an axis; they are drawn as red ticks along the top.
"""

from __future__ import annotations

import math
from typing import Sequence

from . import fmt

WIDTH, HEIGHT = 260, 90
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 46, 8, 14, 18
LABELLED = 12  # series of at most this many points get each value written by its point


def line_plot(title: str, points: Sequence[tuple[int, float | None]]) -> str:
    """An SVG chart of `(x, y)` points; `y` None (missing) is skipped, non-finite marked red.

    Every coordinate written is a finite number, so the SVG is always valid.
    """
    xs = [x for x, _ in points]
    good = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
    bad = [x for x, y in points if y is not None and not math.isfinite(y)]
    x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    ys = [y for _, y in good]
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if y0 == y1:  # a flat line sits in the middle
        y0, y1 = y0 - 1, y1 + 1
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def px(x: float) -> float:
        return PAD_LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return PAD_TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
    parts = [
        f'<svg class="gs-plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{fmt.esc(title)}</title>',
        f'<text x="{PAD_LEFT}" y="10" font-size="10">{fmt.esc(title, 44)}</text>',
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d6d3d1"/>',
        _tick(PAD_LEFT - 3, PAD_TOP + 8, fmt.num(y1 if ys else float("nan"))),
        _tick(PAD_LEFT - 3, PAD_TOP + plot_h, fmt.num(y0 if ys else float("nan"))),
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" font-size="9">pass {x0 if xs else ""}</text>',
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 4}" font-size="9" text-anchor="end">{x1 if xs else ""}</text>',
    ]
    if len(good) > 1:
        parts.append(f'<polyline fill="none" stroke="#1d4ed8" stroke-width="1.5" points="{coords}"/>')
    if len(good) <= 60:  # dots help a short series; on a long one they are noise
        parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" fill="#1d4ed8"/>' for x, y in good]
    if len(good) <= LABELLED:  # a few points: their values, readable without the axis (5, 10, 15, 20)
        parts += [_point_label(px(x), py(y), fmt.num(y), "start" if k == 0 else "end" if k == len(good) - 1 else "middle")
                  for k, (x, y) in enumerate(good)]
    parts += [f'<line x1="{px(x):.1f}" y1="{PAD_TOP}" x2="{px(x):.1f}" y2="{PAD_TOP + 6}" stroke="#dc2626" '
              f'stroke-width="2"><title>nan/inf at pass {x}</title></line>' for x in bad]
    return "".join(parts) + "</svg>"


def _point_label(x: float, y: float, text: str, anchor: str) -> str:
    """A value written just above its point (below it when the point is at the top); the
    first and last lean inwards, off the axis labels."""
    above = y - 5 if y - 5 > PAD_TOP + 4 else y + 12
    x += {"start": 4, "end": -4}.get(anchor, 0)
    return (f'<text class="gs-point" x="{x:.1f}" y="{above:.1f}" font-size="9" text-anchor="{anchor}" '
            f'fill="#1d4ed8">{fmt.esc(text)}</text>')


def _tick(x: float, y: float, text: str) -> str:
    return f'<text x="{x}" y="{y}" font-size="9" text-anchor="end">{fmt.esc(text)}</text>'
