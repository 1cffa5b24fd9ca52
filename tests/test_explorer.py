"""The explorer in report.html, in real headless Chromium: opened at URL fragments, it
shows the default (collapsed, folded) view, opens a module, selects a node with its
numbers, finds nodes by `file:line`, follows a diagnostic's link; no console errors, no
network requests, and a crafted name stays text."""

from __future__ import annotations

import html as htmlmod
import re
from pathlib import Path

import pytest
import torch
from realmodels import GPT, gpt_step
from cdp import Browser
from test_report_browser import CHROMIUM

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


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, driven over the DevTools pipe: it waits, in real
    time, until every explorer has drawn (a virtual clock does not wait for WebAssembly's
    compilation, which runs off the page's thread)."""
    assert CHROMIUM is not None
    b = Browser(CHROMIUM, size=(1200, 900))
    yield b
    b.close()


READY = "Array.prototype.every.call(document.querySelectorAll('.gs-x'), function (x) {" \
        " return x.getAttribute('data-gs-state') === 'ready'; })"


def open_at(browser: Browser, page: Path, fragment: str = "") -> str:
    """The DOM once the explorer has drawn the state `fragment` names."""
    browser.events.clear()
    browser.open("about:blank")
    browser.open(page.as_uri() + fragment)
    browser.wait(READY + " && document.documentElement.hasAttribute('data-gs-resources')", 60)
    assert browser.faults() == [], browser.faults()
    return browser.evaluate("document.documentElement.outerHTML")


def settle(browser: Browser, condition: str) -> None:
    """Wait until `condition` holds and the explorers have drawn; no fault on the way."""
    browser.wait(f"({condition}) && {READY}", 60)
    assert browser.faults() == [], browser.faults()


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


def test_default_view_is_collapsed_and_folded_and_loads_nothing(gpt, browser):
    trace, _, page, _ = gpt
    dom = open_at(browser, page)
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


def test_expand_opens_a_module_and_splits_the_fold(gpt, browser):
    trace, _, page, _ = gpt
    part = explorer(open_at(browser, page, "#graph=1&expand=blocks.2"))
    g = trace.passes[0].graph
    block2 = next(i for i, c in enumerate(g.module_calls) if c.path == "blocks.2")
    assert f'id="x_c{block2}" class="cluster"' in part  # blocks.2 is an open frame
    text = htmlmod.unescape(part).replace("\xa0", " ")
    assert "blocks.2  Block" in text and "×4" not in text
    for other in ("blocks.0", "blocks.1", "blocks.3"):  # the other blocks: a box each
        i = next(k for k, c in enumerate(g.module_calls) if c.path == other)
        assert f'id="x_b{i}" class="node"' in part
    assert "blocks.2.attn  Attention" in text  # opened to the default depth inside


def test_select_shows_the_nodes_numbers_and_source_line(gpt, browser):
    trace, node, page, _ = gpt
    part = explorer(open_at(browser, page, f"#graph=1&select={node.id}"))
    panel = details(part)
    norm = float(f"{float(f'{node.grad.norm:.6g}'):.4g}")  # the panel's 4 significant digits
    assert f"‖·‖ {norm:g}" in panel.replace("‖·‖  ", "‖·‖ ")
    assert f"{node.source.short}" in panel and "scaled_dot_product_attention(q, k, v" in panel
    assert "blocks.1.attn" in panel and node.grad_fn in panel
    k = next(i for i, n in enumerate(trace.passes[0].graph.nodes) if n.id == node.id)
    assert re.search(rf'<g id="x_n{k}" class="node[^"]* gs-x-sel"', part)  # drawn, and marked selected


def test_search_by_file_and_line_finds_the_nodes(gpt, browser):
    trace, node, page, _ = gpt
    where = node.source.short  # tiny_gpt.py:29, the attention line of every block
    part = explorer(open_at(browser, page, f"#graph=1&search={where}"))
    hits = [n for n in trace.passes[0].graph.nodes if n.source is not None and n.source.short == where]
    assert len(hits) == 4
    assert f"4 matches for {where}" in htmlmod.unescape(part)
    assert len(re.findall(r'class="node gs-x-(?:mark|sel)', part)) == 4  # every block opened to show its hit


def test_a_diagnostic_link_selects_its_node(gpt, browser):
    """The `explore` link in the diagnostics list, clicked."""
    _, _, page, node = gpt
    open_at(browser, page)
    href = browser.evaluate("document.querySelector('a.gs-explore').getAttribute('href')")
    assert href.startswith(f"#graph=1&select={node.id}")
    browser.evaluate("document.querySelector('a.gs-explore').click()")
    settle(browser, "document.querySelector('.gs-x .gs-x-sel')")
    got = browser.evaluate("(function () { var x = document.querySelector('.gs-x');"
                           " return [x.querySelector('.gs-x-sel').id, x.querySelector('.gs-x-details').textContent,"
                           " location.hash]; })()")
    k = next(i for i, n in enumerate(gpt[0].passes[0].graph.nodes) if n.id == node.id)
    assert got[0] == f"x_n{k}" and got[2] == href
    assert node.op in got[1] and node.source.short in got[1] and "head · Linear" in got[1]


def test_a_crafted_name_stays_text(gpt, browser, tmp_path):
    trace, _, _, _ = gpt
    evil = '</script><img src=x onerror="document.title=1">"]; x [label="pwn\\'
    leaf = trace.passes[0].graph.leaves[0]
    name, leaf.name = leaf.name, evil
    try:
        page = tmp_path / "evil.html"
        page.write_text(trace_to_html(trace), encoding="utf-8")
    finally:
        leaf.name = name
    dom = open_at(browser, page, f"#graph=1&select={leaf.id}")
    part = explorer(dom)
    assert "<img" not in part and "&lt;img src=x" in part  # shown, as text, on the graph and in the panel
    assert evil[:20] in details(part)


def test_clicks_split_a_fold_open_and_close_a_module_and_keys_reset(gpt, browser):
    trace, _, page, _ = gpt
    g = trace.passes[0].graph
    b1 = next(i for i, c in enumerate(g.module_calls) if c.path == "blocks.1")
    open_at(browser, page)
    x = "document.querySelector('.gs-x')"

    def has(sel: str) -> str:
        return f"!!{x}.querySelector({sel!r})"

    def shown() -> dict:
        return browser.evaluate(f"({{boxes: {x}.querySelectorAll('g.node[id^=x_b], g.node[id^=x_f]').length,"
                                f" clusters: {x}.querySelectorAll('g.cluster').length, hash: location.hash}})")

    def click(sel: str) -> None:
        browser.evaluate(f"{x}.querySelector({sel!r}).dispatchEvent(new MouseEvent('click', {{bubbles: true}}))")

    default = shown()
    click('[id="x_f0"]')  # the ×4 fold splits into its calls
    settle(browser, has(f'[id="x_b{b1}"]'))
    split = shown()
    click(f'[id="x_b{b1}"]')  # blocks.1 opens
    settle(browser, has(f'[id="x_c{b1}"]'))
    opened = shown()
    click(f'[id="x_c{b1}"] > text')  # its frame's title closes it
    settle(browser, "!" + has(f'[id="x_c{b1}"]'))
    closed = shown()
    browser.evaluate(f"{x}.dispatchEvent(new KeyboardEvent('keydown', {{key: '0', bubbles: true}}))")  # the default
    settle(browser, has('[id="x_f0"]'))
    reset = shown()
    click('[data-gs-x="all"]')
    settle(browser, has(f'[id="x_c{b1}"]') + " && !" + has('g[id^="x_b"]'))
    everything = shown()
    assert default["boxes"] == 1  # the ×4 fold
    assert split["boxes"] == 4  # its four calls, a box each
    assert opened["boxes"] == 3 and "expand=blocks.1" in opened["hash"]  # the state went into the URL
    assert opened["clusters"] > split["clusters"]
    assert closed["boxes"] == 4 and closed["clusters"] == split["clusters"]
    assert reset["boxes"] == 1
    assert everything["boxes"] == 0 and everything["clusters"] == len([c for c in g.module_calls if c.path])


def test_the_policy_lets_the_pages_own_scripts_compile_webassembly_and_nothing_else(gpt):
    trace = gpt[0]
    page = trace_to_html(trace)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    script_src = re.search(r"script-src ([^;]*);", policy).group(1).split()
    assert "'wasm-unsafe-eval'" in script_src and "'unsafe-eval'" not in script_src
    assert "'unsafe-inline'" not in script_src and len([s for s in script_src if s.startswith("'sha256-")]) == 4
    assert "default-src 'none'" in policy


class _Residual(torch.nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c)
        self.conv2, self.bn2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def test_it_opens_where_the_graph_starts_also_laid_out_askew(browser, tmp_path):
    """A ResNet's graph lays out as a staircase from the top right to the bottom left, far
    wider than the frame: the explorer opens on its first node, not on the empty top left."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), *[_Residual(8) for _ in range(6)],
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with gradscope.trace() as t:
        torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 8, 8)), torch.tensor([1, 2])).backward()
    page = tmp_path / "report.html"
    page.write_text(trace_to_html(t.trace), encoding="utf-8")
    open_at(browser, page, "#graph=1")
    seen = browser.evaluate("""(function () {
      var x = document.querySelector('.gs-x'), view = x.querySelector('.gs-x-view');
      var v = view.getBoundingClientRect(), nodes = view.querySelectorAll('g.node'), inside = [], top = null;
      for (var k = 0; k < nodes.length; k++) {
        var r = nodes[k].getBoundingClientRect();
        if (!top || r.top < top.r.top) top = {id: nodes[k].id, r: r};
        if (r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom) inside.push(nodes[k].id);
      }
      return {inside: inside, top: top.id, wide: view.scrollWidth > 2 * view.clientWidth};
    })()""")
    assert seen["wide"]  # (the case: a graph far wider than its frame)
    assert seen["top"] in seen["inside"] and len(seen["inside"]) >= 5, seen
