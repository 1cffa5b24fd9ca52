"""The HTML report: one self-contained page that opens offline.

Sections: diagnostics, each distinct graph (inline SVG) with its leaves' gradients,
plots of the loss and of each leaf's `.grad` across passes (for a long run, every
parameter's charts by module: `charts.py`), pictures the script saved,
and the list of passes. No external files: styles, pictures and the one script (pan and
zoom of the graphs, `report.js`) are inline, and every piece of user text is escaped.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import quote

from ..model import Diagnostic, Event, Node, Pass, Trace, single_number
from . import fmt
from .charts import over_time_section, wants_charts
from .csp import meta_tag
from .explorer import explorer_scripts, explorer_section, explorer_style
from .html_frame import graph_frame, id_prefix, report_script, report_script_text, unique_ids
from .layout import DEFAULT_TIMEOUT, LayoutError, layout
from .plots import line_plot
from .select import (
    GraphGroup,
    event_dot,
    event_graphs,
    event_svg_name,
    event_title,
    family_text,
    graph_groups,
    graphs_text,
    pass_dot,
    pass_title,
    run_passes,
    svg_name,
    torch_error,
)

CSS = Path(__file__).with_name("report.css")
MAX_PLOTS = 32  # leaves in the small plots; more (or a long run) get charts.over_time_section
LONG_TABLE = 10  # passes shown before the rest fold away


def trace_to_html(
    trace: Trace,
    standalone: bool = True,
    *,
    svgs: Mapping[int, str | LayoutError] | None = None,
    event_svgs: Mapping[int, str | LayoutError] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    pictures: Sequence[Path] = (),
    linked: bool = False,
    charts: str | None = None,
) -> str:
    """The report for `trace`: a whole page when `standalone`, else a `<div>` for a notebook.

    `svgs` maps pass indexes to SVG already laid out (or the LayoutError it raised), and
    `event_svgs` event indexes (the graph as it stood when an error was raised); other
    graphs to draw are laid out here, each within `timeout` seconds. `pictures` are
    image files the traced script saved (embedded, so the page stays self-contained).
    `linked`: the page sits in an output folder beside each graph's SVG file
    (`pass-000.svg`), and each picture links to its file. `charts`: `charts_section(trace)`,
    when the caller made it already (while the graphs were laid out).
    """
    groups = graph_groups(trace)
    drawn = dict(svgs or {})
    for g in groups:
        for i in g.drawn:
            if i not in drawn:
                drawn[i] = _draw(trace, _pass(trace, i), timeout)
    drawn_events = dict(event_svgs or {})
    for i, _, _ in event_graphs(trace):
        if i not in drawn_events:
            drawn_events[i] = _try_layout(event_dot(trace, i), timeout)
    body = "".join([
        _header(trace, groups),
        _diagnostics(trace.diagnostics, trace.events, _explore_links(trace, groups) if standalone else None),
        _graphs(trace, groups, drawn, drawn_events, linked, explorer=standalone),
        charts_section(trace) if charts is None else charts,
        _pictures(pictures),
        _passes(trace, groups),  # last: a training loop's long table would bury the pictures
    ])
    div = f'<div class="gs-report">{unique_ids(body, id_prefix(standalone))}</div>' + report_script()
    style = f"<style>{CSS.read_text(encoding='utf-8')}</style>"
    if not standalone:
        return style + div
    # the explorer (a page of its own only: a notebook output would carry Graphviz each time)
    scripts = explorer_scripts() if groups else []
    div += "".join(f"<script>{s}</script>" for s in scripts)
    style = f"<style>{CSS.read_text(encoding='utf-8')}{explorer_style()}</style>"
    # the page's own inline scripts, by their exact text, go to meta_tag: no other script runs
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
            meta_tag([report_script_text(), *scripts], wasm=bool(scripts)) +
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{fmt.esc(_title(trace))}</title>{style}</head><body>{div}</body></html>\n")


def charts_section(trace: Trace) -> str:
    """The report's numbers over the passes: per-parameter charts grouped by module (many
    leaves, or a long run), else one small plot per loss and leaf."""
    return over_time_section(trace) if wants_charts(trace, MAX_PLOTS) else _plots(trace)


def _pass(trace: Trace, index: int) -> Pass:
    return next(p for p in trace.passes if p.index == index)


def _draw(trace: Trace, p: Pass, timeout: float) -> str | LayoutError:
    return _try_layout(pass_dot(trace, p), timeout)


def _try_layout(source: str, timeout: float) -> str | LayoutError:
    try:
        return layout(source, "svg", timeout=timeout).decode("utf-8")
    except LayoutError as exc:
        return exc


def _title(trace: Trace) -> str:
    script = trace.meta.get("script")
    return f"gradscope · {Path(str(script)).name}" if script else "gradscope report"


def _section(anchor: str, heading: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{heading}</h2>{content}</section>'


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells must already be escaped."""
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _source(src) -> str:
    if src is None:
        return ""
    text = fmt.code(src.code)
    code = f" <code>{fmt.esc(text, 80)}</code>" if text else ""
    path = src.file if src.cell is None else src.short  # a cell's temporary file means nothing
    return f'<span class="gs-src" title="{fmt.esc(path)}">{fmt.esc(src.short)}</span>{code}'


