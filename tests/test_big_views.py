"""The default views of big models (a GPT-shaped decoder of 12 blocks, a ResNet-50-like
ResNet, a 6-layer nn.TransformerEncoder) have no label over another or under a node: laid
out by the real Graphviz, measured by overlaps.py (shown to catch an overlap in
test_label_overlaps.py)."""

from __future__ import annotations

import pytest
import torch
from overlaps import overlaps
from realmodels import GPT, ResNet, encoder, gpt_step

import gradscope
from gradscope.render import collapse
from gradscope.render.select import pass_dot


@pytest.mark.parametrize("name", ["gpt-12-blocks", "resnet-50-like", "encoder-6-layers"])
def test_default_views_of_big_models_have_no_overlapping_labels(name):
    torch.manual_seed(0)
    with gradscope.trace() as t:
        if name == "gpt-12-blocks":
            gpt_step(GPT(blocks=12))
        elif name == "resnet-50-like":
            ResNet(layers=(3, 4, 6, 3))(torch.randn(2, 3, 32, 32)).sum().backward()
        else:
            encoder(layers=6)(torch.randn(2, 5, 16)).sum().backward()
    graph = t.passes[0].graph
    shown = collapse.view(graph)
    assert len(graph.nodes) > 300 and shown.size <= collapse.MAX_BOXES
    assert shown.boxes or shown.runs  # collapsed or folded: a default view, not the full graph
    assert overlaps(pass_dot(t.trace, t.passes[0])) == []
