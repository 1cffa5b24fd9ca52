"""The diagnostic rules on hand-built traces and events: no torch, no capture. Each rule is a
function of the model (passes, graphs, events), so it can be tested on the data alone;
tests/test_diagnostics.py checks the same rules end to end on real torch code."""

from __future__ import annotations

from gradscope.diagnostics import NOTES, RULES, diagnose
from gradscope.diagnostics.accumulation import grad_accumulation
from gradscope.diagnostics.backward_errors import backward_twice, nonscalar_backward
from gradscope.diagnostics.capture_notes import nested_trace, pass_not_recorded
from gradscope.diagnostics.gradients import no_gradient, nonfinite_gradient, nonleaf_grad
from gradscope.diagnostics.inplace import leaf_inplace, saved_tensor_modified
from gradscope.diagnostics.ranks import ddp_gradients_differ, leaf_grads
from gradscope.events import (
    BackwardError,
    EventData,
    FreedGraphReused,
    GradCarried,
    LeafInplaceError,
    LeafUpdate,
    NestedTrace,
    NoGradient,
    NonleafGradRead,
    OptimizerStep,
    PassNotRecorded,
    SavedTensorModified,
)
from gradscope.model import Edge, Event, Graph, Node, Pass, Source, TensorSummary, Trace
from gradscope.torch_errors import MODIFIED_INPLACE, NONSCALAR


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
    from gradscope import torch_errors
    from gradscope.diagnostics.backward_errors import backward_twice

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


# -- every rule on typed events: what it says, and a quiet input that gives nothing -------------

SECOND_TIME_MESSAGE = ("Trying to backward through the graph a second time (or directly access saved tensors "
                       "after they have already been freed).")


def ev(data: EventData, pass_index: int | None = 0, source: Source | None = None, graph: Graph | None = None) -> Event:
    return Event(kind=data.kind, source=source, pass_index=pass_index, data=data, graph=graph)


def grad(value: float, shape: list[int] | None = None) -> TensorSummary:
    """A gradient summary: one number (shape []) or a [3] tensor of norm `value`."""
    if shape is None:
        return TensorSummary(shape=[], dtype="float32", norm=abs(value), max_abs=abs(value), value=value)
    return TensorSummary(shape=shape, dtype="float32", norm=value, max_abs=value)


def backward_pass(index: int, line: int = 3, grad_before: TensorSummary | None = None,
                  grad_after: TensorSummary | None = None, **kw) -> Pass:
    g = graph_w_times_x()
    w = g.node("n0")
    w.grad_before, w.grad_after = grad_before, grad_after
    w.grad_carried_over = grad_before is not None
    return Pass(index=index, api="Tensor.backward", graph=g, source=src(line, "loss.backward()"), **kw)


def test_every_rule_has_a_test_here():
    tested = {"leaf-inplace", "saved-tensor-modified", "grad-accumulation", "backward-twice", "nonleaf-grad",
              "no-gradient", "nonfinite-gradient", "nonscalar-backward", "nested-trace", "pass-not-recorded"}
    assert set(RULES) | set(NOTES) == tested  # (ddp-gradients-differ, across ranks: its own test below)


def test_leaf_inplace_from_a_typed_event_and_through_a_view():
    g = graph_w_times_x()
    for n in g.nodes:
        n.is_root = False
    data = LeafInplaceError(op="setitem", leaf="w", message="a leaf Variable that requires grad ...", node="n0",
                            view=True)
    d = only(leaf_inplace(Trace(events=[ev(data, source=src(4, "w[0] = 5"), graph=g)])))
    assert (d.code, d.severity, d.nodes, d.event_index) == ("leaf-inplace", "error", ["n0"], 0)
    assert d.title == "In-place item assignment (`t[...] = ...`) on `w`, a leaf that requires grad"
    assert d.message.startswith("`w[0] = 5` (line 4) writes into a view of `w`, which changes `w` itself.")
    assert "`with torch.no_grad(): w.add_(1)`" in d.hint
    # no graph, no name: the leaf, unnamed, and no node
    bare = only(leaf_inplace(Trace(events=[ev(LeafInplaceError(op="add_"), source=src(9, "t.add_(1)"))])))
    assert bare.title == "In-place add_ on a leaf that requires grad" and bare.nodes == [] and bare.event_index is None


def test_leaf_inplace_quiet():
    quiet = Trace(passes=[backward_pass(0)], events=[ev(OptimizerStep(optimizer="SGD", step=1), pass_index=1)])
    assert leaf_inplace(quiet) == []


