"""Typed event records: what capture saw between passes, one dataclass per kind.

An `Event` (model.py) is the envelope (kind, source, pass index, graph); its `data` is one
of these records. Capture builds them, the rules in `gradscope.diagnostics` read their
attributes, and trace.json holds each as the plain JSON object it always held
(`EventData.to_dict`): keys in field order, a field marked optional left out while it is
None, keys this gradscope does not know kept in `extra` and written back as they came.

A record also reads like that object (`event.data["leaf"]`, `event.data.get("step")`,
`"update_norms" in event.data`), the way `Event.data` read when it was a dict. A kind this
gradscope does not know (a newer file's) loads as `OtherEvent`, all its keys in `extra`.
The JSON objects nested in records (a source line, an edit, a missing leaf) stay plain
dicts, described by `TypedDict`s; `gradscope.traceio` checks records and those on loading.

This module imports nothing of gradscope: it is part of the model.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, TypedDict


# The JSON objects nested in records stay plain dicts (trace.json holds them as they are);
# these say which keys they have, for type checkers and for traceio's checks on loading.
class SourceDict(TypedDict, total=False):
    """A line of the user's code (`model.Source`'s fields)."""

    file: str
    line: int
    code: str
    function: str
    cell: int | None


class Edit(SourceDict, total=False):
    """An in-place edit of a saved tensor: its op, module and line."""

    op: str
    module: str | None
    node: str  # the edit's own node, when it is in the pass's graph
    tensor: str  # for an edit through `.data`: the name of the tensor it aliases


class Cut(SourceDict, total=False):
    """Where a leaf was cut off from autograd: the op (`detach`, `data`, an op under no_grad) and line."""

    op: str


class MissingLeaf(TypedDict, total=False):
    """A parameter or leaf that got no gradient."""

    name: str
    shape: list[int]
    parameter: bool
    cut: Cut | None  # the first op that used it outside autograd, when seen


def optional(key: str | None = None) -> Any:
    """A field left out of the JSON object (and of the mapping view) while it is None."""
    return field(default=None, metadata={"optional": True, **({"key": key} if key else {})})


def keyed(key: str, default: Any) -> Any:
    """A field whose JSON key is not a Python name (`pass`)."""
    return field(default=default, metadata={"key": key})


@dataclass(eq=False)
class EventData:
    """The kind-specific part of an `Event`; reads like the JSON object trace.json holds.

    (A `Mapping` by registration, not by inheritance: an abstract base class would make
    every `isinstance` against a record slow, and capture makes one per event. Its fields
    can be set by key too, as capture set keys of the dicts: `step["update_norms"] = ...`.)
    """

    KIND: ClassVar[str] = ""
    _KEYS: ClassVar[dict[str, tuple[str, bool]]]  # JSON key -> (field name, optional), per class
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._KEYS = {}  # filled on first use: the dataclass fields exist only after @dataclass

    @property
    def kind(self) -> str:
        return self.KIND

    @classmethod
    def keys_to_fields(cls) -> dict[str, tuple[str, bool]]:
        """JSON key -> (field name, whether it is left out while None), in field order."""
        keys = cls.__dict__.get("_KEYS")
        if not keys:
            keys = {}
            for f in _own_fields(cls):
                keys[f.metadata.get("key", f.name)] = (f.name, bool(f.metadata.get("optional")))
            cls._KEYS = keys
        return keys

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON object trace.json holds for this record."""
        out: dict[str, Any] = {}
        for key, (name, opt) in self.keys_to_fields().items():
            value = getattr(self, name)
            if not (opt and value is None):
                out[key] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventData:
        """A record from its JSON object, as it is (traceio checks each field's type first)."""
        keys = cls.keys_to_fields()
        known = {keys[k][0]: v for k, v in data.items() if k in keys}
        extra = {k: v for k, v in data.items() if k not in keys}
        return cls(**known, extra=extra)

    # -- read like the dict it is saved as ------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        found = self.keys_to_fields().get(key)
        if found is None:
            return self.extra[key]
        value = getattr(self, found[0])
        if found[1] and value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        found = self.keys_to_fields().get(key)
        if found is None:
            self.extra[key] = value
        else:
            setattr(self, found[0], value)

    def __delitem__(self, key: str) -> None:
        found = self.keys_to_fields().get(key)
        if found is None:
            del self.extra[key]
        elif found[1] and getattr(self, found[0]) is not None:
            setattr(self, found[0], None)
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, other: Mapping[str, Any] | None = None, **more: Any) -> None:
        for key, value in [*(other or {}).items(), *more.items()]:
            self[key] = value

    def keys(self) -> KeysView[str]:
        return self.to_dict().keys()

    def items(self) -> ItemsView[str, Any]:
        return self.to_dict().items()

    def values(self) -> ValuesView[Any]:
        return self.to_dict().values()

    def __len__(self) -> int:
        return len(self.to_dict())

    def __bool__(self) -> bool:  # (asked of every event written: cheaper than its length)
        return bool(self.extra) or any(not opt or getattr(self, name) is not None
                                       for name, opt in self.keys_to_fields().values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventData) and other.kind != self.kind:
            return False
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable, like the dict it stands for)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


Mapping.register(EventData)


