"""What the recorder reports besides the ops it tags: new leaves, failed ops, `.grad` reads.

Each turns into per-trace data (a leaf's name and line) or an event on the trace: a leaf
edited in place where autograd forbids it ("leaf-inplace-error", with the graph as it
stood), the `.grad` of a non-leaf read ("nonleaf-grad-read": it is None).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from typing import Any, cast

import torch

from ..events import LeafInplaceError, NonleafGradRead, SourceDict
from ..torch_errors import leaf_inplace
from ._torch import base_of
from .graph_snapshots import graph_as_it_stands
from .names import leaf_names_changed, node_name
from .recorder import OpInfo, assigned_name
from .source import assignment_target, user_source, user_source_of
from .state import TraceState

log = logging.getLogger("gradscope")


class OpReports:
    """The recorder's `on_new_leaf` and `on_op_error`, and the `.grad` read handler."""

    def __init__(self, state: TraceState) -> None:
        self.state = state

    def on_new_leaf(self, tensor: torch.Tensor) -> None:
        """A tensor became a leaf that requires grad: name it after the line that made it."""
        state = self.state
        if tensor in state.leaf_names:
            return
        source = user_source()
        name = assignment_target(source.code) if source else None
        if name:
            state.leaf_names[tensor] = name
        if source:
            state.leaf_sources[tensor] = source
            leaf_names_changed()

    def on_op_error(self, op: str, tensors: list[torch.Tensor], exc: RuntimeError) -> None:
        try:
            if leaf_inplace(str(exc)) and tensors:
                leaf = _modified_leaf(tensors)
                index = graph_as_it_stands(self.state)
                node = next((i for i, t in index.leaf_tensors.items() if t is leaf), None) if index else None
                self.state.emit(
                    LeafInplaceError(op=op, leaf=self.state.leaf_label(leaf), message=str(exc).splitlines()[0],
                                     node=node, view=leaf is not tensors[0]),
                    graph=index.graph if index else None,
                )
        except Exception:
            log.debug("gradscope: recording an op error failed", exc_info=True)

    def on_uncaught(self, exc: BaseException) -> None:
        """The traced code ended with `exc`. A leaf edited in place that the recorder did not
        see refuse (it was off the stack: steady.py) is reported from the traceback: its
        line, and the leaf and op as that line writes them."""
        try:
            if not isinstance(exc, RuntimeError) or not leaf_inplace(str(exc)):
                return
            message = str(exc).splitlines()[0]
            if any(isinstance(e.data, LeafInplaceError) for e in self.state.trace.events[-16:]):
                return  # (the recorder saw it raise)
            source = user_source_of(exc.__traceback__)
            written = _INPLACE_CALL.search(source.code) if source is not None else None
            self.state.emit(LeafInplaceError(op=written.group(2) if written else "",
                                             leaf=written.group(1) if written else "", message=message),
                            source=source)
        except Exception:
            log.debug("gradscope: reporting an uncaught error failed", exc_info=True)

    def on_grad_read(self, func, args: tuple, kwargs: dict) -> Any:
        result = func(*args, **kwargs)
        t = args[0] if args else None
        if isinstance(t, torch.Tensor) and t.grad_fn is not None and not t.retains_grad:
            info = self.state.nodes.get(t.grad_fn)
            if type(info) is not OpInfo:
                info = None
            self.state.emit(NonleafGradRead(
                shape=list(t.shape), op=type(t.grad_fn).__name__,
                name=node_name(t.grad_fn) or assigned_name(info) or "",
                defined_at=cast(SourceDict, asdict(info.source)) if info is not None and info.source is not None else None,
            ))
        return result


# `model.weight.add_(1)`: the tensor as the line names it, and the in-place method
_INPLACE_CALL = re.compile(r"([A-Za-z_][\w.]*)\.([a-z]\w*_)\(")


def _modified_leaf(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The leaf an in-place op tried to change: its first argument, or the leaf it is a view of."""
    for t in tensors:
        base = base_of(t)
        base = base if base is not None else t
        if base.requires_grad and base.grad_fn is None:
            return base
    return tensors[0]