def test_saved_tensor_modified_through_data_is_a_silent_wrong_gradient():
    data = SavedTensorModified(detected_by="data", node="n1", op="mul", saved="other",
                               saved_by=plain(src(2, "y = w * x")),
                               modified_by=[{"op": "mul_", "module": None, "tensor": "x",
                                             **plain(src(5, "x.data.mul_(2)"))}])
    d = only(saved_tensor_modified(Trace(passes=[backward_pass(0)], events=[ev(data, source=src(5, "x.data.mul_(2)"))])))
    assert (d.code, d.severity, d.pass_index, d.nodes) == ("saved-tensor-modified", "error", 0, ["n1"])
    assert d.title == "Saved tensor changed through .data after mul saved it: wrong gradients, no error"
    assert d.message.startswith("mul at `y = w * x` (line 2) saved its second input `x` for backward; then mul_ "
                                "at `x.data.mul_(2)` (line 5) changed that tensor in place, through `.data`.")
    assert [s.line for s in d.sources] == [2, 5]


def test_saved_tensor_modified_by_relu_inplace_names_the_module():
    data = SavedTensorModified(detected_by="version", node="n1", op="sigmoid", saved="result", module="net.0",
                               saved_by=plain(src(2, "h = self.act(x)")),
                               modified_by=[{"op": "relu_", "module": "net.1", "node": "n3",
                                             **plain(src(3, "h = self.relu(h)"))}],
                               message=f"one of the variables needed for gradient computation has been "
                                       f"{MODIFIED_INPLACE}")
    d = only(saved_tensor_modified(Trace(events=[ev(data, pass_index=2)])))
    assert d.title == "Tensor saved by sigmoid for backward was modified in place"
    assert d.message.startswith("sigmoid (module `net.0`) at `h = self.act(x)` (line 2) saved its own output for "
                                "backward; then relu_ (module `net.1`) at `h = self.relu(h)` (line 3) changed")
    assert "use `inplace=False`" in d.hint and d.nodes == ["n1", "n3"] and d.pass_index == 2


def test_saved_tensor_modified_from_the_backward_error_alone():
    """No early event (a node gradscope could not read): torch's error names the mistake."""
    failed = backward_pass(0, error=f"RuntimeError: ... {MODIFIED_INPLACE}")
    error = BackwardError(api="Tensor.backward", type="RuntimeError",
                          message=f"one of the variables needed for gradient computation has been {MODIFIED_INPLACE}"
                                  f": [torch.FloatTensor [3]] is at version 1. Hint: enable anomaly detection")
    trace = Trace(passes=[failed], events=[ev(error, pass_index=1, source=src(3, "loss.backward()"))])
    d = only(saved_tensor_modified(trace))
    assert (d.title, d.pass_index, d.nodes) == ("A tensor saved for backward was modified in place", 0, [])
    assert d.message.startswith("The backward at `loss.backward()` (line 3) failed: one of the variables needed")
    assert "Hint: enable anomaly" not in d.message  # torch's own hint is cut (torch_errors.without_hint)
    # the same error after an early event for that pass: one diagnostic, the event's
    early = SavedTensorModified(detected_by="version", node="n1", op="mul", saved="other",
                                saved_by=plain(src(2, "y = w * x")))
    both = saved_tensor_modified(Trace(passes=[failed], events=[ev(early, pass_index=0), ev(error, pass_index=1)]))
    assert [d.title for _, d in both] == ["Tensor saved by mul for backward was modified in place"]


def test_saved_tensor_modified_quiet():
    other = BackwardError(api="Tensor.backward", type="RuntimeError", message="boom")
    assert saved_tensor_modified(Trace(passes=[backward_pass(0, error="RuntimeError: boom")],
                                       events=[ev(other, pass_index=1)])) == []


def test_grad_accumulation_stale_gradients_after_an_update():
    """step, no zero_grad, backward adds onto the applied gradient, step applies the sum."""
    passes = [backward_pass(0, grad_after=grad(1.0)), backward_pass(1, grad_before=grad(1.0), grad_after=grad(2.0))]
    step = src(4, "opt.step()")
    events = [ev(LeafUpdate(leaves=[[0, "n0"]]), pass_index=1, source=step),
              ev(GradCarried(leaves=[["n0", 0, "n0"]]), pass_index=1),
              ev(LeafUpdate(leaves=[[1, "n0"]]), pass_index=2, source=step)]
    d = only(grad_accumulation(Trace(passes=passes, events=events)))
    assert (d.code, d.severity, d.pass_index, d.nodes) == ("grad-accumulation", "warning", 1, ["n0"])
    assert d.title == "Gradients of `w` carried over from the previous step"
    assert d.message.startswith("`opt.step()` (line 4) updated `w` from their `.grad`, but `.grad` was not cleared "
                                "afterwards: the backward at `loss.backward()` (line 3) added the new gradient to "
                                "the old one (`w.grad` went from 1 to 2 in this pass)")
    assert [s.line for s in d.sources] == [3, 4] and "optimizer.zero_grad()" in d.hint


