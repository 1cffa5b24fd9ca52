"""Regenerate the gallery: docs/gallery/*.svg and docs/gallery.md, from scratch.

    python docs/build_gallery.py            # writes docs/gallery/ and docs/gallery.md
    python docs/build_gallery.py --out DIR  # writes DIR/gallery/ and DIR/gallery.md

Each showcase in examples/ runs as __main__ inside `gradscope.trace()` (its output is
hidden), and the passes worth seeing are rendered with `Trace.render(path, pass_index=...)`.
Only the public gradscope API is used, so the gallery shows exactly what users get.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradscope

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@dataclass
class Picture:
    file: str  # name inside gallery/
    caption: str  # one sentence under the picture
    pass_index: int = -1


@dataclass
class Showcase:
    example: str  # examples/EXAMPLE.py
    title: str
    pictures: list[Picture]
    argv: list[str] = field(default_factory=list)


SHOWCASES = [
    Showcase("backward", "y = (x + w) * (w + 1)", [
        Picture("backward.svg",
                "The lesson's graph: y sends b = 2 to a and a = 3 to b, both pass it on to w "
                "times 1, and the two paths add up to w.grad = 2 + 3 = 5.", 0),
    ]),
    Showcase("grad_tensors", "Weighting two outputs with `gradient=`", [
        Picture("grad_tensors.svg",
                "backward from the vector [y0, y1] seeded with [1, 2]: w.grad = 1 * 5 + 2 * 2 = 9.", 0),
    ]),
    Showcase("second_order", "Second derivative with `create_graph=True`", [
        Picture("second_order-pass1.svg",
                "First autograd.grad of y = x**2 at x = 3: dy/dx = 2x = 6, recorded as a graph "
                "because create_graph=True.", 0),
        Picture("second_order-pass2.svg",
                "Second autograd.grad, through the nodes the first backward built: d(2x)/dx = 2.", 1),
    ]),
    Showcase("grad_accumulation", "Gradients accumulate across backward calls", [
        Picture("grad_accumulation.svg",
                "The fourth backward without zero_grad(): w.grad goes from 15 to 20, because "
                "backward adds to .grad instead of replacing it; the grad-accumulation warning "
                "marks both leaves.", 3),
    ]),
    Showcase("logistic_regression", "Logistic regression", [
        Picture("logistic_regression.svg",
                "One training step of sigmoid(W x + b) with BCE loss: the gradients that reach "
                "features.weight and features.bias in the last iteration.", -1),
        Picture("logistic_regression.png",
                "The two classes and the decision boundary learned once accuracy passed 99% "
                "(drawn by the example itself with matplotlib).", -1),
    ]),
    Showcase("tiny_gpt", "A GPT-shaped decoder, collapsed and folded", [
        Picture("tiny_gpt.svg",
                "The last training step's default view: embeddings, head and loss op by op, the "
                "four identical blocks drawn once as block 0 and marked ×4, with each block's "
                "gradient norm.", -1),
    ], argv=["--steps", "3"]),
]


def run_example(showcase: Showcase, cwd: Path) -> gradscope.Trace:
    """Run examples/NAME.py as __main__ under gradscope.trace(), in `cwd`, and return its trace."""
    path = str(EXAMPLES / f"{showcase.example}.py")
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = [path, *showcase.argv]
    os.chdir(cwd)
    try:
        with gradscope.trace() as t, contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return t.trace


def build(out: Path) -> list[Path]:
    """Write OUT/gallery/* and OUT/gallery.md; return the files written."""
    gallery = out / "gallery"
    if gallery.exists():
        shutil.rmtree(gallery)  # from scratch: no stale pictures survive
    gallery.mkdir(parents=True)
    written: list[Path] = []
    md = [
        "# Gallery",
        "",
        "Graphs gradscope drew for the showcases in [`examples/`](../examples).",
        "Regenerate everything with `python docs/build_gallery.py`.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for sc in SHOWCASES:
            trace = run_example(sc, Path(tmp))
            md += [f"## {sc.title}", "", f"`python examples/{sc.example}.py`", ""]
            for pic in sc.pictures:
                target = gallery / pic.file
                if pic.file.endswith(".png"):
                    # a picture the example drew itself (skipped when matplotlib is missing)
                    made = Path(tmp) / pic.file
                    if not made.exists():
                        continue
                    shutil.copyfile(made, target)
                else:
                    trace.render(target, pass_index=pic.pass_index)
                written.append(target)
                md += [f"![{pic.file}](gallery/{pic.file})", "", pic.caption, ""]
    (out / "gallery.md").write_text("\n".join(md).rstrip() + "\n")
    written.append(out / "gallery.md")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write gallery/ and gallery.md into (default: docs/)")
    args = parser.parse_args(argv)
    for path in build(args.out):
        print(path)


if __name__ == "__main__":
    main()
