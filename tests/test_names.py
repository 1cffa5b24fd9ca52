"""Names on the graph: numbered in forward order, never two alike, long ones told apart,
and a tooltip on every node with its full name, op, source and module."""

from __future__ import annotations

import re
import textwrap

import torch
import torch.nn as nn

import gradscope
from gradscope.render.dot import forward_order, graph_to_dot
from gradscope.render.layout import layout
from gradscope.render.names import display_names


def _run(tmp_path, code: str) -> gradscope.Trace:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(code))
    with gradscope.trace() as t:
        exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__"})
    return t.trace


def test_automatic_names_are_numbered_in_forward_order(tmp_path):
    trace = _run(tmp_path, """\
        import torch
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        loss = net(torch.ones(2, 3)).sum()
        loss.backward()
    """)
    g = trace.passes[0].graph
    linears = {n.name: n for n in g.nodes if n.op == "linear"}
    assert set(linears) == {"linear", "linear_1"}
    assert linears["linear"].module == "0" and linears["linear_1"].module == "2"  # the first one is `linear`


def test_no_two_nodes_share_a_display_name(tmp_path):
    trace = _run(tmp_path, """\
        import torch
        w = torch.tensor([1.], requires_grad=True)
        h = w * 2
        h = h * 3
        h = h * 4
        h.backward()
    """)
    g = trace.passes[0].graph
    assert [n.name for n in g.nodes if n.op == "mul"] == ["h"] * 3  # the variable each line assigned
    muls = sorted((n for n in g.nodes if n.op == "mul"), key=lambda n: n.source.line)
    shown = display_names(forward_order(g.nodes))
    assert [shown[n.id] for n in muls] == ["h", "h_1", "h_2"]  # forward order: the first `h = ...` is `h`
    assert len(set(shown.values())) == len(g.nodes)
    svg = layout(graph_to_dot(g), "svg").decode()
    for name in ("h", "h_1", "h_2"):
        assert f">{name}</text>" in svg
    assert "∂h_1/∂h = 3" in svg and "∂h_2/∂h_1 = 4" in svg


LONG = "transformer.encoder.layers.{}.self_attention.output_projection.weight"


def test_long_names_are_shortened_by_whole_parts_and_stay_apart():
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.Module()
            self.transformer.encoder = nn.Module()
            self.transformer.encoder.layers = nn.ModuleList()
            for _ in range(12):
                block = nn.Module()
                block.self_attention = nn.Module()
                block.self_attention.output_projection = nn.Linear(2, 2, bias=False)
                self.transformer.encoder.layers.append(block)

        def forward(self, x):
            for block in self.transformer.encoder.layers:
                x = block.self_attention.output_projection(x)
            return x

    model = Deep()
    with gradscope.trace() as t:
        model(torch.ones(1, 2)).sum().backward()
    g = t.passes[0].graph
    assert {n.name for n in g.leaves} == {LONG.format(i) for i in range(12)}
    shown = display_names(g.nodes)
    drawn = {shown[n.id] for n in g.leaves}
    assert len(drawn) == 12  # never two alike
    assert shown[g.find(LONG.format(1)).id] == "…1.self_attention.output_projection.weight"
    assert shown[g.find(LONG.format(11)).id] == "…11.self_attention.output_projection.weight"
    svg = layout(graph_to_dot(g), "svg").decode()
    for text in drawn:
        assert f">{text}<" in svg


def test_every_node_tooltip_has_full_name_op_source_and_module(tmp_path):
    trace = _run(tmp_path, """\
        import torch
        net = torch.nn.Sequential(torch.nn.Linear(3, 1))
        x = torch.ones(2, 3)
        loss = net(x).sum()
        loss.backward()
    """)
    g = trace.passes[0].graph
    svg = layout(graph_to_dot(g), "svg").decode()
    tips = re.findall(r'<g id="a_\w*node\d+"><a xlink:title="([^"]*)">', svg)
    assert len(tips) == len(g.nodes)
    by_name = {tip.split(" (")[0]: tip for tip in tips}
    assert set(by_name) == {n.name for n in g.nodes}
    linear = by_name["linear"]
    path = str(tmp_path / "snippet.py").replace("-", "&#45;")  # (as Graphviz writes it)
    assert f"linear (op)&#10;op linear&#10;{path}:4 &#160;loss = net(x).sum()&#10;module 0" == linear
    assert by_name["loss"].startswith("loss (op)&#10;op sum&#10;")
    assert by_name["0.weight"].startswith("0.weight (parameter)")
    assert not any(re.fullmatch(r"n\d+", tip) for tip in tips)