def test_grad_accumulation_repeated_backward_without_update():
    """The lesson's loop: backward three times over one graph, nothing clears .grad."""
    passes = [backward_pass(0, grad_after=grad(5.0)), backward_pass(1, grad_before=grad(5.0), grad_after=grad(10.0)),
              backward_pass(2, grad_before=grad(10.0), grad_after=grad(15.0))]
    events = [ev(GradCarried(leaves=[["n0", 0, "n0"]]), pass_index=1),
              ev(GradCarried(leaves=[["n0", 1, "n0"]]), pass_index=2)]
    d = only(grad_accumulation(Trace(passes=passes, events=events)))
    assert (d.severity, d.pass_index, d.nodes) == ("warning", 2, ["n0"])
    assert d.title == "Gradients of `w` pile up over 3 backward calls"
    assert "`w.grad` went 5 → 10 → 15" in d.message and "`w.grad.zero_()` or `w.grad = None`" in d.hint


def test_grad_accumulation_micro_batching_is_info():
    """Two backward passes, then one update, then cleared: deliberate accumulation."""
    passes = [backward_pass(0, grad_after=grad(1.0)), backward_pass(1, grad_before=grad(1.0), grad_after=grad(2.0)),
              backward_pass(2, grad_after=grad(1.0))]
    events = [ev(GradCarried(leaves=[["n0", 0, "n0"]]), pass_index=1),
              ev(LeafUpdate(leaves=[[1, "n0"]]), pass_index=2, source=src(5, "opt.step()"))]
    d = only(grad_accumulation(Trace(passes=passes, events=events)))
    assert (d.severity, d.pass_index, d.title) == ("info", 1, "Gradient accumulation: 2 backward passes per update")
    assert "before each update at `opt.step()` (line 5)" in d.message
    assert d.hint == "The update uses the sum of 2 gradients: divide each loss by 2 to get their mean."


def test_grad_accumulation_quiet():
    # zero_grad before each backward: nothing carried, updates in between
    passes = [backward_pass(i, grad_after=grad(1.0)) for i in range(3)]
    events = [ev(LeafUpdate(leaves=[[i, "n0"]]), pass_index=i + 1) for i in range(3)]
    assert grad_accumulation(Trace(passes=passes, events=events)) == []
    # .grad set but all zero (zero_() instead of None) is cleared too
    zero = TensorSummary(shape=[], dtype="float32", norm=0.0, max_abs=0.0, value=0.0)
    passes = [backward_pass(0, grad_after=grad(1.0)), backward_pass(1, grad_before=zero, grad_after=grad(1.0))]
    assert grad_accumulation(Trace(passes=passes, events=[ev(GradCarried(leaves=[["n0", 0, "n0"]]), pass_index=1)])) == []


def test_backward_twice_from_typed_events_and_quiet():
    first = backward_pass(0, line=4)
    second = backward_pass(1, line=5, error=f"RuntimeError: {SECOND_TIME_MESSAGE}")
    events = [ev(FreedGraphReused(nodes=["n1"], freed_by=0), pass_index=1),
              ev(BackwardError(api="Tensor.backward", type="RuntimeError", message=SECOND_TIME_MESSAGE),
                 pass_index=2, source=src(5, "loss.backward()"))]
    d = only(backward_twice(Trace(passes=[first, second], events=events)))
    assert d.title == "Backward through a graph that was already freed" and d.pass_index == 1
    assert d.message.startswith("The backward at `loss.backward()` (line 5) runs through a graph that the backward "
                                "at `loss.backward()` (line 4) already ran through.")
    assert "retain_graph=True" in d.hint and d.nodes == ["n1"]  # the freed nodes the event named
    other = [ev(BackwardError(api="Tensor.backward", type="RuntimeError", message="boom"), pass_index=2)]
    assert backward_twice(Trace(passes=[first, second], events=other)) == []


def test_nonleaf_grad_typed_and_quiet():
    read = NonleafGradRead(shape=[3], op="MulBackward0", name="", defined_at=None)
    d = only(nonleaf_grad(Trace(passes=[backward_pass(0)], events=[ev(read, pass_index=1, source=src(6, "print(t.grad)"))])))
    # not found in the pass (no line to match): said by its op, and no node
    assert d.title == "`.grad` of a non-leaf tensor is always None" and d.nodes == [] and d.pass_index is None
    assert d.message.startswith("`print(t.grad)` (line 6) reads `.grad` of a tensor that is not a leaf. "
                                "It was computed by mul, so it is not a leaf")
    assert nonleaf_grad(Trace(passes=[backward_pass(0)], events=[ev(OptimizerStep(optimizer="SGD", step=1))])) == []


