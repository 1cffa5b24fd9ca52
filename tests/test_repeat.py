"""Repeated passes share the last quiet pass's op nodes and edges (capture/repeat.py):
never at the cost of a different record."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn as nn

import gradscope
from gradscope.capture import steady
from gradscope.capture.repeat import QuietTemplate

# A training loop whose graph repeats, except where a step changes something a graph shows.
LOOP = """\
    import torch, torch.nn as nn, gradscope
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    other = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    scale = torch.ones(1, requires_grad=True)  # a small leaf: its value changes every pass
    for step in range(16):
        opt.zero_grad()
        if step == 4:
            gradscope.name(scale, "gain")  # a leaf renamed
        if step == 6:
            x = torch.randn(5, 4)  # other shapes
        if step == 8:
            scale.grad = None
            scale.data = torch.full((1, 1), 0.5)  # the same leaf, another shape; the ops' outputs as before
        h = (model[0] if step != 10 else other)(x)  # same line and ops, another module
        if step == 12:
            h = h * 1.0  # one more op
        out = model[2](model[1](h)) * scale
        loss = out.pow(2).mean()
        if step == 14:
            loss.backward(retain_graph=True)  # twice over one graph
        loss.backward()  # scale is never zeroed: its .grad carries over
        opt.step()
        with torch.no_grad():
            scale.mul_(0.9)
"""


def _run(tmp_path, share: bool, monkeypatch) -> gradscope.trace:
    path = tmp_path / "loop.py"
    path.write_text(textwrap.dedent(LOOP))
    with monkeypatch.context() as m:
        m.setattr(steady, "STEADY_AFTER", 10**9)  # (sharing alone here: steady passes in test_steady.py)
        if not share:
            m.setattr(QuietTemplate, "fill", lambda *args: False)
        with gradscope.trace(gradients="off") as t:
            exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__", "__file__": str(path)})
    return t


def test_sharing_changes_nothing_that_is_recorded(tmp_path, monkeypatch):
    shared, own = _run(tmp_path, True, monkeypatch), _run(tmp_path, False, monkeypatch)
    assert json.dumps(shared.trace.to_dict()) == json.dumps(own.trace.to_dict())
    assert len(shared.passes) == 17

    def shares(a, b):
        return any(x is y for x, y in zip(shared.passes[a].graph.nodes, shared.passes[b].graph.nodes))

    # each change ends the sharing for one pass; the next pass shares with that one
    assert [k for k in range(1, 17) if not shares(k - 1, k)] == [4, 6, 8, 10, 11, 12, 13]
    assert not any(x is y for k in range(1, 17)
                   for x, y in zip(own.passes[k - 1].graph.nodes, own.passes[k].graph.nodes))


def test_shared_passes_have_their_own_roots_and_leaves():
    w = torch.ones(3, requires_grad=True)
    with gradscope.trace(gradients="off") as t:
        for i in range(3):
            (w * (i + 1.0)).sum().backward()
    a, b = t.passes[1].graph, t.passes[2].graph
    assert a.find("w") is not b.find("w") and a.roots[0] is not b.roots[0]
    shared = [x for x, y in zip(a.nodes, b.nodes) if x is y]
    assert [n.op for n in shared] == ["mul"]
    assert [r.value for r in (a.roots[0], b.roots[0])] == [6.0, 9.0]
    assert [g.find("w").grad_after.value for g in (a, b)] == [[3.0] * 3, [6.0] * 3]
    assert b.find("w").grad_carried_over and b.find("w").grad_before.value == [3.0] * 3


def test_a_pass_with_edge_gradients_never_shares(tmp_path):
    w = torch.ones(300, 300, requires_grad=True)
    with gradscope.trace() as t:
        for _ in range(12):
            (w * 3).sum().backward()
    p = t.passes
    full = [q.index for q in p if q.edge_gradients]
    assert full == [0, 1, 2, 10]
    for k in range(1, 12):
        shares = any(x is y for x, y in zip(p[k - 1].graph.nodes, p[k].graph.nodes))
        assert shares == (k - 1 not in full and k not in full), k
    # the full pass's own nodes carry what arrived; the quiet ones' nothing
    assert [len(n.grad_outputs) for n in p[10].graph.nodes if n.kind == "op"] == [1, 1]
    assert all(not n.grad_outputs for q in p if not q.edge_gradients for n in q.graph.nodes)


@pytest.mark.parametrize("named", ["op", "none"])
def test_explicitly_named_nodes_are_not_shared(named):
    layer = nn.Linear(2, 2)
    with gradscope.trace(gradients="off") as t:
        for i in range(3):
            h = layer(torch.ones(1, 2))
            if named == "op":
                gradscope.name(h, f"h{i}")
            h.sum().backward()
    names = [[n.name for n in p.graph.nodes if n.op == "linear"] for p in t.passes]
    p = t.passes
    shares = any(x is y for x, y in zip(p[1].graph.nodes, p[2].graph.nodes))
    assert shares == (named == "none")
    assert names == ([["h0"], ["h1"], ["h2"]] if named == "op" else [["h"]] * 3)


def test_a_graph_with_other_roots_is_not_shared():
    w = torch.ones(3, requires_grad=True)
    with gradscope.trace(gradients="off") as t:
        for i in range(3):
            h = w * 2
            loss = h.sum()
            torch.autograd.backward([loss, h] if i == 2 else [loss], [None, torch.ones(3)] if i == 2 else None)
    a, b = t.passes[1].graph, t.passes[2].graph
    assert not any(x is y for x, y in zip(a.nodes, b.nodes))
    assert sorted(n.name for n in a.roots) == ["loss"] and sorted(n.name for n in b.roots) == ["h", "loss"]
