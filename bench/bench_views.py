"""How big is a real model's picture? Boxes and layout time of the default (collapsed and
folded) view and of the full view, on CPU.

    python bench/bench_views.py              # GPT-2-small-shaped decoder, ResNet-50, 6-layer encoder
    python bench/bench_views.py --png out/   # also write each default view as PNG, to look at

Models: a GPT-2-small-shaped decoder (12 blocks, d 768, 12 heads, vocabulary 50257,
context 32, batch 1; its own attention, tests/realmodels.py), ResNet-50 (bench/models.py,
one 3x224x224 image) and nn.TransformerEncoder (6 layers, d 512, 8 heads, 32 tokens).
Each is traced for one training step's backward; the time is Graphviz's layout of the
DOT to SVG (the DOT itself is built in milliseconds).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]
from models import resnet50  # noqa: E402
from realmodels import GPT  # noqa: E402

import gradscope  # noqa: E402
from gradscope.render import collapse  # noqa: E402
from gradscope.render.layout import LayoutError, layout  # noqa: E402
from gradscope.render.select import pass_dot  # noqa: E402


def gpt2_small() -> gradscope.Trace:
    torch.manual_seed(0)
    model = GPT(vocab=50257, d=768, heads=12, blocks=12, context=32)
    idx = torch.randint(50257, (1, 32))
    with gradscope.trace() as t:
        logits = model(idx)
        nn.functional.cross_entropy(logits.view(-1, 50257), idx.view(-1)).backward()
    return t


def resnet() -> gradscope.Trace:
    torch.manual_seed(0)
    model = resnet50()
    with gradscope.trace() as t:
        nn.functional.cross_entropy(model(torch.randn(1, 3, 224, 224)), torch.tensor([3])).backward()
    return t


def encoder6() -> gradscope.Trace:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(512, 8, dim_feedforward=2048, batch_first=True)
    model = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
    with gradscope.trace() as t:
        model(torch.randn(1, 32, 512)).pow(2).mean().backward()
    return t


def measure(trace: gradscope.Trace, timeout: float, png: Path | None, name: str) -> dict:
    p = trace.passes[-1]
    row = {"nodes": len(p.graph.nodes), "depth": collapse.view(p.graph).depth}
    for kind, view in (("default", {}), ("full", {"depth": None})):
        source = pass_dot(trace, p, **view)
        start = time.perf_counter()
        try:
            svg = layout(source, "svg", timeout=timeout).decode()
        except LayoutError:
            row[kind] = (None, None, f"> {timeout:g} s")
            continue
        seconds = time.perf_counter() - start
        boxes = len([t for t in re.findall(r'class="node">\s*<title>([^<]*)</title>', svg) if not t.startswith("diag")])
        size = re.search(r'<svg width="(\d+)pt" height="(\d+)pt"', svg)
        row[kind] = (boxes, f"{size.group(1)}×{size.group(2)} pt" if size else "?", f"{seconds:.2f} s")
    if png is not None:
        png.mkdir(parents=True, exist_ok=True)
        trace.render(png / f"{name}.png")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=None, help="write each default view as PNG here")
    parser.add_argument("--timeout", type=float, default=60.0, help="layout limit per graph (s)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CPU; layout limit {args.timeout:g} s")
    print("| model | op+leaf nodes | default: depth, boxes, size, layout | full: boxes, size, layout |")
    print("|---|---|---|---|")
    for name, build in (("GPT-2-small-shaped decoder", gpt2_small), ("ResNet-50", resnet),
                        ("nn.TransformerEncoder, 6 layers", encoder6)):
        row = measure(build(), args.timeout, args.png, name.split(" ")[0].split(",")[0].lower())
        d, f = row["default"], row["full"]
        print(f"| {name} | {row['nodes']} | {row['depth']}, {d[0]}, {d[1]}, {d[2]} | {f[0]}, {f[1]}, {f[2]} |",
              flush=True)


if __name__ == "__main__":
    main()
