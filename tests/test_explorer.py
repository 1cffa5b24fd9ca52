"""The explorer in report.html, in real headless Chromium: opened at URL fragments, it
shows the default (collapsed, folded) view, opens a module, selects a node with its
numbers, finds nodes by `file:line`, follows a diagnostic's link; no console errors, no
network requests, and a crafted name stays text."""

from __future__ import annotations

import html as htmlmod
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from realmodels import GPT, gpt_step
from test_report_browser import CHROMIUM, chromium, console_errors

import gradscope
from gradscope.model import Diagnostic
from gradscope.render.explorer.data import graph_data
from gradscope.render.html import trace_to_html


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    """A 4-block GPT's training step, its report, and a node deep inside block 1."""
    torch.manual_seed(0)
    with gradscope.trace() as t:
        gpt_step(GPT(vocab=50, d=16, heads=2, blocks=4, context=8))
    trace = t.trace
    g = trace.passes[0].graph
    call = next(i for i, c in enumerate(g.module_calls) if c.path == "blocks.1.attn")
    node = next(g.node(n) for n in g.module_calls[call].nodes if g.node(n).op == "scaled_dot_product_attention")
    head = next(g.node(n) for c in g.module_calls if c.path == "head" for n in c.nodes)
    # (a diagnostic inside a block would keep the blocks from folding: render's rule)
    trace.diagnostics.append(Diagnostic(code="GS999", severity="warning", title="a test diagnostic",
                                        message="points at the head", nodes=[head.id], pass_index=0))
    page = tmp_path_factory.mktemp("explorer") / "report.html"
    page.write_text(trace_to_html(trace), encoding="utf-8")
    return trace, node, page, head


def open_at(page: Path, fragment: str, tmp_path: Path) -> str:
    """The DOM once the explorer has drawn the state `fragment` names (virtual time: the
    page's timers run to completion before the DOM is read)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=20000", "--dump-dom", page.as_uri() + fragment]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_errors(r.stderr) == [], console_errors(r.stderr)
    assert "Failed to load resource" not in r.stderr and "net::" not in r.stderr  # no request left the page
    return r.stdout


def explorer(dom: str) -> str:
    found = re.search(r'<div class="gs-x"[^>]*data-gs-graph="1".*?<script type="application/json"', dom, flags=re.S)
    assert found, dom[-3000:]
    return found.group(0)


def attr(dom: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', dom)
    assert found, name
    return found.group(1)


def details(part: str) -> str:
    panel = re.search(r'<div class="gs-x-details">(.*?)</div></div>', part, flags=re.S).group(1)
    return htmlmod.unescape(re.sub(r"<[^>]+>", " ", panel))


def test_default_view_is_collapsed_and_folded_and_loads_nothing(gpt, tmp_path):
    trace, _, page, _ = gpt
    dom = open_at(page, "", tmp_path)
    part = explorer(dom)
    assert attr(part, "data-gs-state") == "ready"
    # as render(depth="auto"): the four blocks one ×4 box; tok, pos, ln_f, head drawn open
    assert "blocks.0 – 3  ×4" in htmlmod.unescape(part).replace("\xa0", " ")
    data = graph_data(1, trace.passes[:1], trace.diagnostics)
    inside = {n["i"] for n in data["nodes"] if n.get("c") in {3, 13, 23, 33}
              or any(c in {3, 13, 23, 33} for c in _chain(data, n.get("c")))}
    assert int(attr(part, "data-gs-boxes")) == len(data["nodes"]) - len(inside) + 1
    assert len(re.findall(r'<g id="x_[nfb]\d+" class="node', part)) == int(attr(part, "data-gs-boxes"))
    # everything is inline: the page fetched nothing (a page-side count, and no request in the log)
    assert attr(dom, "data-gs-resources") == "0"
    assert int(attr(dom, "data-gs-load-ms")) >= 0


def _chain(data: dict, c) -> list[int]:
    out = []
    while c is not None and c >= 0:
        out.append(c)
        c = data["calls"][c][3]
    return out


def test_expand_opens_a_module_and_splits_the_fold(gpt, tmp_path):
    trace, _, page, _ = gpt
    part = explorer(open_at(page, "#graph=1&expand=blocks.2", tmp_path))
    g = trace.passes[0].graph
    block2 = next(i for i, c in enumerate(g.module_calls) if c.path == "blocks.2")
    assert f'id="x_c{block2}" class="cluster"' in part  # blocks.2 is an open frame
    text = htmlmod.unescape(part).replace("\xa0", " ")
    assert "blocks.2  Block" in text and "×4" not in text
    for other in ("blocks.0", "blocks.1", "blocks.3"):  # the other blocks: a box each
        i = next(k for k, c in enumerate(g.module_calls) if c.path == other)
        assert f'id="x_b{i}" class="node"' in part
    assert "blocks.2.attn  Attention" in text  # opened to the default depth inside


def test_select_shows_the_nodes_numbers_and_source_line(gpt, tmp_path):
    trace, node, page, _ = gpt
    part = explorer(open_at(page, f"#graph=1&select={node.id}", tmp_path))
    panel = details(part)
    norm = float(f"{float(f'{node.grad.norm:.6g}'):.4g}")  # the panel's 4 significant digits
    assert f"‖·‖ {norm:g}" in panel.replace("‖·‖  ", "‖·‖ ")
    assert f"{node.source.short}" in panel and "scaled_dot_product_attention(q, k, v" in panel
    assert "blocks.1.attn" in panel and node.grad_fn in panel
    k = next(i for i, n in enumerate(trace.passes[0].graph.nodes) if n.id == node.id)
    assert re.search(rf'<g id="x_n{k}" class="node[^"]* gs-x-sel"', part)  # drawn, and marked selected


def test_search_by_file_and_line_finds_the_nodes(gpt, tmp_path):
    trace, node, page, _ = gpt
    where = node.source.short  # tiny_gpt.py:29, the attention line of every block
    part = explorer(open_at(page, f"#graph=1&search={where}", tmp_path))
    hits = [n for n in trace.passes[0].graph.nodes if n.source is not None and n.source.short == where]
    assert len(hits) == 4
    assert f"4 matches for {where}" in htmlmod.unescape(part)
    assert len(re.findall(r'class="node gs-x-(?:mark|sel)', part)) == 4  # every block opened to show its hit


def test_a_diagnostic_link_selects_its_node(gpt, tmp_path):
    """The link in the diagnostics list, clicked in the page (a probe page drives it)."""
    _, _, page, node = gpt
    probe = tmp_path / "probe.html"
    probe.write_text("""<!DOCTYPE html><html><body><iframe id="r" src="%s" style="width:1200px;height:900px"></iframe>
