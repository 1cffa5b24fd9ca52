"""Live checks: the parts of diagnostics that must look at tensors while they exist.

The recorder reports in-place edits here, and each backward pass is shown here before it
runs. What is found becomes `Event`s on the trace; the rules in `gradscope.diagnostics`
turn events and the model into explained `Diagnostic`s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.weak import WeakIdKeyDictionary

from .source import user_source

if TYPE_CHECKING:
    from .backward import PassRecorder
    from .tracer import Tracer
    from .walk import GraphIndex

_MUTATIONS_KEPT = 8  # per tensor: enough to name the line behind a version bump


class LiveChecks:
    def __init__(self, tracer: "Tracer") -> None:
        self.tracer = tracer
        # tensor -> [(version after the edit, op, Source)], most recent last
        self.mutations: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def on_inplace(self, op: str, tensor: torch.Tensor, old_version: int) -> None:
        log = self.mutations.get(tensor)
        if log is None:
            log = self.mutations[tensor] = []
        log.append((tensor._version, op, user_source()))
        del log[:-_MUTATIONS_KEPT]

    def before_pass(self, recorder: "PassRecorder", index: "GraphIndex") -> None:
        """Look at the graph before backward runs (saved tensors still intact or not)."""
