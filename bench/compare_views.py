"""gradscope's default view beside torchview's (depth, roll) and torchviz's, on the models of
bench_views.py: boxes in the picture and its size. Needs `pip install torchview torchviz`.

    python bench/compare_views.py

torchview draws the forward's modules and tensors (no gradients); torchviz the autograd
graph, one box per node and per parameter. Each picture is laid out by the same Graphviz.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torchview
import torchviz

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_views  # noqa: E402
from models import resnet50  # noqa: E402
from realmodels import GPT  # noqa: E402

from gradscope.render.layout import layout  # noqa: E402
from gradscope.render.select import pass_dot  # noqa: E402


def picture(source: str) -> str:
    svg = layout(source, "svg", timeout=120).decode()
    boxes = len(re.findall(r'class="node"', svg))
    size = re.search(r'<svg width="(\d+)pt" height="(\d+)pt"', svg)
    return f"{boxes} boxes, {size.group(1)}×{size.group(2)} pt"


def models():
    torch.manual_seed(0)
    gpt = GPT(vocab=50257, d=768, heads=12, blocks=12, context=32)
    idx = torch.randint(50257, (1, 32))
    yield "GPT-2-small-shaped decoder", gpt, idx, bench_views.gpt2_small, \
        lambda: nn.functional.cross_entropy(gpt(idx).view(-1, 50257), idx.view(-1))
    resnet = resnet50()
    image = torch.randn(1, 3, 224, 224)
    yield "ResNet-50", resnet, image, bench_views.resnet, \
        lambda: nn.functional.cross_entropy(resnet(image), torch.tensor([3]))
    layer = nn.TransformerEncoderLayer(512, 8, dim_feedforward=2048, batch_first=True)
    enc = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
    tokens = torch.randn(1, 32, 512)
    yield "nn.TransformerEncoder, 6 layers", enc, tokens, bench_views.encoder6, lambda: enc(tokens).pow(2).mean()


def main() -> None:
    print(f"torchview {getattr(torchview, '__version__', '?')}, torchviz; torch {torch.__version__}")
    print("| model | gradscope default | torchview depth 1, roll | depth 2, roll | depth 3, roll | torchviz |")
    print("|---|---|---|---|---|---|")
    for name, model, data, trace_it, loss in models():
        t = trace_it()
        ours = picture(pass_dot(t, t.passes[-1]))
        views = []
        for depth in (1, 2, 3):
            g = torchview.draw_graph(model, input_data=data, depth=depth, roll=True, device="cpu")
            views.append(picture(g.visual_graph.source))
        viz = picture(torchviz.make_dot(loss(), params=dict(model.named_parameters())).source)
        print(f"| {name} | {ours} | {' | '.join(views)} | {viz} |", flush=True)


if __name__ == "__main__":
    main()