# -- sections --------------------------------------------------------------------------
def _header(trace: Trace, groups: list[GraphGroup]) -> str:
    counts: dict[str, int] = {}
    for d in trace.diagnostics:
        counts[d.severity] = counts.get(d.severity, 0) + 1
    found = ", ".join(f"{n} {fmt.esc(sev)}{'s' if n != 1 else ''}" for sev, n in counts.items()) or "no diagnostics"
    meta = "".join(f"<tr><th>{fmt.esc(k)}</th><td>{fmt.esc(_meta_value(v), 300)}</td></tr>"
                   for k, v in trace.meta.items())
    run, held = run_passes(trace)
    return (f"<header><h1>{fmt.esc(_title(trace))}</h1>"
            f'<p class="gs-summary">{run} pass{"es" if run != 1 else ""} · '
            f"{fmt.esc(graphs_text(groups) + held)} · {found}</p>"
            + (f'<table class="gs-meta">{meta}</table>' if meta else "") + "</header>")


def _meta_value(v) -> str:
    """A trace's meta value as a person reads it: `gradients=stats, every=10`, not a repr."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_meta_value(x)}" for k, x in v.items())
    return " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def _rich(text: str) -> str:
    """Escaped text with its Markdown `code` spans as <code> (diagnostics write code so)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", fmt.esc(text))


def _diagnostic_link(d: Diagnostic) -> str:
    """` · pass 3`, linking to the picture the diagnostic is drawn on (an event's graph
    for a leaf edited before any backward)."""
    if d.pass_index is not None:
        index = fmt.esc(d.pass_index)  # an int, unless a crafted trace.json says otherwise
        return f' · <a href="#pass-{index}">pass {index}</a>'
    if d.event_index is not None:
        return f' · <a href="#event-{fmt.esc(d.event_index)}">the graph when it was raised</a>'
    return ""


def _diagnostics(diagnostics: list[Diagnostic], events: Sequence[Event] = (),
                 explore: Mapping[int, str] | None = None) -> str:
    if not diagnostics:
        return _section("diagnostics", "Diagnostics", '<p class="gs-ok">No autograd problems found.</p>')
    cards = []
    for d in diagnostics:
        # PyTorch's own words, next to the line that raised them
        error = torch_error(events[d.event_index]) if d.event_index is not None and d.event_index < len(events) else ""
        said = f' <span class="gs-error">{fmt.esc(error)}</span>' if error else ""
        where = "".join(f"<li>{_source(s)}{said if i == 0 else ''}</li>" for i, s in enumerate(d.sources))
        at = _diagnostic_link(d) + (explore or {}).get(id(d), "")
        hint = f'<p class="gs-hint">{_rich(d.hint)}</p>' if d.hint else ""
        cards.append(
            f'<div class="gs-diag gs-{fmt.esc(d.severity)}"><h3><span class="gs-sev">{fmt.esc(d.severity)}</span> '
            f"<code>{fmt.esc(d.code)}</code> {_rich(d.title)}{at}</h3>"
            f"<p>{_rich(d.message)}</p>{hint}" + (f"<ul>{where}</ul>" if where else "") + "</div>"
        )
    return _section("diagnostics", f"Diagnostics ({len(diagnostics)})", "".join(cards))


