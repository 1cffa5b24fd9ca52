"""The diagnostic rules on hand-built traces and events: no torch, no capture. Each rule is a
function of the model (passes, graphs, events), so it can be tested on the data alone;
tests/test_diagnostics.py checks the same rules end to end on real torch code."""

from __future__ import annotations

from gradscope.diagnostics import diagnose
from gradscope.diagnostics.backward_errors import nonscalar_backward
from gradscope.diagnostics.capture_notes import nested_trace, pass_not_recorded
from gradscope.diagnostics.gradients import nonleaf_grad
from gradscope.diagnostics.inplace import leaf_inplace, saved_tensor_modified
from gradscope.model import Edge, Event, Graph, Node, Pass, Source, Trace
from gradscope.torch_errors import NONSCALAR


def src(line: int, code: str) -> Source:
    return Source(file="/work/train.py", line=line, code=code, function="<module>")


def plain(s: Source) -> dict:
    return {"file": s.file, "line": s.line, "code": s.code, "function": s.function}


def graph_w_times_x() -> Graph:
    """y = w * x; loss = y.sum(): leaf w, ops mul and sum."""
    w = Node(id="n0", kind="leaf", name="w", grad_fn="AccumulateGrad", shape=[3])
    mul = Node(id="n1", kind="op", name="y", grad_fn="MulBackward0", op="mul", shape=[3],
               source=src(2, "y = w * x"))
    total = Node(id="n2", kind="op", name="loss", grad_fn="SumBackward0", op="sum", shape=[],
                 source=src(3, "loss = y.sum()"), is_root=True)
    return Graph(nodes=[total, mul, w], edges=[Edge(src="n0", dst="n1", index=0), Edge(src="n1", dst="n2", index=0)])


def only(found: list) -> object:
    assert len(found) == 1, found
    return found[0][1]


def test_leaf_inplace_names_the_leaf_the_line_and_who_read_it():
    g = graph_w_times_x()
    for n in g.nodes:
        n.is_root = False
    trace = Trace(events=[Event(kind="leaf-inplace-error", source=src(4, "w.add_(1)"), pass_index=0,
                                data={"op": "add_", "leaf": "w", "node": "n0", "view": False}, graph=g)])
    d = only(leaf_inplace(trace))
    assert (d.code, d.severity, d.nodes, d.pass_index) == ("leaf-inplace", "error", ["n0"], None)
    assert d.message.startswith("`w.add_(1)` (line 4) changes `w` in place (add_)")
    assert "`y = w * x` (line 2)" in d.message  # the op that read the old value
    assert [s.line for s in d.sources] == [4, 2]


def test_saved_tensor_modified_names_who_saved_and_who_edited():
    trace = Trace(passes=[Pass(index=0, api="Tensor.backward", graph=graph_w_times_x())], events=[Event(
        kind="saved-tensor-modified", source=src(5, "x.mul_(2)"), pass_index=0,
        data={"detected_by": "version", "node": "n1", "op": "mul", "saved": "other",
              "saved_by": plain(src(2, "y = w * x")),
              "modified_by": [{"op": "mul_", "module": None, **plain(src(5, "x.mul_(2)"))}],
              "message": "one of the variables needed ... modified by an inplace operation"})])
    d = only(saved_tensor_modified(trace))
    assert (d.code, d.severity, d.pass_index, d.nodes) == ("saved-tensor-modified", "error", 0, ["n1"])
    assert [s.line for s in d.sources] == [2, 5]
    assert "line 2" in d.message and "line 5" in d.message


def test_the_same_edit_seen_twice_is_one_diagnostic():
    event = Event(kind="saved-tensor-modified", source=src(5, "x.mul_(2)"), pass_index=0,
                  data={"detected_by": "data", "node": "n1", "op": "mul", "saved": "other",
                        "saved_by": plain(src(2, "y = w * x")),
                        "modified_by": [{"op": "mul_", "tensor": "x", **plain(src(5, "x.data.mul_(2)"))}]})
    trace = Trace(passes=[Pass(index=0, api="Tensor.backward", graph=graph_w_times_x())], events=[event, event])
    assert len(saved_tensor_modified(trace)) == 1


def test_nonleaf_grad_groups_reads_by_line_and_finds_the_node():
    g = graph_w_times_x()
    reads = [Event(kind="nonleaf-grad-read", source=src(6, "print(y.grad)"), pass_index=1,
                   data={"shape": [3], "op": "MulBackward0", "name": "",
                         "defined_at": plain(src(2, "y = w * x"))}) for _ in range(2)]
    trace = Trace(passes=[Pass(index=0, api="Tensor.backward", graph=g)], events=reads)
    d = only(nonleaf_grad(trace))
    assert (d.code, d.severity, d.nodes, d.pass_index) == ("nonleaf-grad", "warning", ["n1"], 0)
    assert d.title == "`.grad` of non-leaf `y` is always None"
    assert d.message.startswith("`print(y.grad)` (line 6) reads `.grad` of `y` (2 reads). It was computed at "
                                "`y = w * x` (line 2)")


