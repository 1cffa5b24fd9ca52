"""gradscope in Jupyter, in a real notebook executed by nbclient on an IPython kernel:
cell lines named as the notebook numbers them, rich displays of passes and traces,
short text/plain, element ids unique across several reports."""

from __future__ import annotations

import re
from collections import Counter

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    "import torch\nimport gradscope",
    # cell [2]: the lesson; `a = x + w` is line 4 of the cell
    "w = torch.tensor(1.0, requires_grad=True)\nx = torch.tensor(2.0)\nwith gradscope.trace() as t:\n"
    "    a = x + w\n    b = w + 1\n    y = a * b\n    y.backward()\nprint(t.passes[0].graph.find('a').source.short)",
    "t.trace",  # [3] the report
    "t.trace",  # [4] the same report again
    "t.passes[0]",  # [5] a pass shows its graph
    # [6] a training loop's trace, saved and loaded back, shown
    "model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))\n"
    "with gradscope.trace(save='loop.json'):\n    for _ in range(60):\n"
    "        model(torch.ones(4, 8)).sum().backward()\n"
    "loaded = gradscope.load('loop.json')\nprint(len(repr(loaded.passes)))\nloaded",
    "gradscope.graph((x + w) * (w + 1))",  # [7] a graph before any backward
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[int, list]:
    """Each cell's outputs, by execution count, after running the notebook top to bottom."""
    folder = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return {cell.execution_count: cell.outputs for cell in nb.cells}


def data(outputs: list, mime: str) -> str:
    found = [o["data"][mime] for o in outputs if o.get("output_type") == "execute_result" and mime in o["data"]]
    assert len(found) == 1, outputs
    return found[0]


def stdout(outputs: list) -> str:
    return "".join(o["text"] for o in outputs if o.get("name") == "stdout")


def test_lines_in_a_cell_are_named_by_the_cell(outputs):
    assert stdout(outputs[2]) == "cell [2], line 4\n"
    report = data(outputs[3], "text/html")
    assert "cell [2], line 4" in report and "cell [2], line 7" in report  # a = x + w; y.backward()
    assert "ipykernel" not in report  # nor in tooltips


def test_a_pass_shows_its_graph_and_short_text(outputs):
    html = data(outputs[5], "text/html")
    texts = set(re.findall(r"<text[^>]*>([^<]*)</text>", html))
    assert {"w", "a", "b", "y", "w.grad = 2 + 3 = 5", "grad 2", "grad 3"} <= texts
    assert 'class="gs-frame"' in html and "pass 0 · Tensor.backward at cell [2], line 7" in html
    assert data(outputs[5], "text/plain") == "Pass(0, Tensor.backward, Graph(4 nodes, 4 edges))"  # x needs no grad


def test_a_loaded_trace_keeps_a_short_text_plain(outputs):
    assert int(stdout(outputs[6])) > 3000  # what a plain dataclass repr of the passes would store
    assert data(outputs[6], "text/plain") == "Trace(60 passes, 1 diagnostic)"  # .grad never cleared
    assert "<svg" in data(outputs[6], "text/html")


def test_several_reports_in_one_notebook_never_share_an_element_id(outputs):
    shown = [data(outputs[n], mime) for n, mime in
             [(3, "text/html"), (4, "text/html"), (5, "text/html"), (6, "text/html"), (7, "image/svg+xml")]]
    ids = [i for page in shown for i in re.findall(r'\bid="([^"]*)"', page)]
    assert len(ids) > 40 and [i for i, n in Counter(ids).items() if n > 1] == []
    for page in shown:  # and every in-page link still lands in its own report
        own = set(re.findall(r'\bid="([^"]*)"', page))
        assert set(re.findall(r'href="#([^"]*)"', page)) <= own


def test_a_graph_before_backward_shows_no_seed(outputs):
    svg = data(outputs[7], "image/svg+xml")
    texts = set(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    assert {"AddBackward0", "MulBackward0", "root (backward starts here)"} <= texts
    assert "seed" not in svg and "None" not in texts
