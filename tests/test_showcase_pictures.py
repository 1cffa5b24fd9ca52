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