def _passes(trace: Trace, groups: list[GraphGroup]) -> str:
    if not trace.passes:
        return _section("passes", "Passes", "<p>No backward pass was recorded.</p>")
    group_of = {i: g for g in groups for i in g.passes}
    rows = []
    for p in trace.passes:
        g = group_of[p.index]
        rows.append([
            f'<a id="pass-{fmt.esc(p.index)}-row"></a>{fmt.esc(p.index)}', fmt.esc(p.api), _source(p.source),
            _yes(p.retain_graph), _yes(p.create_graph), fmt.esc(p.step),
            f'<a href="#graph-{g.number}">graph {g.number}</a>',
            f'<span class="gs-error">{fmt.esc(p.error, 200)}</span>' if p.error else "",
        ])
    head = ["#", "api", "called at", "retain_graph", "create_graph", "step", "graph", "error"]
    table = _table(head, rows[:LONG_TABLE], "gs-passes")
    if len(rows) > LONG_TABLE:
        table += (f"<details><summary>all {len(rows)} passes</summary>"
                  f"{_table(head, rows[LONG_TABLE:], 'gs-passes')}</details>")
    return _section("passes", f"Passes ({len(rows)})", table)


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _graphs(trace: Trace, groups: list[GraphGroup], drawn: Mapping[int, str | LayoutError],
            drawn_events: Mapping[int, str | LayoutError], linked: bool = False, explorer: bool = False) -> str:
    """Each picture's heading is what a diagnostic's link points at (`#pass-3`, `#event-0`)."""
    parts = []
    for i, picture in drawn_events.items():
        parts.append(f'<h3 id="event-{i}">Before backward</h3>'
                     f"<h4>{fmt.esc(event_title(trace.events[i]))}</h4>"
                     f"{graph_frame(picture, event_svg_name(i) if linked else None)}")
    for g in groups:
        shared = _span(g.passes)
        family = f" · {fmt.esc(family_text(g))}" if g.graphs > 1 else ""
        parts.append(f'<h3 id="graph-{g.number}">Graph {g.number} <small>used by {shared}{family}</small></h3>')
        if explorer:
            parts.append(_explorer(trace, g))
        for i in g.drawn:
            p = _pass(trace, i)
            parts.append(f'<h4 id="pass-{i}">{fmt.esc(pass_title(p, trace))}</h4>'
                         f"{graph_frame(drawn[i], svg_name(i) if linked else None)}{_leaf_table(p)}")
    return _section("graphs", "Graphs", "".join(parts) or "<p>No graphs.</p>")


# -- the explorer (explorer/): one per distinct graph, and the diagnostics' links into it --
def _explorer(trace: Trace, g: GraphGroup) -> str:
    by_index = {p.index: p for p in trace.passes}  # (a search per pass: quadratic in a long run)
    passes = [by_index[i] for i in g.passes]
    try:
        return explorer_section(g.number, passes, trace.diagnostics)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a crafted trace.json: the rest still shows
        return f'<p class="gs-error">The explorer cannot show this graph: {fmt.esc(exc, 200)}</p>'



def _explore_links(trace: Trace, groups: list[GraphGroup]) -> dict[int, str]:
    """id(diagnostic) -> ` · explore`, a link that selects its first node in the explorer of
    its pass's graph (and marks the others)."""
    group_of = {i: g.number for g in groups for i in g.passes}
    links: dict[int, str] = {}
    for d in trace.diagnostics:
        number = group_of.get(d.pass_index) if d.pass_index is not None else None
        if number is None and len(groups) == 1:
            number = groups[0].number
        if number is None or not d.nodes:
            continue
        mark = ",".join(quote(n, safe="") for n in d.nodes[:50])
        href = f"#graph={number}&select={quote(d.nodes[0], safe='')}&mark={mark}"
        links[id(d)] = f' · <a class="gs-explore" href="{fmt.esc(href)}">explore</a>'
    return links


