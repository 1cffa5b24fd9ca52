"""How report.html shows a graph, measured in real headless Chromium: at its natural size
(never shrunk), the whole of it reachable in its frame, zoom that works, links that
land, long texts that wrap.

A probe page (no CSP of its own) loads the report in a same-size iframe and writes what
it measures into its DOM, which `--dump-dom` returns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli import write
from test_report_browser import chromium, console_errors

from conftest import run_gradscope

ROOT_FILL = "#fce7f3"  # dot.STYLES["root"].fill: the root's box

# Runs in the probe page once the report has loaded in the iframe; `MEASURE` is the body
# of a function of the report's document and window returning something JSON can hold.
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="r" src="%(src)s" style="width:%(w)dpx;height:%(h)dpx;border:0"></iframe><pre id="out"></pre>
<script>
document.getElementById("r").addEventListener("load", function () {
  var doc = this.contentDocument, win = this.contentWindow, result;
  try { result = (function (doc, win) { %(measure)s })(doc, win); }
  catch (e) { result = {error: String(e)}; }
  document.getElementById("out").textContent = JSON.stringify(result);
});
</script></body></html>"""

# Helpers the measurements share: a node's box relative to its frame's scrolled content.
HELPERS = """
function frames() { return Array.prototype.slice.call(doc.querySelectorAll(".gs-frame")); }
function rootNode(svg) {
  var nodes = svg.querySelectorAll("g.node");
  for (var i = 0; i < nodes.length; i++) {
    var shape = nodes[i].querySelector("path, polygon");
    if (shape && shape.getAttribute("fill") === "%s") return nodes[i];
  }
  return null;
}
function inContent(view, el) {  // el's box in the coordinates of view's scrollable content
  var v = view.getBoundingClientRect(), b = el.getBoundingClientRect();
  return {left: b.left - v.left + view.scrollLeft, top: b.top - v.top + view.scrollTop,
          right: b.right - v.left + view.scrollLeft, bottom: b.bottom - v.top + view.scrollTop};
}
function visible(view, el) {  // el wholly inside view's visible client area
  var v = view.getBoundingClientRect(), b = el.getBoundingClientRect();
  return b.left >= v.left - 0.5 && b.top >= v.top - 0.5 &&
         b.right <= v.left + view.clientWidth + 0.5 && b.bottom <= v.top + view.clientHeight + 0.5;
}
""" % ROOT_FILL


