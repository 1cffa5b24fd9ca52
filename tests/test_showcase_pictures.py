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
