"""Diagnostics: named rules that find autograd mistakes in a trace and explain them.

Each rule is a pure function of the saved model (passes and events), so a trace loaded
from JSON diagnoses exactly as the live one did. Facts only a live tensor can tell (saved
tensor versions, `.data` aliases, which parameters a module owns) are turned into events
during capture by `gradscope.capture.checks`.

    code                   severity        what
    leaf-inplace           error           in-place op on a leaf that requires grad
    saved-tensor-modified  error           a tensor saved for backward changed before backward
    grad-accumulation      warning / info  .grad carried across steps / micro-batching
    backward-twice         error           backward through a freed graph
    nonleaf-grad           warning         .grad read on a non-leaf (always None)
    no-gradient            warning         a parameter got no gradient while its siblings did
    nonfinite-gradient     error           where NaN/Inf first appears in a backward pass
    nonscalar-backward     error           backward() on a non-scalar without gradient=
    ddp-gradients-differ   error           DDP ranks hold different gradients after all-reduce

Notes (info, not mistakes of the user's: what the trace itself lacks, and why; see the
guide's "Limits"): `nested-trace` (the script's own gradscope.trace() paused this trace),
`pass-not-recorded` (a backward gradscope could not record, or only in part).

`Diagnostic.nodes` are node ids of pass `pass_index`'s graph. The one exception is
leaf-inplace, which has no pass: its nodes are ids in the graph of its "leaf-inplace-error"
event (`Event.graph`, the graph as it stood when the edit was refused).
"""

from __future__ import annotations

import logging
from typing import Callable

from ..model import Diagnostic, Trace
from ._common import Found
from .accumulation import grad_accumulation
from .backward_errors import backward_twice, nonscalar_backward
from .capture_notes import nested_trace, pass_not_recorded
from .gradients import no_gradient, nonfinite_gradient, nonleaf_grad
from .inplace import leaf_inplace, saved_tensor_modified
from .ranks import CODE as DDP_GRADIENTS_DIFFER

log = logging.getLogger("gradscope")

RULES: dict[str, Callable[[Trace], list[Found]]] = {
    "leaf-inplace": leaf_inplace,
    "saved-tensor-modified": saved_tensor_modified,
    "grad-accumulation": grad_accumulation,
    "backward-twice": backward_twice,
    "nonleaf-grad": nonleaf_grad,
    "no-gradient": no_gradient,
    "nonfinite-gradient": nonfinite_gradient,
    "nonscalar-backward": nonscalar_backward,
}
NOTES: dict[str, Callable[[Trace], list[Found]]] = {
    "nested-trace": nested_trace,
    "pass-not-recorded": pass_not_recorded,
}

CODES = tuple(RULES)
# found by comparing the traces of several processes (gradscope.distributed), not one
CROSS_RANK_CODES = (DDP_GRADIENTS_DIFFER,)


def diagnose(trace: Trace) -> list[Diagnostic]:
    """Every diagnostic the rules find in `trace`, in the order things happened.

    A rule that fails on an odd trace is skipped (logged at debug level): diagnosing never
    stops a trace from being saved or rendered.
    """
    found: list[tuple[float, int, Diagnostic]] = []
    for order, rule in enumerate([*RULES.values(), *NOTES.values()]):
        try:
            for when, d in rule(trace):
                found.append((when, order, d))
        except Exception:
            log.debug("gradscope: diagnostic rule %s failed", rule.__name__, exc_info=True)
    found.sort(key=lambda item: (item[0], item[1]))
    return [d for _, _, d in found]


__all__ = ["diagnose", "RULES", "NOTES", "CODES", "CROSS_RANK_CODES"]
