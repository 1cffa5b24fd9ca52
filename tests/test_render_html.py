"""The HTML report: self-contained, one picture per distinct graph, escaped, NaN-safe."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from conftest import lesson_trace, scalar

from gradscope.model import Diagnostic, Source
from gradscope.render.html import trace_to_html
from gradscope.render.html_frame import report_script
from gradscope.render.select import graph_groups
from gradscope.render.text import summary


def inline_svgs(html: str) -> list[ET.Element]:
    """Every inline <svg> of the page, each parsed as XML (not the text of its scripts)."""
    html = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def graph_svgs(html: str) -> list[ET.Element]:
    return [s for s in inline_svgs(html) if s.get("class") not in ("gs-plot", "gs-chart")]  # not the charts


def test_report_has_passes_graph_leaves_and_plots():
    trace = lesson_trace(passes=3)
    html = trace_to_html(trace)
    assert html.startswith("<!DOCTYPE html>") and "://" not in html.split("<svg")[0]  # nothing fetched
    # only the report's own scripts: pan/zoom, and the explorer's Graphviz, details panel and explorer (its data
    # blocks are <script type="application/json">: data, never run)
    assert html.count("<script>") == 4 and report_script() in html
    assert html.count("<script") == 4 + html.count('<script type="application/json" class="gs-x-data">')
    assert len(graph_svgs(html)) == 1  # three passes, one graph structure
    assert "graph 1" in html and "used by passes 0, 1, 2 (3 passes)" in html
    assert "<td><b>w</b></td><td>[]</td><td>1</td><td>None</td><td><b>5</b></td>" in html  # pass 0: w.grad None -> 5
    plots = [s for s in inline_svgs(html) if s.get("class") == "gs-plot"]
    assert [p.find("{http://www.w3.org/2000/svg}title").text for p in plots] == ["w.grad", "x.grad"]
    assert "lesson.py:6" in html and "<code>y.backward()</code>" in html


def test_one_picture_per_distinct_graph_plus_diagnosed_passes():
    trace = lesson_trace(passes=1000)
    trace.passes[600].graph.node("a").grad_fn = "SubBackward0"  # this one is a new structure
    trace.diagnostics.append(Diagnostic(code="GS201", severity="warning", title="gradient piles up",
                                        message="w.grad grows every step", nodes=["w"], pass_index=7))
    trace.diagnostics.append(Diagnostic(code="GS300", severity="info", title="no pass", message="", nodes=["w"]))
    groups = graph_groups(trace)  # the diagnostic without a pass does not draw all 999
    assert [(g.drawn, len(g.passes)) for g in groups] == [([0, 7], 999), ([600], 1)]
    html = trace_to_html(trace)
    assert len(graph_svgs(html)) == 3
    assert "all 1000 passes" in html  # the long pass table folds away
    assert "GS201" in html and 'href="#pass-7"' in html


def test_user_text_is_escaped_and_nan_never_reaches_an_svg_coordinate():
    trace = lesson_trace(passes=4)
    trace.meta["argv"] = ["--name", "<script>alert(1)</script>"]
    trace.passes[2].graph.node("x").grad_after = scalar(float("nan"))
    trace.passes[3].graph.node("x").grad_after = scalar(float("inf"))
    trace.diagnostics.append(Diagnostic(code="GS<1>", severity="error", title="<b>bold</b>", message="a & b < c",
                                        hint="use <x>", sources=[Source("/p/<f>.py", 9, "w.data += 1 # <")],
                                        pass_index=2))
    html = trace_to_html(trace)
    assert html.count("<script>") == 4 and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "a &amp; b &lt; c" in html and "&lt;f&gt;.py:9" in html
    for svg in inline_svgs(html):  # all parse as XML
        for el in svg.iter():
            for key in ("points", "cx", "cy", "x1", "y1", "x", "y"):
                assert not re.search(r"nan|inf", el.get(key, ""), flags=re.I), (el.tag, key, el.get(key))
    x_plot = [s for s in inline_svgs(html) if s.get("class") == "gs-plot"][1]
    assert len([el for el in x_plot.iter("{http://www.w3.org/2000/svg}line")]) == 2  # nan and inf ticks


def test_notebook_fragment_is_a_div_not_a_page():
    html = lesson_trace()._repr_html_()
    assert html.startswith("<style>") and '<div class="gs-report">' in html and "<html" not in html


def test_terminal_summary_names_files_and_diagnostics(tmp_path):
    trace = lesson_trace(passes=2)
    trace.diagnostics.append(Diagnostic(code="GS101", severity="error", title="leaf modified in place",
                                        message="", sources=[Source("/home/user/lesson.py", 7, "w += 1")]))
    text = summary(trace, [tmp_path / "trace.json", tmp_path / "report.html"], "lesson")
    assert text.splitlines()[0] == "gradscope: traced 2 passes (1 distinct graph) of lesson"
    assert "trace.json" in text and "report.html" in text
    assert "error   GS101 leaf modified in place  lesson.py:7" in text


def test_the_options_row_reads_as_settings_not_a_python_dict():
    import gradscope
    import torch

    w = torch.ones(2, requires_grad=True)
    with gradscope.trace(every=5) as t:
        assert repr(t) == "<gradscope.trace recording: 0 passes, 0 distinct graphs, 0 diagnostics>"
        (w * 3).sum().backward()
    assert repr(t) == "<gradscope.trace finished: 1 pass, 1 distinct graph, 0 diagnostics>"
    page = trace_to_html(t.trace)
    assert "gradients=stats, values=16, jacobian=64, every=5" in page
    assert "{&#x27;gradients&#x27;" not in page and "{'gradients'" not in page
