"""The model is plain data (issue 14): nothing caches itself in a model object, nothing
builds one behind its constructor; the renderers keep their indexes in `render/memo.py`,
whose entries live exactly as long as their objects. Real torch, real Graphviz."""

from __future__ import annotations

import ast
import gc
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

import gradscope
from gradscope.model import Edge, Graph, Node, Trace
from gradscope.render import collapse
from gradscope.render.html import trace_to_html
from gradscope.render.loops import loops
from gradscope.render.memo import Memo, inputs_index, node_index
from gradscope.render.select import graph_groups

PACKAGE = Path(gradscope.__file__).parent


def rnn_trace(steps: int = 3) -> Trace:
    """A small model with module calls and an unrolled loop, a few training steps."""
    torch.manual_seed(0)
    cell = nn.RNNCell(3, 4)
    head = nn.Linear(4, 1)
    opt = torch.optim.SGD([*cell.parameters(), *head.parameters()], lr=0.1)
    with gradscope.trace() as t:
        for _ in range(steps):
            h = torch.zeros(1, 4)
            for x in torch.randn(8, 1, 3):
                h = cell(x, h)
            loss = head(h).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return t.trace


def field_names(obj) -> set[str]:
    return {f.name for f in fields(obj)}


def test_rendering_leaves_the_model_plain():
    trace = rnn_trace()
    page = trace_to_html(trace)
    groups = graph_groups(trace)
    graph = trace.passes[0].graph
    found = loops(graph)
    assert "gs-x" in page and groups[0].passes == [0, 1, 2]
    assert found and found[0].count == 8  # the RNN cell ran 8 times
    # nothing the renderers computed was left in the model objects
    assert set(vars(trace)) == field_names(trace)
    for p in trace.passes:
        assert set(vars(p)) == field_names(p)
        assert set(vars(p.graph)) == field_names(p.graph)
    # nodes (like edges and summaries) have slots: they cannot hold anything but their fields
    node = graph.nodes[0]
    assert not hasattr(node, "__dict__") and not hasattr(graph.edges[0], "__dict__")
    with pytest.raises(AttributeError):
        node._by_id = {}  # type: ignore[attr-defined]


def test_renderers_memos_answer_for_the_object_they_were_computed_for():
    trace = rnn_trace(steps=1)
    graph = trace.passes[0].graph
    assert loops(graph) is loops(graph)  # computed once per graph
    assert graph_groups(trace) is graph_groups(trace)
    by_id = node_index(graph)
    assert by_id == {n.id: n for n in graph.nodes} and by_id is node_index(graph)
    inputs = inputs_index(graph)
    assert inputs == {dst: [e.src for e in graph.edges if e.dst == dst] for dst in {e.dst for e in graph.edges}}
    # an equal copy is another graph: its own entry, the same answer
    twin = Graph(list(graph.nodes), list(graph.edges), graph.module_calls)
    assert twin == graph and node_index(twin) is not by_id and node_index(twin) == by_id
    # edited after a value was computed: computed again
    extra = Node("extra", "leaf", "z", "AccumulateGrad")
    graph.nodes.append(extra)
    graph.edges.append(Edge("extra", graph.roots[0].id, 9))
    assert node_index(graph)["extra"] is extra and "extra" in inputs_index(graph)[graph.roots[0].id]
    assert graph.node("extra") is extra


def test_a_memo_entry_dies_with_its_object():
    memo: Memo[int] = Memo()
    calls = []

    def compute(value: int) -> int:
        calls.append(value)
        return value

    graphs = [Graph([Node(f"n{k}", "leaf", "x", "AccumulateGrad")]) for k in range(50)]
    for k, g in enumerate(graphs):
        assert memo.get(g, 1, lambda k=k: compute(k)) == k
    assert len(memo) == 50 and len(calls) == 50
    assert memo.get(graphs[7], 1, lambda: compute(-1)) == 7 and len(calls) == 50  # kept
    assert memo.get(graphs[7], 2, lambda: compute(-7)) == -7  # another stamp: computed again
    del graphs, g
    gc.collect()
    assert len(memo) == 0
    # new objects (CPython may give them the old ids) get their own values, never the dead ones'
    fresh = [Graph() for _ in range(50)]
    assert [memo.get(g, 1, lambda k=k: compute(100 + k)) for k, g in enumerate(fresh)] == list(range(100, 150))


def test_graph_node_scans_and_reports_a_missing_id():
    graph = Graph([Node("a", "leaf", "w", "AccumulateGrad"), Node("b", "op", "y", "MulBackward0")])
    assert graph.node("b").name == "y"
    graph.nodes[1] = Node("b", "op", "z", "AddBackward0")  # replaced in place: no stale index
    assert graph.node("b").name == "z"
    with pytest.raises(KeyError):
        graph.node("c")
    assert set(vars(graph)) == field_names(graph)


def test_collapsed_views_of_a_loaded_trace_match_the_live_ones(tmp_path):
    trace = rnn_trace(steps=2)
    loaded = gradscope.load(trace.save(tmp_path / "trace.json"))
    for live, back in zip(trace.passes, loaded.passes):
        a, b = collapse.view(live.graph), collapse.view(back.graph)
        assert [box.id for box in a.boxes] == [box.id for box in b.boxes]
        assert [(e.src, e.dst) for e in a.edges] == [(e.src, e.dst) for e in b.edges]
        assert live.graph.nodes == back.graph.nodes


def _calls(path: Path) -> list[str]:
    """`object.__new__`, `x.__dict__` and `vars(x)` in a module's code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("__dict__", "__new__"):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars":
            found.append(f"{path.name}:{node.lineno} vars()")
    return found


def test_no_model_object_is_built_or_read_behind_its_constructor():
    modules = [PACKAGE / "model.py", *sorted((PACKAGE / "traceio").glob("*.py")),
               *sorted((PACKAGE / "render").rglob("*.py")), *sorted((PACKAGE / "diagnostics").glob("*.py")),
               PACKAGE / "capture" / "walk.py", PACKAGE / "capture" / "repeat.py"]
    assert [c for m in modules for c in _calls(m)] == []
