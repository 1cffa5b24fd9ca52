"""Trace files: format version 2 (structures once, numbers per pass), version 1 still
read, standard JSON, and the in-memory sharing a loaded long run keeps."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import gradscope
from gradscope import TraceFormatError
from gradscope.traceio import dumps, to_dict
from gradscope.traceio.v2 import Encoder

DATA = Path(__file__).with_name("data")


def plain(obj) -> str:
    """A model object as text that compares NaN equal to NaN."""
    return json.dumps(asdict(obj), default=str, sort_keys=True)


def same_trace(a: gradscope.Trace, b: gradscope.Trace) -> None:
    assert len(a.passes) == len(b.passes)
    for p, q in zip(a.passes, b.passes):
        assert plain(p) == plain(q), f"pass {p.index} differs"
    assert [plain(e) for e in a.events] == [plain(e) for e in b.events]
    assert [plain(d) for d in a.diagnostics] == [plain(d) for d in b.diagnostics]
    assert json.dumps(a.meta, default=str) == json.dumps(b.meta, default=str)


def training_run(steps: int, width: int = 64, layers: int = 10, batch: int = 64, **options) -> gradscope.trace:
    """An MLP of `layers` Linear layers trained `steps` steps: a big graph (over 65,536
    output elements), so its passes after the first few record no edge gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width), nn.ReLU())])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, width)
    with gradscope.trace(**options) as t:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
    return t


def test_version_1_files_still_load():
    t = gradscope.load(DATA / "trace-v1.json")  # written by gradscope before format 2
    assert len(t.passes) == 5 and [d.code for d in t.diagnostics] == ["nonfinite-gradient"]
    assert [p.edge_gradients for p in t.passes[:4]] == [True, True, True, True]
    w = t.passes[4].graph.leaves[0]
    assert w.value == [1.0, 0.0] and math.isnan(w.grad_after.value[1])  # 0 * (1/0) + log 0 at w = 0
    assert t.passes[0].graph.edges[0].grad is not None and t.passes[3].step == 3


def test_version_1_file_saved_again_is_version_2_and_the_same(tmp_path):
    old = gradscope.load(DATA / "trace-v1.json")
    path = old.save(tmp_path / "trace.json")
    assert json.loads(path.read_text())["version"] == 2
    same_trace(old, gradscope.load(path))


def test_round_trip_equals_the_trace_in_memory_for_every_pass(tmp_path):
    t = training_run(25, every=10)
    assert [p.edge_gradients for p in t.passes].count(True) == 5  # the first 3, the 10th and 20th
    loaded = gradscope.load(t.save(tmp_path / "trace.json"))
    same_trace(t.trace, loaded)
    assert loaded.passes[24].graph.find("0.weight").grad_after.norm == t.passes[24].graph.find("0.weight").grad_after.norm


def test_a_graph_structure_is_written_once():
    data = to_dict(training_run(12, every=10).trace)
    assert len(data["structures"]) == 1 and {p["graph"] for p in data["passes"]} == {0}
    assert len(data["passes"]) == 12


def test_passes_sharing_edge_objects_get_their_own_structure_when_a_node_differs():
    """The encoder reuses the last structure for a graph with the same edge objects and
    module calls between the same nodes; a node that differs still makes a new one."""
    from gradscope.model import Edge, Graph, Node

    edges, calls = [Edge("n1", "n0", 0)], []
    first = Graph([Node("n0", "op", "y", "MulBackward0", op="mul"), Node("n1", "leaf", "x", "AccumulateGrad")],
                  edges, calls)
    other = Graph([Node("n0", "op", "y", "AddBackward0", op="add"), first.nodes[1]], edges, calls)
    enc = Encoder()
    assert [enc.graph(g)[0] for g in (first, first, other, other, first)] == [0, 0, 1, 1, 0]
    assert [s["nodes"][0]["op"] for s in enc.structures] == ["mul", "add"]


def test_a_repeated_pass_costs_about_its_numbers_on_disk():
    t = training_run(30, every=10)
    params = len(t.passes[0].graph.leaves)
    assert params == 20
    enc = Encoder()
    sizes = [len(dumps(enc.pass_record(p))) for p in t.passes if not p.edge_gradients]
    assert len(sizes) == 25
    assert max(sizes) <= 1024 + 40 * params, sizes
    # the first pass carries the structure; a quiet pass is a small part of it
    assert max(sizes) * 10 < len(dumps(to_dict(gradscope.Trace(passes=t.passes[:1]))))


def test_loaded_passes_share_their_structure_objects(tmp_path):
    loaded = gradscope.load(training_run(8, every=10).save(tmp_path / "trace.json"))
    quiet = [p for p in loaded.passes if not p.edge_gradients]
    a, b = quiet[0].graph, quiet[1].graph
    ops = [k for k, n in enumerate(a.nodes) if n.kind == "op" and not n.is_root]
    assert ops and all(a.nodes[k] is b.nodes[k] for k in ops)
    leaves = [k for k, n in enumerate(a.nodes) if n.kind == "leaf"]
    assert all(a.nodes[k] is not b.nodes[k] for k in leaves)  # each pass's own .grad
    assert a.nodes[leaves[0]].grad_after.norm != b.nodes[leaves[0]].grad_after.norm


def test_trace_json_is_standard_json_and_non_finite_numbers_come_back(tmp_path):
    w = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    with gradscope.trace() as t:
        w.log().sum().backward()  # d log(w) / dw = 1 / w: inf at 0
    t.trace.meta["lr"] = float("inf")
    t.trace.meta["name"] = "NaN"  # a string that looks like a stand-in stays a string
    text = t.save(tmp_path / "trace.json").read_text()

    def refuse(constant):
        raise AssertionError(f"bare {constant} in trace.json")

    json.loads(text, parse_constant=refuse)
    loaded = gradscope.load(tmp_path / "trace.json")
    grad = loaded.passes[0].graph.find("w").grad_after
    assert grad.value[1] == math.inf and grad.value[0] == 1.0 and grad.inf == 1
    assert loaded.meta["lr"] == math.inf and loaded.meta["name"] == "NaN"
    same_trace(t.trace, loaded)
