"""Layout in a child process: big graphs within the timeout, too-big graphs fail clearly,
and `render()` picks the output by extension."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
from conftest import lesson_trace

from gradscope.model import Edge, Graph, Node, Pass, Source, TensorSummary, Trace
from gradscope.render import render
from gradscope.render.layout import DEFAULT_TIMEOUT, LayoutError
from gradscope.render.svg import graph_to_svg


def chain(n: int) -> Graph:
    """A leaf `w` and `n` ops in a row, ten layers of modules, like a deep net's graph."""
    g = TensorSummary(shape=[64, 32], dtype="float32", norm=0.01)
    nodes = [Node(id="w", kind="leaf", name="w", grad_fn="AccumulateGrad", shape=[64, 32], dtype="float32",
                  is_parameter=True, grad_after=g)]
    edges = []
    for i in range(n):
        nodes.append(Node(id=f"op{i}", kind="op", name=f"h{i}", grad_fn="MulBackward0", op="mul",
                          source=Source("/x/model.py", 10 + i, "h = h * 1.0001"), module=f"layers.{i * 10 // n}",
                          shape=[64, 32], dtype="float32"))
        edges.append(Edge(src=nodes[-2].id, dst=f"op{i}", index=0, grad=g))
    nodes[-1].is_root = True
    return Graph(nodes, edges)


def test_2000_ops_render_within_the_default_timeout():
    graph = chain(2000)
    start = time.perf_counter()
    svg = graph_to_svg(graph)
    elapsed = time.perf_counter() - start
    assert elapsed < DEFAULT_TIMEOUT, f"2,000 ops took {elapsed:.1f} s"
    texts = {"".join(t.itertext()) for t in ET.fromstring(svg.encode()).iter("{http://www.w3.org/2000/svg}text")}
    assert {"h0", "h1999", "layers.9", "grad [64,32] ‖g‖=0.01"} <= texts


def test_too_big_for_the_timeout_fails_in_one_line_and_keeps_the_dot(tmp_path):
    trace = Trace(passes=[Pass(index=0, api="Tensor.backward", graph=chain(3000))])
    with pytest.raises(LayoutError) as info:
        render(trace, tmp_path / "big.svg", timeout=0.2)
    message = str(info.value)
    assert "\n" not in message
    assert "did not finish in 0.2 s" in message and "--timeout" in message
    assert str(tmp_path / "big.dot") in message
    assert info.value.dot_path == tmp_path / "big.dot"
    assert (tmp_path / "big.dot").read_text().count("MulBackward0") == 3000
    assert not (tmp_path / "big.svg").exists()


def test_render_chooses_the_output_by_extension(tmp_path):
    trace = lesson_trace()
    assert render(trace, tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = render(trace, tmp_path / "g.dot").read_text()
    assert "MulBackward0" in dot
    ET.parse(render(trace, tmp_path / "g.svg"))  # valid XML
    assert (tmp_path / "g.dot").read_text() == dot  # a successful .svg leaves a .dot beside it alone
    assert render(trace, tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="use one of .svg, .png, .dot, .html"):
        render(trace, tmp_path / "g.pdf")
    with pytest.raises(ValueError, match="no pass 5"):
        render(trace, tmp_path / "g.svg", pass_index=5)
