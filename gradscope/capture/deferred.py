"""Numbers still on their way from the device, and the model fields they fill.

A pass's summaries are computed on the tensors' device and copied to the host in one batch
(summaries.py): until the copy lands, each model field that will hold one is a `Deferred`;
`fill()` writes the value once it is there. A field that will hold the same value as
another (a gradient summarised once, seen from two places) is a `SameAs`.
"""

from __future__ import annotations

from typing import Any

from ..model import single_number
from .summaries import Box


class Deferred:
    """`target.field` gets the resolved `pending` value (a number when `scalar`)."""

    __slots__ = ("target", "field", "pending", "scalar")

    def __init__(self, target: object, field: str, pending: Any, scalar: bool = False) -> None:
        self.target, self.field, self.pending, self.scalar = target, field, pending, scalar

    def fill(self) -> None:
        setattr(self.target, self.field, resolved(self.pending, self.scalar))


class SameAs:
    """`target.field` gets `source.source_field` (in a one-item list when `as_list`), once
    that is filled; nothing when it stays None."""

    __slots__ = ("target", "field", "source", "source_field", "as_list")

    def __init__(self, target: object, field: str, source: object, source_field: str, as_list: bool = False) -> None:
        self.target, self.field, self.source, self.source_field = target, field, source, source_field
        self.as_list = as_list

    def fill(self) -> None:
        value = getattr(self.source, self.source_field)
        if value is not None:
            setattr(self.target, self.field, [value] if self.as_list else value)


def resolved(pending: Any, scalar: bool = False) -> Any:
    """A resolved Pending -> TensorSummary; a Box -> its value (a number if `scalar`); lists element-wise."""
    if pending is None:
        return None
    if isinstance(pending, Box):
        return single_number(pending.value) if scalar else pending.value
    if isinstance(pending, list):
        return [resolved(p) for p in pending]
    return pending.result
