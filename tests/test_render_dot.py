"""DOT and SVG of one graph: labels, numbers, clusters, highlighting, escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from conftest import scalar

from gradscope.model import Diagnostic, Pass, Source, TensorSummary, Trace
from gradscope.render import fmt
from gradscope.render.dot import graph_to_dot
from gradscope.render.layout import layout
from gradscope.render.select import pass_dot
from gradscope.render.svg import graph_to_svg

SVG = "{http://www.w3.org/2000/svg}"
# Graphviz complaining about a label (it then silently draws it empty) fails the test.
pytestmark = pytest.mark.filterwarnings("error::gradscope.render.layout.GraphvizWarning")


def svg_texts(svg: str) -> list[str]:
    """Every text element of an SVG, parsed as XML (so the SVG must be valid XML)."""
    root = ET.fromstring(svg.encode("utf-8"))
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_lesson_svg_shows_names_ops_lines_and_gradients(lesson):
    texts = svg_texts(graph_to_svg(lesson, title="pass 0"))
    joined = "\n".join(texts)
    for name in ("w", "x", "a", "b", "y"):
        assert name in texts, name
    for op in ("mul", "MulBackward0", "AddBackward0"):
        assert op in joined
    for line in ("lesson.py:3", "lesson.py:4", "lesson.py:5"):
        assert line in joined
    assert "grad 2" in texts and "grad 3" in texts  # what y sent to a and to b
    assert "∂y/∂a = 2" in texts and "∂y/∂b = 3" in texts  # the local derivatives b and a
    assert "w.grad = 2 + 3 = 5" in texts  # the two paths into w, added up, drawn big
    assert "x.grad = 2" in texts  # one path: nothing to add
    assert "root · seed" in joined


def test_edges_point_the_way_the_gradient_flows(lesson):
    dot = graph_to_dot(lesson)
    assert "dir=back" in dot  # drawn input -> consumer, arrowhead at the input


def test_node_kinds_look_different(lesson):
    lesson.node("w").is_parameter = True
    lesson.node("b").created_by_backward = True
    lesson.node("b").created_by = "pow at lesson.py:3"
    dot = graph_to_dot(lesson)
    fills = {line.split()[0]: line for line in dot.splitlines() if "fillcolor" in line and "->" not in line}
    assert len({_attr(v, "fillcolor") for v in fills.values()}) == 5  # op, leaf, parameter, root, backward
    assert "dashed" in dot and "made by backward of pow at lesson.py:3" in dot
    assert "(parameter)" in dot and "parameter" in dot.split("graph [label=")[-1]  # legend entry


def _attr(line: str, name: str) -> str:
    return line.split(f"{name}=")[1].split()[0].strip('"]')


def test_module_paths_become_nested_clusters(lesson):
    lesson.node("a").module = "encoder.layers.0"
    lesson.node("b").module = "encoder.layers.1"
    texts = svg_texts(graph_to_svg(lesson))
    for path in ("encoder", "encoder.layers", "encoder.layers.0", "encoder.layers.1"):
        assert path in texts
    assert graph_to_dot(lesson).count("subgraph cluster_") == 4


def test_diagnostic_nodes_and_edges_are_red_with_a_note(lesson):
    d = Diagnostic(code="GS101", severity="error", title="leaf modified in place", message="...",
                   sources=[Source("/home/user/lesson.py", 7, "w += 1")], nodes=["w", "a"], pass_index=0)
    dot = graph_to_dot(lesson, [d])
    red = [line for line in dot.splitlines() if "#dc2626" in line]
    assert any(line.strip().startswith("n") and "->" in line for line in red)  # the edge w -> a
    texts = svg_texts(graph_to_svg(lesson, [d]))
    assert "GS101" in texts and "lesson.py:7" in texts


HOSTILE = '<b>&"x</td>]]>\x01'


def test_hostile_user_text_is_escaped_and_svg_stays_valid(lesson):
    lesson.node("w").name = HOSTILE
    lesson.node("a").source.code = 'a = x < w & "q" </table>'
    lesson.node("a").source.file = '/tmp/<we&ird>.py'
    lesson.node("b").module = '<m>&.layer"s'
    lesson.node("b").op = "<op>"
    d = Diagnostic(code="<c>", severity="error", title="</font>&", message="<", nodes=["w"], pass_index=0)
    texts = svg_texts(graph_to_svg(lesson, [d], title="</table> & <"))
    joined = "\n".join(texts)
    assert '<b>&"x</td>]]>' in texts  # shown verbatim (control character dropped)
    assert 'a = x < w & "q" </table>' in joined
    assert "<we&ird>.py:3" in joined and '<m>&.layer"s' in texts
    assert "</table> & <" in texts and "<c>" in texts


def test_empty_user_text_still_gives_valid_labels(lesson):
    for n in lesson.nodes:
        n.name, n.op = "", ""
        if n.source:
            n.source.code = ""
    d = Diagnostic(code="", severity="error", title="", message="", nodes=["w"])
    texts = svg_texts(graph_to_svg(lesson, [d], title=""))
    assert "MulBackward0" in texts and "AccumulateGrad" in texts


@pytest.mark.parametrize("x, text", [(2.0, "2"), (3, "3"), (0.25, "0.25"), (1.3e-2, "0.013"), (1.25e-5, "1.25e-5"),
                                     (float("nan"), "nan"), (float("-inf"), "-inf"), (1e7, "1e7"), (True, "true")])
def test_numbers_read_like_a_person_writes_them(x, text):
    assert fmt.num(x) == text


def test_tensor_summaries_are_short():
    assert fmt.tensor(scalar(5.0)) == "5"
    assert fmt.tensor(TensorSummary(shape=[2], dtype="float32", value=[1.0, 0.5])) == "[1, 0.5]"
    big = TensorSummary(shape=[256, 512], dtype="float32", norm=0.0132)
    assert fmt.tensor(big) == "[256,512] ‖g‖=0.0132"
    assert fmt.tensor(TensorSummary(shape=[3], dtype="float32", norm=float("nan"), nan=2)) == "[3] ‖g‖=nan (2 nan)"
    assert fmt.tensor(None) == "None"


def test_local_derivatives_small_inline_big_as_size():
    assert fmt.local(2.0) == "2"
    assert fmt.local([[1.0, 0.0], [0.0, 1.0]]) == "[[1, 0], [0, 1]]"
    assert fmt.local([[0.0] * 8] * 8) == "J 8×8"
    assert fmt.local(None) is None


def test_code_loses_its_comment_but_not_a_hash_in_a_string():
    assert fmt.code("y = a * b  # = 6") == "y = a * b"
    assert fmt.code("s = '#' + t") == "s = '#' + t"
    assert fmt.code("f(a,  # first") == "f(a,"


def test_autograd_grad_pass_shows_what_was_returned_not_grad(lesson):
    lesson.node("w").grad_after = None  # autograd.grad leaves .grad alone
    trace = Trace(passes=[Pass(index=0, api="torch.autograd.grad", graph=lesson, inputs=["w"],
                               results=[scalar(5.0)])])
    joined = " ".join(" ".join(svg_texts(layout(pass_dot(trace, trace.passes[0])).decode())).split())
    # w's .grad stayed None: its box shows the answer, not an empty ".grad None → None"
    assert "autograd.grad returned 5" in joined and ".grad None → None" not in joined


def test_the_graph_as_it_stood_before_backward_marks_the_leaf_and_line(tmp_path):
    """The lesson's in-place error: the report's picture of the graph as it stood marks `w`
    red, with a note naming the line that edited it."""
    import subprocess
    import sys
    import xml.etree.ElementTree as ET
    script = tmp_path / "leaf.py"
    script.write_text("import torch\nw = torch.tensor([1.], requires_grad=True)\nx = torch.tensor([2.], requires_grad=True)\n"
                      "a = torch.add(w, x)\nb = torch.add(w, 1)\ny = torch.mul(a, b)\nw.add_(1)\ny.backward()\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "gradscope.cli", "trace", "-o", str(out), str(script)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and "a leaf Variable that requires grad" in r.stderr
    svg = (out / "event-000.svg").read_text()
    ET.fromstring(svg)
    joined = " ".join(" ".join(svg_texts(svg)).split())
    assert "leaf-inplace" in joined and "leaf.py:7" in joined and "root" not in joined
    w_box = next(g for g in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}g")
                 if g.get("class") == "node" and any((t.text or "").strip() == "w" for t in g.iter()))
    assert any(p.get("stroke") == "#dc2626" for p in w_box.iter() if p.get("stroke"))
    assert "the graph as it stood at leaf.py:7" in (out / "report.html").read_text()


def test_a_pass_without_edge_gradients_says_so_in_its_caption():
    import torch

    import gradscope
    from gradscope.render.select import pass_title

    w = torch.ones(300, 300, requires_grad=True)
    with gradscope.trace() as t:
        for _ in range(5):
            (w * 3).sum().backward()
    assert "not recorded" not in pass_title(t.passes[0])
    assert "edge gradients not recorded (a repeat" in pass_title(t.passes[4], t.trace)
    with gradscope.trace(gradients="off") as t:
        (w * 3).sum().backward()
    assert pass_title(t.passes[0], t.trace).endswith('edge gradients off (trace(gradients="off"))')