<pre id="out"></pre><script>
function start() {
  var frame = document.getElementById("r"), doc = frame.contentDocument, win = frame.contentWindow;
  if (!win.gradscopeExplorers) { setTimeout(start, 50); return; }  // (the report still loading)
  win.gradscopeExplorers.ready.then(function () {
    var a = doc.querySelector("a.gs-explore");
    a.click();
    (function wait(k) {
      var x = doc.querySelector(".gs-x"), sel = x.querySelector(".gs-x-sel");
      if ((!sel || x.getAttribute("data-gs-state") !== "ready") && k < 100) { setTimeout(function () { wait(k + 1); }, 100); return; }
      document.getElementById("out").textContent = JSON.stringify({href: a.getAttribute("href"), hash: win.location.hash,
        selected: sel && sel.id, panel: x.querySelector(".gs-x-details").textContent});
    })(0);
  });
}
start();
</script></body></html>""" % page.as_uri(), encoding="utf-8")
    r = chromium(probe, tmp_path / "profile", "--allow-file-access-from-files", "--virtual-time-budget=30000",
                 "--dump-dom")
    assert console_errors(r.stderr) == [], console_errors(r.stderr)
    got = json.loads(htmlmod.unescape(re.search(r'<pre id="out">(.*?)</pre>', r.stdout, flags=re.S).group(1)))
    assert got["href"].startswith(f"#graph=1&select={node.id}")
    assert got["selected"] and got["selected"].startswith("x_n")
    assert node.op in got["panel"] and node.source.short in got["panel"] and "head · Linear" in got["panel"]


def test_a_crafted_name_stays_text(gpt, tmp_path):
    trace, _, _, _ = gpt
    evil = '<img src=x onerror="document.title=1">"]; x [label="pwn\\'
    leaf = trace.passes[0].graph.leaves[0]
    name, leaf.name = leaf.name, evil
    try:
        page = tmp_path / "evil.html"
        page.write_text(trace_to_html(trace), encoding="utf-8")
    finally:
        leaf.name = name
    dom = open_at(page, f"#graph=1&select={leaf.id}", tmp_path)
    part = explorer(dom)
    assert "<img" not in part and "&lt;img src=x" in part  # shown, as text, on the graph and in the panel
    assert evil[:20] in details(part)


CLICKS = """<!DOCTYPE html><html><body><iframe id="r" src="%(src)s" style="width:1200px;height:900px"></iframe>
<pre id="out"></pre><script>
function start() {
  var frame = document.getElementById("r"), doc = frame.contentDocument, win = frame.contentWindow;
  if (!win.gradscopeExplorers) { setTimeout(start, 50); return; }  // (the report still loading)
  var x = doc.querySelector(".gs-x"), seen = [];
  function has(sel) { return !!x.querySelector(sel); }
  function click(el) { el.dispatchEvent(new win.MouseEvent("click", {bubbles: true})); }
  function key(k) { x.dispatchEvent(new win.KeyboardEvent("keydown", {key: k, bubbles: true})); }
  function until(cond, then, k) {
    k = k || 0;
    if (cond() && x.getAttribute("data-gs-state") === "ready") return then();
    if (k > 200) { seen.push("timed out"); return finish(); }
    setTimeout(function () { until(cond, then, k + 1); }, 50);
  }
  function finish() { document.getElementById("out").textContent = JSON.stringify(seen); }
  document.getElementById("out").textContent = '["started"]';
  var steps = [
    function () { click(x.querySelector('[id="x_f0"]')); return function () { return has('[id="x_b%(b1)d"]'); }; },
    function () { click(x.querySelector('[id="x_b%(b1)d"]')); return function () { return has('[id="x_c%(b1)d"]'); }; },
    function () { click(x.querySelector('[id="x_c%(b1)d"] > text')); return function () { return !has('[id="x_c%(b1)d"]'); }; },
    function () { key("0"); return function () { return has('[id="x_f0"]'); }; },
    function () { click(x.querySelector('[data-gs-x="all"]')); return function () { return has('[id="x_c%(b1)d"]') && !has('g[id^="x_b"]'); }; },
  ];
  function run(i) {
    seen.push({boxes: x.querySelectorAll('g.node[id^="x_b"], g.node[id^="x_f"]').length,
               clusters: x.querySelectorAll("g.cluster").length, hash: win.location.hash});
    if (i === steps.length) return finish();
    var cond;
    try { cond = steps[i](); } catch (e) { seen.push("step " + i + ": " + e); return finish(); }
    until(cond, function () { run(i + 1); });
  }
  win.gradscopeExplorers.ready.then(function () { run(0); });
}
start();
</script></body></html>"""


def test_clicks_split_a_fold_open_and_close_a_module_and_keys_reset(gpt, tmp_path):
    trace, _, page, _ = gpt
    g = trace.passes[0].graph
    block1 = next(i for i, c in enumerate(g.module_calls) if c.path == "blocks.1")
    probe = tmp_path / "clicks.html"
    probe.write_text(CLICKS % {"src": page.as_uri(), "b1": block1}, encoding="utf-8")
    r = chromium(probe, tmp_path / "profile", "--allow-file-access-from-files", "--virtual-time-budget=60000",
                 "--dump-dom")
    assert console_errors(r.stderr) == [], console_errors(r.stderr)
    seen = json.loads(htmlmod.unescape(re.search(r'<pre id="out">(.*?)</pre>', r.stdout, flags=re.S).group(1)))
    assert "timed out" not in seen, seen
    default, split, opened, closed, reset, everything = seen
    assert default["boxes"] == 1  # the ×4 fold
    assert split["boxes"] == 4  # its four calls, a box each
    assert opened["boxes"] == 3 and "expand=blocks.1" in opened["hash"]  # the state went into the URL
    assert opened["clusters"] > split["clusters"]
    assert closed["boxes"] == 4 and closed["clusters"] == split["clusters"]
    assert reset["boxes"] == 1
    assert everything["boxes"] == 0 and everything["clusters"] == len([c for c in g.module_calls if c.path])
