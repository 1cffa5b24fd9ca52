"""Collapsed and folded views of real models: box counts read from the laid-out SVG."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import gradscope
from gradscope.model import Graph
from gradscope.render import collapse
from realmodels import GPT, ResNet, encoder, gpt_step


def svg_boxes(path) -> list[str]:
    """The titles of the graph's nodes in an SVG (diagnostic notes left out)."""
    titles = re.findall(r'class="node">\s*<title>([^<]*)</title>', path.read_text())
    return [t for t in titles if not t.startswith("diag")]


@pytest.fixture(scope="module")
def gpt_trace():
    torch.manual_seed(0)
    model = GPT(blocks=4)
    with gradscope.trace() as t:
        gpt_step(model)
    return t


def test_small_graphs_are_drawn_in_full_as_before(tmp_path):
    x = torch.tensor(2.0, requires_grad=True)
    w = torch.tensor(1.0, requires_grad=True)
    with gradscope.trace() as t:
        a = x + w
        b = w + 1
        y = a * b
        y.backward()
    graph = t.passes[-1].graph
    shown = collapse.view(graph)
    assert shown.boxes == [] and shown.nodes == graph.nodes
    auto, full = t.render(tmp_path / "auto.dot"), t.render(tmp_path / "full.dot", depth=None)
    assert auto.read_text() == full.read_text()
    assert len(svg_boxes(t.render(tmp_path / "lesson.svg"))) == 5


def test_gpt_default_view_folds_the_blocks(gpt_trace, tmp_path):
    graph = gpt_trace.passes[-1].graph
    assert len(graph.nodes) == 188
    svg = gpt_trace.render(tmp_path / "g.svg")
    # depth auto: everything fits once the 4 blocks are drawn once (block 0, marked ×4)
    assert len(svg_boxes(svg)) == collapse.view(graph).size == 59
    text = svg.read_text()
    assert "×4" in text and "(to 3, drawn once)" in text
    assert "blocks.1.attn.qkv.weight" not in text  # hidden with block 1
    assert "blocks.0.attn.qkv.weight" in text


def test_gpt_depth_expand_and_fold_counts(gpt_trace, tmp_path):
    def boxes(name, **view):
        return svg_boxes(gpt_trace.render(tmp_path / name, **view))

    # tok, pos, their sum, blocks 0-3 as one box, ln_f, head, and cross-entropy's 3 nodes
    assert len(boxes("d0.svg", depth=0)) == 9
    assert len(boxes("d0-nofold.svg", depth=0, fold=False)) == 12
    assert len(boxes("d1.svg", depth=1)) == 22
    assert len(boxes("d1-nofold.svg", depth=1, fold=False)) == 40
    assert len(boxes("full.svg", depth=None)) == 188
    # expanding block 1 opens it in full, between block 0's box and blocks 2-3's ×2
    shown = collapse.view(gpt_trace.passes[-1].graph, 0, expand=("blocks.1",))
    assert [(b.path, b.count) for b in shown.boxes] == [
        ("tok", 1), ("pos", 1), ("blocks.0", 1), ("blocks.2", 2), ("ln_f", 1), ("head", 1)]
    expanded = gpt_trace.render(tmp_path / "e.svg", depth=0, expand=("blocks.1",))
    assert len(svg_boxes(expanded)) == shown.size == 53
    assert "blocks.1.attn.qkv.weight" in expanded.read_text() and "×2" in expanded.read_text()


def test_folded_box_carries_each_calls_gradient_norm(gpt_trace):
    graph = gpt_trace.passes[-1].graph
    (blocks,) = [b for b in collapse.view(graph, 0).boxes if b.count > 1]
    assert (blocks.path, blocks.last_path, blocks.cls) == ("blocks.0", "blocks.3", "Block")
    assert blocks.parameters == 12_704  # one block's: 2 LayerNorms (64 each), qkv, proj, mlp
    by_name = {n.name: n for n in graph.nodes}
    for k, norm in enumerate(blocks.grad_norms):
        params = [n for name, n in by_name.items() if name.startswith(f"blocks.{k}.") and n.kind == "leaf"]
        assert len(params) == 12
        assert norm == pytest.approx(sum(p.grad_after.norm ** 2 for p in params) ** 0.5)
    assert blocks.inputs == [[2, 8, 32]] and blocks.outputs == [[2, 8, 32]]