def _own_fields(cls: type) -> list[Field[Any]]:
    return [f for f in fields(cls) if f.name != "extra"]


@dataclass(eq=False, repr=False)
class LeafInplaceError(EventData):
    """PyTorch refused an in-place op on a leaf that requires grad (or a view of one)."""

    KIND = "leaf-inplace-error"
    op: str = ""
    leaf: str = ""  # the leaf's name ("" when it has none)
    message: str = ""  # torch's error, first line
    node: str | None = None  # the leaf's node id in `Event.graph`
    view: bool = False  # the op wrote through a view of the leaf


@dataclass(eq=False, repr=False)
class SavedTensorModified(EventData):
    """A tensor a node saved for backward was changed in place after the node's op ran."""

    KIND = "saved-tensor-modified"
    # "version": torch will refuse the backward; "data": the edit went through a `.data`
    # alias, which torch cannot see, so backward would silently use the new values
    detected_by: str = ""
    node: str = ""  # the node that saved it, in this pass's graph
    op: str = ""
    saved: str = ""  # the saved value's name (`self`, `other`, `result`)
    saved_by: SourceDict = field(default_factory=lambda: SourceDict())  # the line of the op that saved it
    module: str | None = None
    modified_by: list[Edit] = field(default_factory=list)
    message: str = ""  # torch's error, up to its hint ("" for a `.data` edit)


@dataclass(eq=False, repr=False)
class FreedGraphReused(EventData):
    """Nodes of this pass lost their saved tensors to an earlier backward."""

    KIND = "freed-graph-reused"
    nodes: list[str] = field(default_factory=list)
    freed_by: int | None = None  # the pass that freed them, when known


@dataclass(eq=False, repr=False)
class GradCarried(EventData):
    """Leaves whose `.grad` was already set when this pass started."""

    KIND = "grad-carried"
    # [node id in this pass, previous pass, node id there]
    leaves: list[list[int | str]] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class LeafUpdate(EventData):
    """Leaves changed in place between two passes (an optimizer step, `w -= lr * w.grad`)."""

    KIND = "leaf-update"
    leaves: list[list[int | str]] = field(default_factory=list)  # [last pass, node id there]


@dataclass(eq=False, repr=False)
class NoGradient(EventData):
    """Parameters and leaves that get no gradient from a pass although their siblings do."""

    KIND = "no-gradient"
    pass_index: int | None = keyed("pass", None)
    leaves: list[MissingLeaf] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class BackwardError(EventData):
    """A backward call raised."""

    KIND = "backward-error"
    api: str = ""  # "Tensor.backward", "torch.autograd.backward", "torch.autograd.grad"
    type: str = ""  # the exception's class name
    message: str = ""


@dataclass(eq=False, repr=False)
class NonleafGradRead(EventData):
    """The script read `.grad` of a non-leaf tensor that does not retain it (always None)."""

    KIND = "nonleaf-grad-read"
    shape: list[int] = field(default_factory=list)
    op: str = ""  # its grad_fn's class name
    name: str = ""
    defined_at: SourceDict | None = None  # the line that computed it


@dataclass(eq=False, repr=False)
class OptimizerStep(EventData):
    """An optimizer stepped; its update norms ||dw|| per parameter when they were measured."""

    KIND = "optimizer-step"
    optimizer: str = ""  # its class name
    step: int | None = optional()  # the count of steps seen so far
    update_norms: dict[str, float] | None = optional()  # parameter name -> ||dw||


@dataclass(eq=False, repr=False)
class NestedTrace(EventData):
    """The script's own `gradscope.trace()` ran inside this trace, which paused meanwhile."""

    KIND = "nested-trace"
    passes: int = 0  # the passes the inner trace recorded


@dataclass(eq=False, repr=False)
class PassNotRecorded(EventData):
    """A backward gradscope could not record, or recorded only in part."""

    KIND = "pass-not-recorded"
    reason: str = ""
    partly: bool = False


@dataclass(eq=False, repr=False)
class RequiresGradRead(EventData):
    """The script read `.requires_grad` of a computed tensor before any backward (graph saved)."""

    KIND = "requires-grad-read"
    tensor: str = ""  # its name ("" when it has none)


@dataclass(eq=False, repr=False)
class OtherEvent(EventData):
    """A kind this gradscope does not know (a newer file's): all its keys in `extra`."""

    other_kind: str = ""

    @property
    def kind(self) -> str:
        return self.other_kind

    @classmethod
    def keys_to_fields(cls) -> dict[str, tuple[str, bool]]:
        return {}


KINDS: dict[str, type[EventData]] = {cls.KIND: cls for cls in (
    LeafInplaceError, SavedTensorModified, FreedGraphReused, GradCarried, LeafUpdate, NoGradient,
    BackwardError, NonleafGradRead, OptimizerStep, NestedTrace, PassNotRecorded, RequiresGradRead)}


def event_data(kind: str, data: Mapping[str, Any] | None = None) -> EventData:
    """The record for `kind` from its JSON object (an unknown kind: an `OtherEvent`)."""
    cls = KINDS.get(kind)
    if cls is None:
        return OtherEvent(other_kind=kind, extra=dict(data or {}))
    return cls.from_dict(data or {})