def measure(report: Path, tmp_path: Path, script: str, size: tuple[int, int] = (1200, 1600)) -> dict:
    """Run `script` (HELPERS are in scope) against `report` opened at `size`; its result."""
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE % {"src": report.as_uri(), "w": size[0], "h": size[1],
                              "measure": HELPERS + script}, encoding="utf-8")
    r = chromium(probe, tmp_path / "profile", "--allow-file-access-from-files", "--virtual-time-budget=5000",
                 f"--window-size={size[0] + 20},{size[1] + 200}", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_errors(r.stderr) == [], console_errors(r.stderr)
    found = re.search(r'<pre id="out">(.*?)</pre>', r.stdout, flags=re.S)
    assert found and found.group(1), r.stdout[-2000:]
    result = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert "error" not in result, result
    return result


@pytest.fixture(scope="module")
def logistic(tmp_path_factory) -> Path:
    """The logistic regression showcase's report, written by the real command."""
    folder = tmp_path_factory.mktemp("logistic")
    r = run_gradscope("demo", "-o", "out", "logistic_regression", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "out" / "report.html"


WIDE = """\
import torch
ws = [torch.tensor(float(i + 1), requires_grad=True) for i in range(20)]
x = torch.tensor(2.0)
loss = torch.stack([w * x for w in ws]).sum()  # one node with 20 inputs: a wide graph
loss.backward()
"""


def test_a_graph_is_shown_at_its_natural_size_with_root_and_legend_reachable(logistic, tmp_path):
    got = measure(logistic, tmp_path, """
      var f = frames()[0], view = f.querySelector(".gs-graph"), svg = view.querySelector("svg");
      var box = svg.getBoundingClientRect(), root = rootNode(svg), r = inContent(view, root);
      var legend = Array.prototype.filter.call(svg.querySelectorAll("text"),
                     function (t) { return t.textContent === "root (backward starts here)"; })[0];
      var out = {frames: frames().length, width: box.width, height: box.height,
                 natural: [svg.width.baseVal.value, svg.height.baseVal.value],
                 root: r, content: [view.scrollWidth, view.scrollHeight],
                 rootVisible: visible(view, root), legendVisible: visible(view, legend)};
      return out;""")
    assert got["frames"] == 1
    w, h = got["natural"]
    assert w > 600 and h > 1000  # the showcase's graph: taller than the old 900 px frame
    assert abs(got["width"] - w) < 0.5 and abs(got["height"] - h) < 0.5  # 100 %, not shrunk
    root, (cw, ch) = got["root"], got["content"]
    assert 0 <= root["left"] and root["right"] <= cw and 0 <= root["top"] and root["bottom"] <= ch
    assert got["rootVisible"] and got["legendVisible"]  # in a 1600 px window nothing is cut off


def test_in_a_small_window_the_frame_scrolls_to_the_root_and_legend(logistic, tmp_path):
    got = measure(logistic, tmp_path, """
      var view = frames()[0].querySelector(".gs-graph"), svg = view.querySelector("svg");
      var root = rootNode(svg), before = visible(view, root), height = view.clientHeight;
      view.scrollTop = view.scrollHeight;
      return {before: before, after: visible(view, root), frame: height,
              width: svg.getBoundingClientRect().width, natural: svg.width.baseVal.value};""",
                  size=(800, 600))
    assert got["frame"] < 600 and not got["before"]  # a frame at most a window high...
    assert got["after"]  # ...whose end holds the root
    assert abs(got["width"] - got["natural"]) < 0.5  # still 100 % in a narrow window


def test_a_wide_graph_is_not_shrunk_and_pans_and_zooms(tmp_path):
    write(tmp_path, "wide.py", WIDE)
    assert run_gradscope("trace", "-o", "out", "wide.py", cwd=tmp_path).returncode == 0
    got = measure(tmp_path / "out" / "report.html", tmp_path, """
      var f = frames()[0], view = f.querySelector(".gs-graph"), svg = view.querySelector("svg");
      var natural = svg.width.baseVal.value, sizes = [svg.getBoundingClientRect().width];
      f.querySelector('[data-gs-zoom="in"]').click();
      sizes.push(svg.getBoundingClientRect().width);
      var r = view.getBoundingClientRect();
      var wheel = new WheelEvent("wheel", {deltaY: 100, ctrlKey: true, bubbles: true, cancelable: true,
                                           clientX: r.left + 50, clientY: r.top + 50});
      var kept = view.dispatchEvent(wheel);
      sizes.push(svg.getBoundingClientRect().width);
      f.querySelector('[data-gs-zoom="reset"]').click();
      sizes.push(svg.getBoundingClientRect().width);
      view.scrollLeft = 0;
      function pointer(type, x) {
        view.dispatchEvent(new PointerEvent(type, {pointerId: 1, button: 0, pointerType: "mouse", bubbles: true,
                                                   clientX: r.left + x, clientY: r.top + 40}));
      }
      pointer("pointerdown", 300); pointer("pointermove", 180); pointer("pointerup", 180);
      var dragged = view.scrollLeft;
      pointer("pointermove", 100);  // after the button is up, moving pans no more
      return {natural: natural, sizes: sizes, page: doc.documentElement.clientWidth, frame: view.clientWidth,
              label: f.querySelector('[data-gs-zoom="reset"]').textContent, wheelDefault: kept,
              dragged: dragged, after: view.scrollLeft};""")
    natural, sizes = got["natural"], got["sizes"]
    assert natural > got["page"] > got["frame"]  # wider than the page: it used to be squeezed to fit
    assert [round(s / natural, 3) for s in sizes] == [1.0, 1.25, 1.0, 1.0]
    assert got["label"] == "100%" and got["wheelDefault"] is False  # the wheel zoomed, the page did not scroll
    assert got["dragged"] == got["after"] == 120  # dragging 120 px to the left shows 120 px more on the right


TWICE = """\
import torch
w = torch.tensor([1.0, 2.0], requires_grad=True)
for step in range(3):
    (w * w).sum().backward()
    with torch.no_grad():
        w.sub_(0.1 * w.grad)
y = (w * 3).sum()
y.backward()
y.backward()
"""


def test_diagnostic_links_land_on_their_picture_and_long_errors_wrap(tmp_path):
    write(tmp_path, "twice.py", TWICE)
    r = run_gradscope("trace", "-o", "out", "twice.py", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    report = tmp_path / "out" / "report.html"
    got = measure(report, tmp_path, """
      // (the explorer's links, a.gs-explore, set its state: tests/test_explorer.py)
      var links = Array.prototype.map.call(doc.querySelectorAll('a[href^="#"]:not(.gs-explore)'), function (a) {
        var target = doc.getElementById(a.getAttribute("href").slice(1));
        var next = target && target.nextElementSibling;
        return {href: a.getAttribute("href"), text: a.textContent, found: !!target,
                picture: !!(next && next.classList.contains("gs-frame") && next.querySelector("svg")),
                red: !!(next && next.querySelector('[stroke="#dc2626"]'))};
      });
      var full = Array.prototype.map.call(doc.querySelectorAll("a.gs-full"), function (a) {
        return a.getAttribute("href"); });
      var error = doc.querySelector(".gs-passes .gs-error");
      return {links: links, full: full, pageWidth: doc.documentElement.scrollWidth, window: win.innerWidth,
              errorLines: error.getBoundingClientRect().height / parseFloat(win.getComputedStyle(error).lineHeight),
              codes: Array.prototype.map.call(doc.querySelectorAll(".gs-diag h3 code"),
                                              function (c) { return c.textContent; })};""",
                  size=(1000, 1400))
    diagnostic_links = [x for x in got["links"] if x["text"].startswith("pass ")]
    assert [x["href"] for x in diagnostic_links] == ["#pass-1", "#pass-4"]
    assert all(x["picture"] and x["red"] for x in diagnostic_links)  # each lands on its red picture
    assert all(x["found"] for x in got["links"]) and len(got["links"]) >= 6  # every in-page link lands
    assert got["full"] == ["pass-000.svg", "pass-001.svg", "pass-003.svg", "pass-004.svg"]
    assert all((report.parent / f).is_file() for f in got["full"])
    assert got["pageWidth"] <= got["window"]  # the 300-character error wraps: no sideways scrolling
    assert got["errorLines"] >= 3
    # the codes, and the Markdown `w` of the diagnostics' titles, are code
    assert got["codes"] == ["grad-accumulation", "w", "backward-twice"]