def test_real_models_default_view_fits_150_boxes(tmp_path):
    enc = encoder(layers=6)
    torch.manual_seed(0)
    resnet = ResNet(layers=(3, 4, 6, 3))
    with gradscope.trace() as t:
        enc(torch.randn(2, 5, 16)).sum().backward()
        resnet(torch.randn(2, 3, 32, 32)).sum().backward()
    for p, full, default in ((0, 334, 54), (1, 338, 98)):
        graph = t.passes[p].graph
        assert len(graph.nodes) == full
        assert len(svg_boxes(t.render(tmp_path / f"{p}.svg", pass_index=p))) == default <= collapse.MAX_BOXES
    # the first layer (fed by data that needs no grad, so without the ops on its input the
    # others have) folds with the five after it
    assert [(r.path, r.last_path, r.count) for r in collapse.view(t.passes[0].graph).runs] == [
        ("layers.0", "layers.5", 6)]


class Unstable(nn.Module):
    """sqrt at 0: its backward sends an infinite gradient, which `h * 0` turns into NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * 1
        return torch.sqrt(h * 0)


def test_collapsed_box_holding_a_diagnostic_is_red(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), Unstable(), nn.Linear(3, 1))
    with gradscope.trace() as t:
        model(torch.randn(2, 3)).sum().backward()
    (diag,) = [d for d in t.diagnostics if d.code == "nonfinite-gradient"]
    shown = collapse.view(t.passes[-1].graph, 0, flagged=diag.nodes)
    assert [(b.path, b.flagged) for b in shown.boxes] == [("0", False), ("1", True), ("2", False)]
    text = t.render(tmp_path / "d0.svg", depth=0).read_text().replace("&#45;", "-")
    ids = {b.path: b.id for b in shown.boxes}
    box = re.search(rf"<title>{ids['1']}</title>.*?</g>", text, re.S).group(0)
    assert 'stroke="#dc2626"' in box and "holds nonfinite-gradient" in box
    other = re.search(rf"<title>{ids['0']}</title>.*?</g>", text, re.S).group(0)
    assert "#dc2626" not in other


def test_tiny_gpt_showcase_default_view(tmp_path, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["tiny_gpt.py", "--steps", "2"])
    with gradscope.trace() as t:
        runpy.run_path(str(Path(gradscope.__file__).parents[1] / "examples" / "tiny_gpt.py"), run_name="__main__")
    assert len(t.passes) == 2
    graph = t.passes[-1].graph
    shown = collapse.view(graph)
    assert [(r.path, r.count) for r in shown.runs] == [("blocks.0", 4)]
    assert len(svg_boxes(t.render(tmp_path / "g.svg"))) == shown.size < len(graph.nodes)


def test_graph_render_takes_the_same_options(gpt_trace, tmp_path):
    graph = gpt_trace.passes[-1].graph
    assert len(svg_boxes(graph.render(tmp_path / "g.svg", depth=0, fold=False))) == 12
    with pytest.raises(ValueError, match="depth"):
        graph.render(tmp_path / "g.dot", depth=-1)
    with pytest.raises(ValueError, match="depth must be a whole number >= 0, None or 'auto', not 'deep'"):
        collapse.view(Graph(), "deep")  # (also where there is no module to collapse)


def test_cli_render_depth_expand_no_fold(gpt_trace, tmp_path, gradscope_cmd):
    saved = gpt_trace.save(tmp_path / "trace.json")
    out = tmp_path / "g.svg"
    r = gradscope_cmd("render", str(saved), "-o", str(out), "--depth", "0")
    assert r.returncode == 0, r.stderr
    assert len(svg_boxes(out)) == 9
    gradscope_cmd("render", str(saved), "-o", str(out), "--depth", "0", "--no-fold")
    assert len(svg_boxes(out)) == 12
    gradscope_cmd("render", str(saved), "-o", str(out), "--depth", "0", "--expand", "blocks.1")
    assert len(svg_boxes(out)) == 53
    gradscope_cmd("render", str(saved), "-o", str(out), "--depth", "full")
    assert len(svg_boxes(out)) == 188
    bad = gradscope_cmd("render", str(saved), "-o", str(out), "--depth", "deep")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "gradscope: --depth must be a whole number, 'auto' or 'full', not 'deep'"


def test_a_module_called_twice_is_two_clusters(tmp_path):
    from realmodels import SharedActivation

    torch.manual_seed(0)
    model = SharedActivation()
    with gradscope.trace() as t:
        model(torch.randn(3, 4)).sum().backward()
    text = t.render(tmp_path / "g.svg").read_text()
    labels = re.findall(r'class="cluster">\s*<title>[^<]*</title>.*?<text[^>]*>([^<]*)</text>', text, re.S)
    assert sorted(labels) == ["act", "act (call 1)", "fc1", "fc2"]
