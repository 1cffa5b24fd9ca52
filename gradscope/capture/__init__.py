"""Capture: the only part of gradscope that touches torch internals (modes, hooks, grad_fn).

It turns what autograd does into `gradscope.model` objects and keeps no torch object once
a pass ends.
"""

from .names import set_name
from .tracer import NestedTraceError, Tracer, active_tracer
from .walk import walk

__all__ = ["Tracer", "NestedTraceError", "active_tracer", "set_name", "walk"]