def test_no_gradient_names_the_detach_and_is_quiet_for_a_leaf_another_pass_trains():
    cut = {"op": "detach", **plain(src(6, "z = head(x).detach()"))}
    missing = NoGradient(pass_index=0, leaves=[{"name": "head.weight", "shape": [2, 3], "parameter": True, "cut": cut},
                                               {"name": "head.bias", "shape": [2], "parameter": True, "cut": cut}])
    d = only(no_gradient(Trace(passes=[backward_pass(0, line=7)], events=[ev(missing)])))
    assert (d.code, d.severity, d.pass_index) == ("no-gradient", "warning", 0)
    assert d.title == "`head.weight` and `head.bias` got no gradient"
    assert d.message.startswith("`head.weight` and `head.bias` require grad, but the backward at `loss.backward()` "
                                "(line 7) gave them no gradient")
    assert "cut at `z = head(x).detach()` (line 6): `.detach()` returns a tensor with no history" in d.message
    assert [s.line for s in d.sources] == [6, 7]
    # a GAN: the generator's step trains the leaf the discriminator's step cut off
    trained = backward_pass(1)
    trained.graph.node("n0").name, trained.graph.node("n0").shape = "head.weight", [2, 3]
    only_weight = NoGradient(pass_index=0, leaves=[missing.leaves[0]])
    assert no_gradient(Trace(passes=[backward_pass(0), trained], events=[ev(only_weight)])) == []


def test_nonfinite_gradient_and_quiet():
    p = backward_pass(0)
    p.graph.edge("n1", "n2").grad = grad(1.0, [3])
    p.graph.edge("n0", "n1").grad = TensorSummary(shape=[3], dtype="float32", nan=1)
    d = only(nonfinite_gradient(Trace(passes=[p])))
    assert (d.code, d.severity, d.pass_index, d.nodes) == ("nonfinite-gradient", "error", 0, ["n1", "n0"])
    assert d.title == "NaN/Inf gradient first appears at mul (train.py:2)"
    assert d.message.startswith("The first non-finite gradient of the backward at `loss.backward()` (line 3) appears "
                                "at mul, `y = w * x` (line 2): the gradient that arrived there was finite, but what "
                                "it sent to `w` holds 1 NaN.")
    p.graph.edge("n0", "n1").grad = grad(1.0, [3])
    assert nonfinite_gradient(Trace(passes=[p])) == []


def test_nonscalar_backward_typed_and_quiet():
    g = graph_w_times_x()
    g.nodes = [n for n in g.nodes if n.id != "n2"]
    g.edges = g.edges[:1]
    g.nodes[0].is_root = True
    failed = Pass(index=0, api="Tensor.backward", graph=g, source=src(3, "y.backward()"), error=f"RuntimeError: {NONSCALAR}")
    error = BackwardError(api="Tensor.backward", type="RuntimeError", message=NONSCALAR)
    d = only(nonscalar_backward(Trace(passes=[failed], events=[ev(error, pass_index=1, source=src(3, "y.backward()"))])))
    assert d.message.startswith("`y.backward()` (line 3) starts backward from `y` of shape [3], which is not a single")
    assert "`y.sum().backward()`" in d.hint and [s.line for s in d.sources] == [3, 2]
    assert nonscalar_backward(Trace(passes=[backward_pass(0)])) == []


def test_capture_notes_typed_and_quiet():
    d = only(nested_trace(Trace(events=[ev(NestedTrace(passes=3), pass_index=0, source=src(4, "with gradscope.trace():"))])))
    assert d.message == ("`with gradscope.trace():` (line 4) starts a gradscope.trace() block of the script's own. "
                         "This trace paused while it ran; its 3 passes are in the block's trace, not here.")
    d = only(pass_not_recorded(Trace(events=[ev(PassNotRecorded(reason="", partly=True), source=src(7, "l.backward()"))])))
    assert d.title == "a backward pass was recorded only in part" and d.message.endswith("part of it: an internal error.")
    quiet = Trace(passes=[backward_pass(0)], events=[ev(OptimizerStep(optimizer="SGD", step=1), pass_index=1)])
    assert nested_trace(quiet) == [] and pass_not_recorded(quiet) == []
    assert diagnose(quiet) == []  # and no rule at all has anything to say


def test_ddp_gradients_differ_and_quiet():
    def rank_trace(norm: float) -> Trace:
        p = backward_pass(0, grad_after=grad(norm, [3]))
        w = p.graph.node("n0")
        w.name, w.is_parameter = "module.w", True
        return Trace(passes=[p])

    mine = rank_trace(1.0)
    d, = ddp_gradients_differ(mine, 0, {1: leaf_grads(rank_trace(2.0))})
    assert (d.code, d.severity, d.pass_index, d.nodes) == ("ddp-gradients-differ", "error", 0, ["n0"])
    assert d.message.startswith("After pass 0 (step 0) rank 0 and rank(s) 1 hold different gradients for module.w")
    assert ddp_gradients_differ(mine, 0, {1: leaf_grads(rank_trace(1.0))}) == []
