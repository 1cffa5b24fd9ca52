"""Write docs/explorer.png: the explorer on `gradscope demo tiny_gpt`, block 1 opened and
its attention op selected (headless Chromium over the DevTools pipe, tests/cdp.py).

    python scripts/explorer_screenshot.py [out.png]
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from cdp import Browser  # noqa: E402

import gradscope  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "explorer.png"
    folder = Path(tempfile.mkdtemp()) / "tiny_gpt"
    subprocess.run([str(Path(sys.executable).with_name("gradscope")), "demo", "-o", str(folder), "tiny_gpt"],
                   check=True, capture_output=True)
    graph = gradscope.load(folder / "trace.json").passes[0].graph
    node = next(n for n in graph.nodes if n.op == "scaled_dot_product_attention" and n.module == "blocks.1.attn")
    b = Browser("/usr/bin/chromium", size=(1280, 900))
    try:
        b.open((folder / "report.html").as_uri() + f"#graph=1&expand=blocks.1&select={node.id}")
        b.wait("document.querySelector('.gs-x').getAttribute('data-gs-state') === 'ready'", 60)
        r = b.evaluate("(function () { var r = document.querySelector('.gs-x').getBoundingClientRect();"
                       " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()")
        shot = b.send("Page.captureScreenshot", session=True, format="png",
                      clip={"x": r[0], "y": r[1], "width": r[2], "height": min(r[3], 760), "scale": 1})
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        b.close()
    print(f"wrote {out} ({out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
