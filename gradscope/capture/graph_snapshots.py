"""The graph as it stands when a script asks autograd about it, before any backward.

A script that builds a graph and only inspects it (`print(y.requires_grad)`, the lesson's
"requires_grad spreads" demo) never runs backward, so no pass records its graph. Reading
`.requires_grad` of a tensor autograd computed is that moment: gradscope saves the graph
then, as a "requires-grad-read" event, so the report can draw it with each node's
requires_grad. Only before the first pass, once per source line, a few times per trace.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import torch

from ..events import RequiresGradRead
from .graph_index import GraphIndex
from .quiet import unwatched
from .source import user_source
from .walk import walk

if TYPE_CHECKING:
    from .state import TraceState

log = logging.getLogger("gradscope")

_TORCH = os.path.dirname(torch.__file__) + os.sep
KIND = "requires-grad-read"
MOST_SNAPSHOTS = 3


class RequiresGradReads:
    """The recorder's handler for `Tensor.requires_grad.__get__` (see `Tracer.intercepted`)."""

    def __init__(self, state: TraceState) -> None:
        self.state = state
        self.lines: set[tuple[str, int]] = set()

    def __call__(self, func, args: tuple, kwargs: dict) -> Any:
        value = func(*args, **kwargs)
        # (the user's own read: torch's modules read requires_grad mid-forward, e.g. attention)
        if value and not self.state.trace.passes and len(self.lines) < MOST_SNAPSHOTS \
                and not sys._getframe(2).f_code.co_filename.startswith(_TORCH):
            try:
                self._snapshot(args[0])
            except Exception:  # a check must never break the user's code
                log.debug("gradscope: saving the graph at a requires_grad read failed", exc_info=True)
        return value

    def _snapshot(self, tensor: torch.Tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.grad_fn is None:
            return
        source = user_source()
        key = (source.file, source.line) if source is not None else ("", 0)
        if key in self.lines:
            return
        self.lines.add(key)
        index = graph_as_it_stands(self.state)
        if index is not None:
            self.state.emit(RequiresGradRead(tensor=self.state.leaf_label(tensor)), graph=index.graph, source=source)


def graph_as_it_stands(state: TraceState) -> GraphIndex | None:
    """The graph (its GraphIndex) of the trace's recent op outputs that still exist."""
    alive = [r() for r in state.recent_outputs]
    alive = [t for t in alive if t is not None and t.grad_fn is not None]
    if not alive:
        return None
    with unwatched():
        index = walk(_tops(alive), state)
    for node in index.graph.nodes:
        node.is_root = False  # no backward started from anything yet
    return index


def _tops(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Tensors whose grad_fn no other tensor in the list consumes."""
    consumed = set()
    for t in tensors:
        for nxt, _ in t.grad_fn.next_functions:
            if nxt is not None:
                consumed.add(id(nxt))
    seen, tops = set(), []
    for t in tensors:
        key = id(t.grad_fn)
        if key not in consumed and key not in seen:
            seen.add(key)
            tops.append(t)
    return tops
