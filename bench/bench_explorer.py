"""The explorer in report.html: page size, load time, and layout times in the browser.

    python bench/bench_explorer.py                  # 12-block GPT-shaped decoder, ResNet-50, showcases
    python bench/bench_explorer.py --shots out/     # also screenshots (default view, a block opened)

Real time in headless Chromium driven over the DevTools pipe (tests/cdp.py): the load
event's time (Navigation Timing), the default view's layout, a click on one block's box
until its expansion is drawn (the ×N fold split first, if the blocks are folded), and a
click on "expand all" until everything is drawn. "layout" is the page's own measure of
Graphviz-in-WebAssembly's layout; "wall" adds building the DOT and inserting the SVG.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]
from bench_views import gpt2_small, resnet  # noqa: E402
from cdp import Browser  # noqa: E402

from gradscope.render.html import trace_to_html  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
X = "document.querySelector('.gs-x')"
READY = f"{X}.getAttribute('data-gs-state') === 'ready'"


def click(b: Browser, selector: str, timeout: float = 600) -> tuple[float, str, str]:
    """Click what `selector` finds in the explorer; wall seconds until it is drawn, the
    layout's own milliseconds, and how many boxes are drawn."""
    t0 = time.perf_counter()
    b.evaluate(f"{X}.querySelector({selector!r}).dispatchEvent(new MouseEvent('click', {{bubbles: true}}))")
    b.wait(READY, timeout)
    wall = time.perf_counter() - t0
    return wall, b.evaluate(f"{X}.getAttribute('data-gs-layout-ms')"), b.evaluate(f"{X}.getAttribute('data-gs-boxes')")


def box_of(b: Browser, path: str, prefix: bool = False) -> str | None:
    """The selector of the box whose path (its label's first word) is `path` (or, with
    `prefix`, the folded box whose path starts with it)."""
    found = b.evaluate(f"""(function () {{
      var gs = {X}.querySelectorAll({'g.node[id^="x_f"]' if prefix else 'g.node[id^="x_b"]'!r});
      for (var i = 0; i < gs.length; i++) {{
        var t = gs[i].querySelector('text');
        var first = t && t.textContent.replace(/\u00a0/g, ' ').split(' ')[0];
        if (first && ({'true' if prefix else 'false'} ? first.indexOf({path!r}) === 0 : first === {path!r})) return gs[i].id;
      }}
      return null; }})()""")
    return f'[id="{found}"]' if found else None


def gpt_blocks(blocks: int):
    """A deep, narrow GPT-shaped decoder: the node count of a big model, small tensors."""
    import torch
    from realmodels import GPT, gpt_step

    import gradscope
    torch.manual_seed(0)
    with gradscope.trace() as t:
        gpt_step(GPT(vocab=50, d=16, heads=2, blocks=blocks, context=8))
    print(f"gpt-{blocks}-blocks: {len(t.trace.passes[0].graph.nodes)} nodes", flush=True)
    return t


def measure(page: Path, block: str | None, shots: Path | None, name: str) -> str:
    b = Browser(CHROMIUM)
    try:
        b.open(page.as_uri())
        b.wait(READY, 120)
        load = b.evaluate("document.documentElement.getAttribute('data-gs-load-ms')")
        res = b.evaluate("performance.getEntriesByType('resource').length")
        line = (f"{name:20} {page.stat().st_size / 1e6:5.2f} MB  load event {load} ms  requests {res}  default "
                f"{b.evaluate(X + '.getAttribute(' + repr('data-gs-boxes') + ')')} boxes, layout "
                f"{b.evaluate(X + '.getAttribute(' + repr('data-gs-layout-ms') + ')')} ms")
        if shots:
            b.screenshot(str(shots / f"{name}.png"))
        if block:
            # the ×N fold holding the block (a flat Sequential's blocks: the first fold)
            fold = box_of(b, block.rsplit(".", 1)[0] + "." if "." in block else "", prefix=True)
            if fold and box_of(b, block) is None:
                wall, ms, n = click(b, fold)
                line += f" | split ×N: {wall * 1000:.0f} ms wall ({n} boxes)"
            target = box_of(b, block)
            if target:
                wall, ms, n = click(b, target)
                line += f" | open {block}: {wall * 1000:.0f} ms wall, layout {ms} ms ({n} boxes)"
                if shots:
                    b.screenshot(str(shots / f"{name}-{block}.png"))
            wall, ms, n = click(b, '[data-gs-x="all"]')
            line += f" | expand all: {wall:.1f} s wall, layout {int(ms) / 1000:.1f} s ({n} boxes)"
        return line
    finally:
        b.close()


def showcase(name: str) -> Path:
    """The showcase's report.html as `gradscope demo` writes it."""
    out = Path(tempfile.mkdtemp()) / name
    subprocess.run([str(Path(sys.executable).with_name("gradscope")), "demo", "-o", str(out), name], check=True,
                   capture_output=True, timeout=600)
    return out / "report.html"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=Path)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    cases = {
        "gpt-12-blocks": (gpt2_small, "blocks.3"),
        "resnet-50": (resnet, "5"),  # bench/models.py's ResNet-50 is one Sequential: 4, 5, ... its blocks
        "gpt-110-blocks": (lambda: gpt_blocks(110), "blocks.3"),  # about 5,000 nodes
        "logistic_regression": (lambda: showcase("logistic_regression"), None),
        "tiny_gpt": (lambda: showcase("tiny_gpt"), "blocks.1"),
    }
    out = Path(tempfile.mkdtemp())
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    for name, (make, block) in cases.items():
        if args.only and name not in args.only:
            continue
        made = make()
        page = out / f"{name}.html"
        if isinstance(made, Path):
            page = made
        else:
            page.write_text(trace_to_html(getattr(made, "trace", made)), encoding="utf-8")
        print(measure(page, block, args.shots, name), flush=True)


if __name__ == "__main__":
    main()
