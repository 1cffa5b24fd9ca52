"""The explorer in report.html: page size, load time, and layout times in the browser.

    python bench/bench_explorer.py            # 12-block GPT-shaped decoder, ResNet-50, showcases
    python bench/bench_explorer.py --shots out/   # also screenshots of the default views

For each report: its size, the load event's time in headless Chromium (real time, no
virtual clock), the layout time of the default view, of one block expanded
(`#expand=blocks.3`, or `layer2.1` for ResNet-50) and of everything expanded
(`#expand=*`), each read from the page's own measurement (performance.now around
Graphviz-in-WebAssembly's layout), each in a fresh browser.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]
from bench_views import gpt2_small, resnet  # noqa: E402

import gradscope  # noqa: E402
from gradscope.render.html import trace_to_html  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(page: Path, fragment: str, wait_ms: int, shot: Path | None = None) -> dict[str, str]:
    """The explorer's data-gs-* attributes after `wait_ms` of real time."""
    with tempfile.TemporaryDirectory() as profile:
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--user-data-dir={profile}", f"--timeout={wait_ms}", "--window-size=1400,1000"]
        args += [f"--screenshot={shot}", "--hide-scrollbars"] if shot else ["--dump-dom"]
        r = subprocess.run(args + [page.as_uri() + fragment], capture_output=True, text=True, timeout=600)
    if shot:
        return {}
    found = dict(re.findall(r'data-gs-(load-ms|resources|boxes|layout-ms|state)="([^"]*)"', r.stdout))
    return found


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
        "resnet-50": (resnet, "layer2.1"),
        "logistic_regression": (lambda: showcase("logistic_regression"), None),
        "tiny_gpt": (lambda: showcase("tiny_gpt"), "blocks.1"),
    }
    out = Path(tempfile.mkdtemp())
    for name, (make, block) in cases.items():
        if args.only and name not in args.only:
            continue
        page = out / f"{name}.html"
        made = make()
        if isinstance(made, Path):
            page = made
        else:
            page.write_text(trace_to_html(getattr(made, "trace", made)), encoding="utf-8")
        size = page.stat().st_size / 1e6
        default = open_page(page, "", 8000)
        line = (f"{name:22} {size:6.2f} MB  load {default.get('load-ms')} ms  resources {default.get('resources')}  "
                f"default {default.get('boxes')} boxes in {default.get('layout-ms')} ms")
        if block:
            one = open_page(page, f"#graph=1&expand={block}", 8000)
            line += f"  | expand {block}: {one.get('boxes')} boxes in {one.get('layout-ms')} ms"
            full = open_page(page, "#graph=1&expand=*", 120000)
            line += f"  | expand all: {full.get('boxes')} boxes in {full.get('layout-ms')} ms ({full.get('state')})"
        print(line, flush=True)
        if args.shots:
            args.shots.mkdir(parents=True, exist_ok=True)
            open_page(page, "#graph=1", 8000, args.shots / f"{name}.png")


if __name__ == "__main__":
    main()
