"""Plain JSON data -> model objects, checking every field on the way in.

A trace file may come from anywhere (a colleague, a bug report, a crafted file), and the
renderers trust the model's types: a `shape` must be a list of integers, an `index` an
integer, before either reaches a page. So every field is checked against the type its
dataclass declares, integers against a range, and the first thing that is wrong becomes
one `TraceFormatError` line naming where it is (`passes[3].graph.nodes[0].shape[1]`).
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, fields
from typing import Any

from ..events import EventData, OtherEvent
from ..model import Diagnostic, Edge, Event, Graph, ModuleCall, Node, Pass, Source, TensorSummary, Trace, TraceFormatError

# the largest integer a trace holds anywhere (counts, indexes, sizes, line numbers)
MAX_INT = 2**53
# how deeply values, Jacobians and free-form data may nest
MAX_DEPTH = 32
# non-finite numbers as standard JSON writes them (see `jsonio`)
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
FLOAT_MARK = "$float"  # {"$float": "NaN"}: a non-finite float inside free-form data

NODE_KINDS = ("op", "leaf")
SEVERITIES = ("error", "warning", "info")
MODEL = (Source, TensorSummary, Node, Edge, ModuleCall, Graph, Pass, Event, Diagnostic, Trace)


class Malformed(Exception):
    """A field that is not what the model says, with where it is."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}" if where else what)


def malformed(exc: Malformed) -> TraceFormatError:
    return TraceFormatError(f"gradscope trace is malformed: {exc}")


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a model class."""
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def decode(cls: type, data: Any, where: str = "") -> Any:
    """An instance of model class `cls` from `data`, every field checked."""
    if not isinstance(data, dict):
        raise Malformed(where, f"expected an object ({cls.__name__}), got {_kind(data)}")
    plan, required = _plan(cls)
    if not required <= data.keys():
        raise Malformed(where, f"{cls.__name__} lacks {', '.join(sorted(required - data.keys()))}")
    kwargs = {}
    for name, value in data.items():
        check = plan.get(name)
        if check is not None:
            kwargs[name] = check(value, f"{where}.{name}" if where else name)
    obj = cls(**kwargs)
    _check(obj, where)
    return obj


def value_of(tp: Any, value: Any, where: str) -> Any:
    """`value` checked against type `tp` (and converted: nested model objects, non-finite floats)."""
    return checker(tp)(value, where)


_PLANS: dict[type, tuple[dict, set]] = {}
_CHECKERS: dict[Any, Any] = {}


def _plan(cls: type) -> tuple[dict, set]:
    """Per field of a model class, the function that checks it; and the required fields."""
    found = _PLANS.get(cls)
    if found is None:
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        plan = {name: checker(tp) for name, tp in hints(cls).items()}
        if "shape" in plan:
            plan["shape"] = _shape
        found = _PLANS[cls] = (plan, required)
    return found


def checker(tp: Any):
    """The function `(value, where) -> value` that checks a field of type `tp`, made once."""
    found = _CHECKERS.get(tp)
    if found is None:
        found = _CHECKERS[tp] = _make_checker(tp)
    return found


def _make_checker(tp: Any):
    origin = typing.get_origin(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        options = typing.get_args(tp)
        nullable = type(None) in options
        inner = [checker(t) for t in options if t is not type(None)]
        # options told apart by a value's exact type (an event's `int | str`: [pass, node id]):
        # the one that fits is the only one to try, without an exception per value
        by_type = {t: checker(t) for t in options if t is not type(None)} \
            if {t for t in options if t is not type(None)} <= {int, str, bool} else {}

        def union(value: Any, where: str) -> Any:
            if value is None:
                if nullable:
                    return None
                raise Malformed(where, "must not be null")
            fits = by_type.get(type(value))
            if fits is not None:
                try:
                    return fits(value, where)
                except Malformed:
                    pass  # (the message of the last option, as below)
            for i, check in enumerate(inner):  # (e.g. float | None ... int | str): the first that fits
                try:
                    return check(value, where)
                except Malformed:
                    if i == len(inner) - 1:
                        raise
            raise Malformed(where, f"unexpected {_kind(value)}")

        return union
    if origin is list:
        (item,) = typing.get_args(tp)
        check_item = checker(item)

        def a_list(value: Any, where: str) -> list:
            if not isinstance(value, list):
                raise Malformed(where, f"expected a list, got {_kind(value)}")
            return [check_item(v, f"{where}[{i}]") for i, v in enumerate(value)]

        return a_list
    if typing.is_typeddict(tp):
        return _typed_dict(tp)
    if tp is EventData:  # an event's record: checked by its kind's field types (`_check_event_data`)
        return _an_object
    if origin is dict:
        return free_form
    if tp in MODEL:
        return lambda value, where: decode(tp, value, where)
    if tp is Any:
        return numbers
    simple = {bool: _bool, int: _int, float: number, str: _str}.get(tp)
    if simple is None:
        raise TypeError(f"gradscope.traceio cannot read a field of type {tp}")  # a model change it missed
    return simple


def _typed_dict(tp: Any):
    """A plain JSON object nested in an event record (`events.SourceDict`, `Edit`, ...): each
    key it declares checked when present, other keys kept as they are."""
    keys = {name: _shape if name == "shape" else checker(t) for name, t in typing.get_type_hints(tp).items()}

    def an_object(value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise Malformed(where, f"expected an object, got {_kind(value)}")
        return {k: keys[k](v, f"{where}.{k}") if k in keys else free_form(v, f"{where}.{k}", 1)
                for k, v in value.items()}

    return an_object


def _an_object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise Malformed(where, f"expected an object, got {_kind(value)}")
    return value


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise Malformed(where, f"expected true or false, got {_kind(value)}")


def _int(value: Any, where: str) -> int:
    if type(value) is int and 0 <= value <= MAX_INT:
        return value
    raise Malformed(where, f"expected an integer from 0 to 2**53, got {_kind(value)}")


def _shape(value: Any, where: str) -> list[int] | None:
    """A tensor's shape: sizes, -1 for a size that has no one value (a nested tensor's ragged dimension)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise Malformed(where, f"expected a list, got {_kind(value)}")
    return [d if type(d) is int and d == -1 else _int(d, f"{where}[{i}]") for i, d in enumerate(value)]


