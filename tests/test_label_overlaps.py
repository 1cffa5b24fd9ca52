"""No label runs over another or under a node, on the showcases' graphs and a small CNN.

Laid out with the real Graphviz engine; the boxes come from its own measurements (see
overlaps.py). The checker is shown to catch an overlap first, so a pass is not vacuous.
"""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from overlaps import boxes, laid_out, overlaps

import gradscope
from gradscope.render.select import event_dot, event_graphs, pass_dot

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHOWCASES = {
    "backward": [], "grad_tensors": [], "second_order": [], "grad_accumulation": [],
    "requires_grad": [], "leaf_inplace": [], "logistic_regression": ["--max-iterations", "2"],
}


def _dots(trace: gradscope.Trace) -> list[str]:
    return [pass_dot(trace, p) for p in trace.passes[:4]] + [event_dot(trace, i) for i, _, _ in event_graphs(trace)]


def test_the_checker_catches_overlaps():
    dot = 'digraph { a [label="a very long label" fixedsize=true width=0.3]; b; c -> b [label="yyyy"] }'
    found = overlaps(dot)
    assert "text of node a: 'a very long label' runs out of its box" in found


@pytest.mark.parametrize("name", sorted(SHOWCASES))
def test_showcase_graphs_have_no_overlapping_labels(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (logistic_regression saves its picture)
    path = str(EXAMPLES / f"{name}.py")
    monkeypatch.setattr(sys, "argv", [path, *SHOWCASES[name]])
    with gradscope.trace() as t, contextlib.redirect_stdout(io.StringIO()):
        with contextlib.suppress(RuntimeError):  # leaf_inplace raises, as in the lesson
            runpy.run_path(path, run_name="__main__")
    dots = _dots(t.trace)
    assert dots
    for dot in dots:
        nodes, node_texts, _ = boxes(laid_out(dot))
        assert nodes and len(node_texts) > len(nodes)  # every node has its texts measured
        assert overlaps(dot) == []


def test_small_cnn_graph_has_no_overlapping_labels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with gradscope.trace() as t:
        loss = nn.functional.cross_entropy(net(torch.randn(2, 3, 8, 8)), torch.tensor([0, 2]))
        loss.backward()
    (dot,) = _dots(t.trace)
    assert {"conv2d", "batch_norm", "relu", "max_pool2d", "linear"} <= {n.op for n in t.passes[0].graph.nodes}
    assert overlaps(dot) == []


def test_graphs_with_diagnostics_have_no_overlapping_labels(tmp_path):
    """The notes of diagnostics are nodes too: saved-tensor-modified, with both lines."""
    path = tmp_path / "x.py"
    path.write_text("import torch\nw = torch.tensor([1., -2.], requires_grad=True)\nh = w * 3\n"
                    "s = torch.sigmoid(h)\ns.mul_(2)\ns.sum().backward()\n")
    with gradscope.trace() as t, contextlib.suppress(RuntimeError):
        runpy.run_path(str(path), run_name="__main__")
    (dot,) = _dots(t.trace)
    assert "saved at x.py:4, modified at x.py:5" in dot
    assert overlaps(dot) == []
