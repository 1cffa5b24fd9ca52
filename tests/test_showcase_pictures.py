"""The showcases' pictures carry the lesson's numbers, readable off the SVG text itself.

Each example runs under `gradscope.trace()` (real torch) and is rendered with real Graphviz;
the assertions read the SVG's text elements, so a number that is in the model but not
drawn fails here.
"""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import gradscope

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SVG = "{http://www.w3.org/2000/svg}"


def traced(name: str, *argv: str) -> gradscope.Trace:
    path = str(EXAMPLES / f"{name}.py")
    old_argv, sys.argv = sys.argv, [path, *argv]
    try:
        with gradscope.trace() as t, contextlib.redirect_stdout(io.StringIO()):
            try:
                runpy.run_path(path, run_name="__main__")
            except RuntimeError:  # leaf_inplace raises, as in the lesson
                pass
    finally:
        sys.argv = old_argv
    return t.trace


def svg_texts(path: Path) -> list[str]:
    root = ET.fromstring(path.read_bytes())
    return ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]


def test_backward_shows_op_values_and_the_sum_into_w(tmp_path):
    trace = traced("backward")
    texts = svg_texts(trace.render(tmp_path / "backward.svg", pass_index=0))
    assert "a = 3" in texts and "b = 2" in texts and "y = 6" in texts  # forward values on the ops
    assert "w = 1" in texts and "x = 2" in texts
    assert "w.grad = 2 + 3 = 5" in texts  # the two paths into w, added
    assert "∂y/∂a = 2" in texts and "∂y/∂b = 3" in texts  # ∂y/∂a = b = 2: b's box says 2


def test_accumulation_pass_adds_to_what_grad_held(tmp_path):
    trace = traced("grad_accumulation")
    texts = svg_texts(trace.render(tmp_path / "acc.svg", pass_index=3))
    assert "w.grad = 15 + 2 + 3 = 20" in texts
    assert "x.grad = 6 + 2 = 8" in texts


def _line(name: str, text: str) -> int:
    lines = (EXAMPLES / f"{name}.py").read_text().splitlines()
    (hit,) = [i for i, line in enumerate(lines, 1) if text in line]
    return hit


def test_second_order_says_which_call_made_the_graph_and_returned_6_then_2(tmp_path):
    from gradscope.render.html import trace_to_html

    trace = traced("second_order")
    first_call = _line("second_order", "grad_1 = torch.autograd.grad")
    pow_line = _line("second_order", "y = torch.pow(x, 2)")
    first = svg_texts(trace.render(tmp_path / "p0.svg", pass_index=0))
    assert "x = 3" in first and "y = 9" in first and "6" in first
    assert "autograd.grad returned" in "\n".join(first)
    assert any("create_graph=True" in t for t in first)  # the caption says this pass builds a graph
    second = svg_texts(trace.render(tmp_path / "p1.svg", pass_index=1))
    assert "saved exponent = 1, self = 3" in second  # the pow backward built: x ** 1 at x = 3
    assert "saved other = 2" in second  # ... times 2
    assert "grad_1[0] = 6" in second  # what the first autograd.grad returned, the second's root
    assert f"made by backward of pow at second_order.py:{pow_line}" in second
    assert f"pass 0, torch.autograd.grad at second_order.py:{first_call} with create_graph=True" in second
    assert "2" in second and "autograd.grad returned" in "\n".join(second)
    html = trace_to_html(trace)
    # the leaf tables: what each autograd.grad returned for x (its .grad stays None)
    assert html.count("<th>autograd.grad returned</th>") == 2
    assert "<td><b>6</b></td>" in html and "<td><b>2</b></td>" in html


def test_requires_grad_draws_the_graph_it_inspects(tmp_path):
    from gradscope.render.select import event_dot, event_graphs
    from gradscope.render.layout import layout

    trace = traced("requires_grad")
    assert trace.passes == []  # no backward ran ...
    ((i, event, _),) = event_graphs(trace)  # ... but the graph it read requires_grad of is kept
    assert event.source.line == _line("requires_grad", "print(a.requires_grad")
    path = tmp_path / "rg.svg"
    path.write_bytes(layout(event_dot(trace, i), "svg"))
    texts = svg_texts(path)
    assert texts.count("requires_grad=True") == 5  # w, x set it; a, b, y inherit it
    assert texts.count("set when it was created") == 2
    assert "from w, x" in texts and "from w" in texts and "from a, b" in texts
    assert "a = 3" in texts and "b = 2" in texts and "y = 6" in texts


def test_requires_grad_reads_inside_torch_or_after_a_pass_save_nothing():
    import os

    import torch

    # code whose file lies inside torch (as nn modules that check requires_grad mid-forward)
    inside_torch = compile("flag = t.requires_grad", os.path.join(os.path.dirname(torch.__file__), "x.py"), "exec")
    w = torch.ones(2, requires_grad=True)
    with gradscope.trace() as t:
        y = w * 2
        exec(inside_torch, {"t": y})
        y.sum().backward()
        assert y.requires_grad  # after a pass: nothing new to show
    assert [e.kind for e in t.trace.events if e.kind == "requires-grad-read"] == []


LEAF_ERROR = "RuntimeError: a leaf Variable that requires grad is being used in an in-place operation."


def test_leaf_inplace_report_shows_pytorchs_error_by_the_line_and_the_graph(tmp_path):
    from gradscope.render.html import trace_to_html

    trace = traced("leaf_inplace")
    html = trace_to_html(trace)
    line = _line("leaf_inplace", "w.add_(1)  #")
    # in the diagnostic, right after the line that raised it
    assert f'leaf_inplace.py:{line}</span> <code>w.add_(1)</code> <span class="gs-error">{LEAF_ERROR}</span>' in html
    # over the graph as it stood, and in the graph's own caption
    assert f"when PyTorch raised {LEAF_ERROR}</h4>" in html
    assert f">{LEAF_ERROR}<".replace("-", "&#45;") in html.split("<h4>", 2)[-1]  # (Graphviz writes - as &#45;)


def test_grad_accumulation_plot_labels_5_10_15_20():
    import re

    from gradscope.render.html import trace_to_html

    html = trace_to_html(traced("grad_accumulation"))
    plots = re.findall(r'<svg class="gs-plot".*?</svg>', html, re.S)
    (w_plot,) = [p for p in plots if "<title>w.grad</title>" in p]
    assert re.findall(r'<text class="gs-point"[^>]*>([^<]*)</text>', w_plot) == ["5", "10", "15", "20"]


def test_a_small_tensor_grad_reads_as_what_it_became(tmp_path):
    import torch

    with gradscope.trace() as t:
        w = gradscope.name(torch.tensor([1.0, 2.0], requires_grad=True), "w")
        (w * 3).sum().backward()
    texts = svg_texts(t.trace.render(tmp_path / "w.svg", pass_index=0))
    assert "w.grad = [3, 3]" in texts
