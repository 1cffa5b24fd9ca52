"""Queueing an op's forward value for a pass (shared by the walk and by repeated passes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Node
from ._torch import version_of
from .recorder import OpInfo
from .summaries import PendingBatch

if TYPE_CHECKING:
    from .graph_index import GraphIndex


def queue_op_value(index: GraphIndex, node: Node, note: OpInfo, fn, batch: PendingBatch) -> None:
    """An op's forward value, when its output is small and still the one the op made (alive,
    still computed by this node, never edited in place since: its version is 0)."""
    out = note.tensor() if note.tensor is not None else None
    if out is not None and version_of(out) == 0 and out.grad_fn is fn:
        index.pending_values.append((node, batch.keep(out)))