def _span(passes: list[int]) -> str:
    """`pass 3`, `passes 0, 1, 2`, or `passes 0–999 (1000 passes)` for a run of steps."""
    if len(passes) == 1:
        return f"pass {passes[0]}"
    if passes == list(range(passes[0], passes[-1] + 1)) and len(passes) > 3:
        return f"passes {passes[0]}–{passes[-1]} ({len(passes)} passes)"
    shown = ", ".join(map(str, passes[:12])) + (", …" if len(passes) > 12 else "")
    return f"passes {shown} ({len(passes)} passes)"


def _leaf_table(p: Pass) -> str:
    leaves = p.graph.leaves
    if not leaves:
        return ""
    rows = [[
        f"<b>{fmt.esc(n.name, 60)}</b>" + (' <span class="gs-tag">parameter</span>' if n.is_parameter else ""),
        fmt.esc(fmt.shape(n.shape)), fmt.esc(fmt.value(n.value) or ""),
        fmt.esc(fmt.tensor(n.grad_before)), f"<b>{fmt.esc(fmt.tensor(n.grad_after))}</b>",
    ] for n in leaves]
    head = ["leaf", "shape", "value", ".grad before", ".grad after"]
    if p.kind == "grad":  # autograd.grad returns its answer and leaves .grad alone
        returned = dict(zip(p.inputs, p.results))
        for row, n in zip(rows, leaves):
            row.append(f"<b>{fmt.esc(fmt.tensor(returned[n.id]))}</b>" if n.id in returned else "")
        head.append("autograd.grad returned")
    return _table(head, rows, "gs-leaves")


def _plots(trace: Trace) -> str:
    """One chart per scalar root (a loss: its value) and per leaf name (its `.grad`: value
    if scalar, else norm) across passes."""
    if len(trace.passes) < 2:
        return ""
    series: dict[str, list[tuple[int, float | None]]] = {}
    scalar: dict[str, bool] = {}
    for p in trace.passes:
        for n in p.graph.roots:
            value = single_number(n.value)
            if n.kind == "op" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(f"{n.name} (value)", []).append((p.index, float(value)))
                scalar[f"{n.name} (value)"] = True
    for p in trace.passes:
        for n in p.graph.leaves:
            if n.name:
                series.setdefault(n.name, []).append((p.index, fmt.norm(n.grad_after)))
                scalar[n.name] = scalar.get(n.name, True) and _is_scalar(n)
    series = {k: v for k, v in series.items() if sum(y is not None for _, y in v) > 1}
    if not series:
        return ""
    charts = [line_plot(name if name.endswith("(value)") else f"{name}.grad" if scalar[name] else f"‖{name}.grad‖",
                        pts)
              for name, pts in list(series.items())[:MAX_PLOTS]]
    more = (f"<p>{len(series) - MAX_PLOTS} more leaves not plotted.</p>" if len(series) > MAX_PLOTS else "")
    return _section("gradients", "Loss and gradients across passes",
                    f'<div class="gs-plots">{"".join(charts)}</div>{more}')


_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".svg": "image/svg+xml"}
MAX_PICTURE_BYTES = 8 * 1024 * 1024


def _pictures(paths: Sequence[Path]) -> str:
    """Images the script saved into the output folder, embedded as data URIs."""
    figures = []
    for path in paths:
        mime = _IMAGE_TYPES.get(path.suffix.lower())
        try:
            data = path.read_bytes() if mime else b""
        except OSError:
            continue
        if not data or len(data) > MAX_PICTURE_BYTES:
            continue
        src = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        figures.append(f'<figure class="gs-picture"><img src="{src}" alt="{fmt.esc(path.name)}">'
                       f"<figcaption>{fmt.esc(path.name)}</figcaption></figure>")
    if not figures:
        return ""
    return _section("pictures", "Pictures the script saved", "".join(figures))


def _is_scalar(n: Node) -> bool:
    return n.grad_after is not None and n.grad_after.numel == 1