def test_nonscalar_backward_reads_the_failed_pass_root():
    g = graph_w_times_x()
    g.nodes = [n for n in g.nodes if n.id != "n2"]
    g.edges = g.edges[:1]
    g.nodes[0].is_root = True
    failed = Pass(index=0, api="Tensor.backward", graph=g, source=src(3, "y.backward()"),
                  error=f"RuntimeError: {NONSCALAR}")
    trace = Trace(passes=[failed], events=[Event(kind="backward-error", source=src(3, "y.backward()"), pass_index=1,
                                                 data={"api": "Tensor.backward", "type": "RuntimeError",
                                                       "message": NONSCALAR})])
    d = only(nonscalar_backward(trace))
    assert (d.code, d.nodes, d.pass_index) == ("nonscalar-backward", ["n1"], 0)
    assert d.title == "backward() on non-scalar `y` without a gradient" and "of shape [3]" in d.message
    # an unrelated backward error is not this rule's
    other = Trace(passes=[failed], events=[Event(kind="backward-error", pass_index=1, data={"message": "boom"})])
    assert nonscalar_backward(other) == []


def test_capture_notes():
    lost = Event(kind="pass-not-recorded", source=src(7, "loss.backward()"), pass_index=2,
                 data={"reason": "optimizer.step() at line 6 raised", "partly": False})
    partly = Event(kind="pass-not-recorded", source=src(7, "loss.backward()"), pass_index=3,
                   data={"reason": "ValueError: x", "partly": True})
    d1, d2 = [d for _, d in pass_not_recorded(Trace(events=[lost, partly]))]
    assert (d1.code, d1.severity, d1.title) == ("pass-not-recorded", "info", "a backward pass was not recorded")
    assert d1.message.endswith("could not record it: optimizer.step() at line 6 raised.")
    assert d2.title == "a backward pass was recorded only in part"
    nested = Event(kind="nested-trace", source=src(4, "with gradscope.trace():"), pass_index=1, data={"passes": 1})
    d = only(nested_trace(Trace(events=[nested])))
    assert d.code == "nested-trace" and [s.line for s in d.sources] == [4]


def test_diagnose_orders_by_time_and_rule_and_survives_a_malformed_event():
    bad = Event(kind="saved-tensor-modified", pass_index=1, data={"modified_by": "not a list of dicts"})
    lost = Event(kind="pass-not-recorded", source=src(7, "loss.backward()"), pass_index=0,
                 data={"reason": "r", "partly": False})
    g = graph_w_times_x()
    for n in g.nodes:
        n.is_root = False
    leaf = Event(kind="leaf-inplace-error", source=src(4, "w.add_(1)"), pass_index=0,
                 data={"op": "add_", "leaf": "w", "node": "n0"}, graph=g)
    found = diagnose(Trace(events=[lost, bad, leaf]))
    # events before pass 0 first, in the rules' order; the (odd) event of pass 1 last
    assert [(d.code, d.pass_index) for d in found] == [
        ("leaf-inplace", None), ("pass-not-recorded", None), ("saved-tensor-modified", 1)]


def test_backward_twice_and_torch_errors_matched_in_one_place():
    from gradscope.diagnostics.backward_errors import backward_twice
    from gradscope import torch_errors

    message = ("Trying to backward through the graph a second time (or directly access saved tensors after "
               "they have already been freed).")
    assert torch_errors.backward_twice(message) and torch_errors.graph_freed(message)
    assert not torch_errors.nonscalar_backward(message) and not torch_errors.saved_tensor_modified(message)
    g = graph_w_times_x()
    first = Pass(index=0, api="Tensor.backward", graph=g, source=src(4, "loss.backward()"))
    second = Pass(index=1, api="Tensor.backward", graph=g, source=src(5, "loss.backward()"),
                  error=f"RuntimeError: {message}")
    trace = Trace(passes=[first, second], events=[
        Event(kind="freed-graph-reused", source=src(5, "loss.backward()"), pass_index=1,
              data={"nodes": ["n1"], "freed_by": 0}),
        Event(kind="backward-error", source=src(5, "loss.backward()"), pass_index=2,
              data={"api": "Tensor.backward", "type": "RuntimeError", "message": message})])
    d = only(backward_twice(trace))
    assert (d.code, d.severity, d.pass_index) == ("backward-twice", "error", 1)
    assert [s.line for s in d.sources][:2] == [5, 4]
