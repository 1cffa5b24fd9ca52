"""Typed event records (gradscope/events.py): one dataclass per kind, saved in trace.json as
the plain object each kind always wrote, read back typed and checked; and torch's error
texts matched in gradscope/torch_errors.py only. No torch needed."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

import gradscope
from gradscope import torch_errors
from gradscope.events import (
    KINDS,
    BackwardError,
    FreedGraphReused,
    GradCarried,
    LeafInplaceError,
    LeafUpdate,
    NestedTrace,
    NoGradient,
    NonleafGradRead,
    OptimizerStep,
    OtherEvent,
    PassNotRecorded,
    RequiresGradRead,
    SavedTensorModified,
)
from gradscope.model import Event, Source, Trace, TraceFormatError
from gradscope.traceio import dumps, from_dict, load, save, to_dict

DATA = Path(__file__).parent / "data"
SOURCE = {"file": "/w/train.py", "line": 2, "code": "y = w * x", "function": "<module>"}

# Each kind as capture builds it, and the object trace.json holds for it: keys in the order
# capture always wrote them (the format before the records existed).
AS_SAVED = [
    (LeafInplaceError(op="add_", leaf="w", message="a leaf Variable ...", node=None, view=False),
     {"op": "add_", "leaf": "w", "message": "a leaf Variable ...", "node": None, "view": False}),
    (SavedTensorModified(detected_by="version", node="n1", op="mul", saved="other", saved_by=SOURCE, module=None,
                         modified_by=[{"op": "mul_", "module": None, **SOURCE, "node": "n3"}], message="m"),
     {"detected_by": "version", "node": "n1", "op": "mul", "saved": "other", "saved_by": SOURCE, "module": None,
      "modified_by": [{"op": "mul_", "module": None, **SOURCE, "node": "n3"}], "message": "m"}),
    (FreedGraphReused(nodes=["n1", "n2"], freed_by=None), {"nodes": ["n1", "n2"], "freed_by": None}),
    (GradCarried(leaves=[["n4", 0, "n4"]]), {"leaves": [["n4", 0, "n4"]]}),
    (LeafUpdate(leaves=[[0, "n6"], [0, "n4"]]), {"leaves": [[0, "n6"], [0, "n4"]]}),
    (NoGradient(pass_index=3, leaves=[{"name": "b", "shape": [2], "parameter": True, "cut": None}]),
     {"pass": 3, "leaves": [{"name": "b", "shape": [2], "parameter": True, "cut": None}]}),
    (BackwardError(api="Tensor.backward", type="RuntimeError", message="boom"),
     {"api": "Tensor.backward", "type": "RuntimeError", "message": "boom"}),
    (NonleafGradRead(shape=[4, -1], op="AddmmBackward0", name="y", defined_at=SOURCE),
     {"shape": [4, -1], "op": "AddmmBackward0", "name": "y", "defined_at": SOURCE}),
    (OptimizerStep(optimizer="SGD", step=1), {"optimizer": "SGD", "step": 1}),
    (OptimizerStep(optimizer="Adam", update_norms={"w": 0.5}), {"optimizer": "Adam", "update_norms": {"w": 0.5}}),
    (NestedTrace(passes=1), {"passes": 1}),
    (PassNotRecorded(reason="ValueError: x", partly=True), {"reason": "ValueError: x", "partly": True}),
    (RequiresGradRead(tensor="b"), {"tensor": "b"}),
]


def test_every_kind_has_a_record_and_is_saved_as_before():
    assert {data.kind for data, _ in AS_SAVED} == set(KINDS)
    trace = Trace(events=[Event(kind=data.kind, pass_index=i, data=data) for i, (data, _) in enumerate(AS_SAVED)])
    saved = to_dict(trace)["events"]
    for (data, plain), record in zip(AS_SAVED, saved):
        assert record["kind"] == data.kind
        assert list(record["data"].items()) == list(plain.items())  # the same keys, in the same order
    text = dumps(to_dict(trace))
    again = from_dict(json.loads(text))
    assert [type(e.data) for e in again.events] == [type(data) for data, _ in AS_SAVED]
    assert [e.data for e in again.events] == [data for data, _ in AS_SAVED]
    assert dumps(to_dict(again)) == text  # byte for byte


def test_a_record_reads_like_the_dict_it_is_saved_as():
    step = OptimizerStep(optimizer="SGD", step=2)
    assert step["optimizer"] == "SGD" and step.get("step") == 2 and step.get("update_norms") is None
    assert "update_norms" not in step and "step" in step and dict(step) == {"optimizer": "SGD", "step": 2}
    step["update_norms"] = {"w": 0.25}  # (capture adds the norms to the step's own event)
    assert step.update_norms == {"w": 0.25} and step == {"optimizer": "SGD", "step": 2, "update_norms": {"w": 0.25}}
    with pytest.raises(KeyError):
        LeafUpdate()["nope"]
    missing = NoGradient(pass_index=4)
    assert missing["pass"] == 4 and list(missing) == ["pass", "leaves"]
    update = LeafUpdate()
    update["leaves"].append([0, "n1"])
    assert update.leaves == [[0, "n1"]] and len(update) == 1
    assert repr(NestedTrace(passes=2)) == "NestedTrace({'passes': 2})"
    assert GradCarried(leaves=[]) != LeafUpdate(leaves=[]) and LeafUpdate(leaves=[]) == LeafUpdate()
    step.update({"step": 3}, optimizer="Adam")
    assert (step.step, step.optimizer, step.setdefault("late", 1), step.extra) == (3, "Adam", 1, {"late": 1})
    del step["late"], step["update_norms"]
    assert dict(step) == {"optimizer": "Adam", "step": 3}
    with pytest.raises(KeyError):
        del step["optimizer"]  # (a field the kind always has)


def test_an_event_made_with_a_dict_holds_the_kinds_record():
    e = Event(kind="leaf-inplace-error", data={"op": "add_", "leaf": "w", "node": "n0", "later": 1})
    assert isinstance(e.data, LeafInplaceError) and e.data.leaf == "w" and e.data.view is False
    assert e.data["later"] == 1 and e.data.extra == {"later": 1}  # a key the kind does not declare stays
    assert e.data == {"op": "add_", "leaf": "w", "message": "", "node": "n0", "view": False, "later": 1}
    assert Event(kind="nested-trace", data={"passes": 1}).data == {"passes": 1}
    assert Event(kind="nested-trace").data == NestedTrace(passes=0)
    with pytest.raises(ValueError, match="a 'leaf-update' event cannot hold a NestedTrace record"):
        Event(kind="leaf-update", data=NestedTrace(passes=1))


def test_an_unknown_kind_loads_and_saves_as_it_came(tmp_path):
    data = to_dict(Trace())
    data["events"] = [{"kind": "from-the-future", "pass_index": 2, "data": {"a": [1, {"b": None}], "c": "d"}},
                      {"kind": "leaf-update", "data": {"leaves": [[0, "n1"]], "new_key": True}}]
    path = tmp_path / "trace.json"
    path.write_text(dumps(data))
    trace = load(path)
    other, update = trace.events
    assert isinstance(other.data, OtherEvent) and other.data.kind == "from-the-future"
    assert other.data["a"] == [1, {"b": None}] and dict(other.data) == {"a": [1, {"b": None}], "c": "d"}
    assert isinstance(update.data, LeafUpdate) and update.data.leaves == [[0, "n1"]] and update.data["new_key"] is True
    save(trace, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_free_form_parts_of_event_data_are_checked_as_before(tmp_path):
    """Keys a kind does not declare, an unknown kind's data, undeclared keys of nested
    objects: free-form data (non-finite floats marked, nesting bounded)."""
    nan = {"$float": "NaN"}
    data = to_dict(Trace())
    data["events"] = [{"kind": "from-the-future", "data": {"x": nan}},
                      {"kind": "leaf-update", "data": {"leaves": [], "y": [nan]}},
                      {"kind": "no-gradient", "data": {"leaves": [{"name": "b", "z": nan}]}}]
    other, update, missing = from_dict(data).events
    assert math.isnan(other.data["x"]) and math.isnan(update.data["y"][0]) and math.isnan(missing.data.leaves[0]["z"])
    deep: list = []
    for _ in range(40):
        deep = [deep]
    for event in ({"kind": "from-the-future", "data": {"x": deep}}, {"kind": "leaf-update", "data": {"y": deep}},
                  {"kind": "no-gradient", "data": {"leaves": [{"z": deep}]}}):
        data["events"] = [event]
        (tmp_path / "t.json").write_text(json.dumps(data))
        with pytest.raises(TraceFormatError, match="nested deeper than 32"):
            load(tmp_path / "t.json")


def test_version_1_events_load_typed():
    trace = load(DATA / "trace-v1.json")
    steps = [e.data for e in trace.events if e.kind == "optimizer-step"]
    updates = [e.data for e in trace.events if e.kind == "leaf-update"]
    assert [type(s) for s in steps] == [OptimizerStep] * 4 and [s.step for s in steps] == [1, 2, 3, 4]
    assert all(s.update_norms is None for s in steps)
    assert isinstance(updates[0], LeafUpdate) and updates[0].leaves == [[0, "n11"], [0, "n9"], [0, "n7"], [0, "n4"]]


def test_non_finite_update_norms_survive_the_file(tmp_path):
    trace = Trace(events=[Event(kind="optimizer-step", data=OptimizerStep(optimizer="SGD", update_norms={"w": math.inf}))])
    text = dumps(to_dict(trace))
    assert '"update_norms":{"w":{"$float":"Infinity"}}' in text
    assert from_dict(json.loads(text)).events[0].data.update_norms == {"w": math.inf}


@pytest.mark.parametrize("kind, data, where", [
    ("nested-trace", {"passes": "three"}, "events[0].data.passes"),
    ("leaf-inplace-error", {"op": "add_", "view": "yes"}, "events[0].data.view"),
    ("grad-carried", {"leaves": [["n1", -1, "n1"]]}, "events[0].data.leaves[0][1]"),
    ("no-gradient", {"pass": 0, "leaves": [5]}, "events[0].data.leaves[0]"),
    ("saved-tensor-modified", {"modified_by": "not a list"}, "events[0].data.modified_by"),
    ("optimizer-step", {"optimizer": "SGD", "update_norms": [1.0]}, "events[0].data.update_norms"),
    # the objects nested in a record: the keys they declare (events.Edit, MissingLeaf, Cut, SourceDict)
    ("saved-tensor-modified", {"modified_by": [{"op": 5}]}, "events[0].data.modified_by[0].op"),
    ("no-gradient", {"leaves": [{"name": "b", "cut": {"op": "detach", "line": "six"}}]},
     "events[0].data.leaves[0].cut.line"),
    ("nonleaf-grad-read", {"defined_at": {"file": ["x"]}}, "events[0].data.defined_at.file"),
])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(tmp_path, kind, data, where):
    for version in (1, 2):
        doc = {"format": "gradscope-trace", "version": version, "events": [{"kind": kind, "data": data}]}
        path = tmp_path / f"v{version}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(TraceFormatError) as err:
            load(path)
        assert f"{where}:" in str(err.value) and "\n" not in str(err.value)


def test_live_events_are_typed():
    """One capture, several kinds: each event holds its kind's record (torch needed here only)."""
    torch = pytest.importorskip("torch")
    w = torch.ones(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with gradscope.trace() as t:
        for _ in range(2):
            (w * 2).sum().backward()
            opt.step()
    kinds = {e.kind: type(e.data) for e in t.trace.events}
    assert kinds == {"optimizer-step": OptimizerStep, "leaf-update": LeafUpdate, "grad-carried": GradCarried}
    steps = [e.data for e in t.trace.events if e.kind == "optimizer-step"]
    assert [s.step for s in steps] == [1, 2] and steps[0].optimizer == "SGD"
    assert steps[0].update_norms == {"w": pytest.approx(0.2 * math.sqrt(3))}


# -- torch's error messages are matched in one place ----------------------------------------------
TORCH_PHRASES = ("leaf Variable", "inplace operation", "second time", "already been freed", "implicitly created",
                 "Hint:", "does not require grad and does not have a grad_fn", "is at version")
MATCHING = {"split", "rsplit", "partition", "startswith", "endswith", "find", "index", "count", "replace",
            "search", "match", "fullmatch", "sub", "compile"}


def _matched_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants used to match text: `"..." in s`, `s.split("...")`, `re.search("...")`."""
    found = []
    for node in ast.walk(tree):
        operands: list[ast.AST] = []
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn, ast.Eq)) for op in node.ops):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MATCHING:
            operands = list(node.args)
        for o in operands:
            for c in ast.walk(o):
                if isinstance(c, ast.Constant) and isinstance(c.value, str):
                    found.append((c.lineno, c.value))
    return found


def test_torch_error_texts_are_matched_only_in_torch_errors():
    package = Path(gradscope.__file__).parent
    stray = []
    for path in package.rglob("*.py"):
        if path.name == "torch_errors.py":
            continue
        for line, text in _matched_strings(ast.parse(path.read_text(), str(path))):
            if any(p in text for p in TORCH_PHRASES):
                stray.append(f"{path.relative_to(package)}:{line}: {text!r}")
    assert stray == []
    # and the scan does see such a match
    assert _matched_strings(ast.parse('ok = "leaf Variable" in str(exc)\ns = m.split(". Hint:")')) == [
        (1, "leaf Variable"), (2, ". Hint:")]


def test_torch_errors_recognise_torchs_own_words():
    torch = pytest.importorskip("torch")
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError) as leaf:
        w.add_(1)
    assert torch_errors.leaf_inplace(str(leaf.value))
    x = torch.ones(3, requires_grad=True)
    s = x.sigmoid()
    s.mul_(2)
    with pytest.raises(RuntimeError) as modified:
        s.sum().backward()
    assert torch_errors.saved_tensor_modified(str(modified.value))
    assert "Hint:" in str(modified.value) and "Hint:" not in torch_errors.without_hint(str(modified.value))
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError) as twice:
        y.backward()
    assert torch_errors.backward_twice(str(twice.value)) and torch_errors.graph_freed(str(twice.value))
    with pytest.raises(RuntimeError) as nonscalar:
        (x * 2).backward()
    assert torch_errors.nonscalar_backward(str(nonscalar.value))


def test_a_source_dict_in_a_record_is_a_source_once_read():
    """(The rules turn `saved_by`/`defined_at` into a Source: the same fields.)"""
    from gradscope.diagnostics._common import source_of

    assert source_of(NonleafGradRead(defined_at=SOURCE).defined_at) == Source("/w/train.py", 2, "y = w * x", "<module>")
