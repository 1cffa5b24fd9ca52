"""report.html in real headless Chromium: it loads offline, with no console errors, and
the page shows the graph. Skipped only when Chromium is missing outside CI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cli import LESSON, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (apt-get install chromium); CI always runs this test",
                allow_module_level=True)


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open `page` in headless Chromium with a fresh profile and no network chatter."""
    assert CHROMIUM is not None, "CI must have chromium: .ci/run installs it"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of the lesson traced by the real command."""
    from conftest import run_gradscope

    folder = tmp_path_factory.mktemp("browser")
    write(folder, "lesson.py", LESSON)
    r = run_gradscope("trace", "-o", "out", "lesson.py", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "out" / "report.html"


def console_errors(log: str) -> list[str]:
    """Console lines in Chromium's log. The report's one script (pan and zoom) logs nothing,
    so any console message (an uncaught error, a console.error, a resource that failed) is a fault."""
    return [line for line in log.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]


def test_report_loads_without_errors_and_shows_the_graph(report, tmp_path):
    r = chromium(report, tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_errors(r.stderr) == []
    dom = r.stdout
    assert "<svg" in dom and 'class="gs-graph"' in dom
    texts = set(re.findall(r"<text[^>]*>([^<]*)</text>", dom))
    assert {"w", "x", "a", "b", "y", "w.grad = 2 + 3 = 5", "grad 2", "grad 3"} <= texts
    assert "lesson.py:6" in dom


def test_report_screenshot_is_a_real_picture(report, tmp_path):
    shot = tmp_path / "report.png"
    r = chromium(report, tmp_path / "profile", "--hide-scrollbars", "--window-size=1200,1600",
                 f"--screenshot={shot}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_errors(r.stderr) == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a page with a graph, not a blank one