def _str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise Malformed(where, f"expected a string, got {_kind(value)}")


def number(value: Any, where: str) -> float | int:
    """A JSON number, or one of the strings standard JSON writes a non-finite float as."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_INT:
            raise Malformed(where, "integer too large")
        return value
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    raise Malformed(where, f"expected a number, got {_kind(value)}")


def numbers(value: Any, where: str, depth: int = 0) -> Any:
    """A tensor's values or a Jacobian: a number, a bool, null, or nested lists of them."""
    if depth > MAX_DEPTH:
        raise Malformed(where, f"nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, list):
        if depth < MAX_DEPTH and all(type(v) is float for v in value):
            return list(value)  # (a row of plain floats, the common case, needs no check each)
        return [numbers(v, where, depth + 1) for v in value]
    return number(value, where)


def free_form(value: Any, where: str, depth: int = 0) -> Any:
    """Meta and event data: JSON objects with string keys, any JSON values, bounded depth."""
    if depth > MAX_DEPTH:
        raise Malformed(where, f"nested deeper than {MAX_DEPTH}")
    if depth == 0 and not isinstance(value, dict):
        raise Malformed(where, f"expected an object, got {_kind(value)}")
    if isinstance(value, dict):
        if value.keys() == {FLOAT_MARK} and value[FLOAT_MARK] in NONFINITE:
            return NONFINITE[value[FLOAT_MARK]]
        return {k: free_form(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth < MAX_DEPTH and all(_plain_scalar(v) for v in value):
            return list(value)  # (what an element's own call would return, without the calls)
        return [free_form(v, where, depth + 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise Malformed(where, "integer too large")
    return value


def _plain_scalar(v: Any) -> bool:
    """A JSON scalar that `free_form` returns as it is."""
    t = type(v)
    return t is str or t is float or t is bool or v is None or (t is int and -MAX_INT <= v <= MAX_INT)


def _check(obj: Any, where: str) -> None:
    """What a field's type alone does not say: allowed words, and a graph's wiring."""
    if isinstance(obj, Node) and obj.kind not in NODE_KINDS:
        raise Malformed(where, f"node kind must be one of {NODE_KINDS}")
    if isinstance(obj, Diagnostic) and obj.severity not in SEVERITIES:
        raise Malformed(where, f"severity must be one of {SEVERITIES}")
    if isinstance(obj, Graph):
        check_graph(obj, where)
    if isinstance(obj, Event):
        _check_event_data(obj.data, f"{where}.data" if where else "data")


def _check_event_data(data: EventData, where: str) -> None:
    """Each field of an event's record against the type its kind declares (`gradscope.events`).

    (`Event` made the record from the JSON object as it came; a key the kind does not
    declare stays in `extra`, checked as free-form data, and an unknown kind loads as
    `OtherEvent`, all its keys in `extra`.)
    """
    # keys a kind does not declare (an unknown kind's all): free-form data
    data.extra = {k: free_form(v, f"{where}.{k}", 1) for k, v in data.extra.items()}
    if isinstance(data, OtherEvent):
        return
    plan = _event_plan(type(data))
    for key, (name, _) in data.keys_to_fields().items():
        setattr(data, name, plan[name](getattr(data, name), f"{where}.{key}"))


_EVENT_PLANS: dict[type, dict[str, Any]] = {}


def _event_plan(cls: type[EventData]) -> dict[str, Any]:
    """Per field of an event record (its fields only, not its class variables), its check."""
    found = _EVENT_PLANS.get(cls)
    if found is None:
        types = hints(cls)
        found = {name: _shape if name == "shape" else checker(types[name])
                 for name, _ in cls.keys_to_fields().values()}
        _EVENT_PLANS[cls] = found
    return found


def check_graph(graph: Graph, where: str) -> None:
    """Node ids unique, every edge between nodes of the graph, module calls nested."""
    ids = {n.id for n in graph.nodes}
    if len(ids) != len(graph.nodes):
        raise Malformed(where, "two nodes share an id")
    for k, e in enumerate(graph.edges):
        if e.src not in ids or e.dst not in ids:
            raise Malformed(f"{where}.edges[{k}]", "an edge to a node that is not in the graph")
    for k, call in enumerate(graph.module_calls):  # the module tree: each call inside an earlier one
        if call.parent is not None and not 0 <= call.parent < k:
            raise Malformed(f"{where}.module_calls[{k}].parent", "no such enclosing call")


def check_trace(trace: Trace) -> None:
    """References between parts of a trace: diagnostics to passes and events."""
    indexes = {p.index for p in trace.passes}
    if len(indexes) != len(trace.passes):
        raise Malformed("passes", "two passes share an index")
    for k, d in enumerate(trace.diagnostics):
        if d.event_index is not None and d.event_index >= len(trace.events):
            raise Malformed(f"diagnostics[{k}].event_index", "no such event")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
