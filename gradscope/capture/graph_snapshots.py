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
from .source import user_source

if TYPE_CHECKING:
    from .tracer import Tracer

log = logging.getLogger("gradscope")

_TORCH = os.path.dirname(torch.__file__) + os.sep
MOST_SNAPSHOTS = 3


class RequiresGradReads:
    """The recorder's handler for `Tensor.requires_grad.__get__` (see `Tracer.intercepted`)."""

    def __init__(self, tracer: "Tracer") -> None:
        self.tracer = tracer
        self.lines: set[tuple[str, int]] = set()

    def __call__(self, func, args: tuple, kwargs: dict) -> Any:
        value = func(*args, **kwargs)
        # (the user's own read: torch's modules read requires_grad mid-forward, e.g. attention)
        if value and not self.tracer.trace.passes and len(self.lines) < MOST_SNAPSHOTS \
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
        index = self.tracer._graph_as_it_stands(tensor)
        if index is not None:
            self.tracer.emit(RequiresGradRead(tensor=self.tracer._leaf_label(tensor)), graph=index.graph, source=source)
