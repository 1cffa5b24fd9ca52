"""Stepping the recorder aside while another tool traces the user's code.

The JIT tracer (`torch.jit.trace`), FX's symbolic tracer and `torch.export` record the ops
they see together with the Python frame that called each one. With gradscope's mode on
the stack that frame is the recorder's own, and the recorder's bookkeeping (a `.shape`
read is an op to the JIT) lands in their graphs: traces then differ between runs and name
gradscope as every op's source. While they trace, the recorder is taken off the mode stack
of the calling thread, as Dynamo sees straight through it (recorder.py).

The entry points are wrapped for the length of a trace and restored by `remove()`; they
are looked up by torch at call time, so `from torch.jit import trace` done earlier is
covered too where torch calls the inner entry point.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from typing import Any, Callable, Iterator

import torch

from ._torch import LAZY_TRACER_MODULES, pop_function_mode, push_function_mode, top_function_mode
from ._torch import TRACER_ENTRY_POINTS as _ENTRY_POINTS


@contextlib.contextmanager
def mode_aside(mode: Any) -> Iterator[None]:
    """Take `mode` off the current thread's torch-function stack for the block, when it is on
    top (as it is unless the user pushed a mode of their own since)."""
    if mode is None or top_function_mode() is not mode:
        yield
        return
    pop_function_mode()
    try:
        yield
    finally:
        push_function_mode(mode)


class TracingAsides:
    """Wraps the entry points of torch's own tracers so that `current_mode()` steps aside."""

    def __init__(self, current_mode: Callable[[], Any]) -> None:
        self._current_mode = current_mode
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for module_name, attr in _ENTRY_POINTS:
            if module_name in LAZY_TRACER_MODULES and module_name not in sys.modules:
                continue
            try:
                owner: Any = importlib.import_module(module_name)
                *path, name = attr.split(".")
                for part in path:
                    owner = getattr(owner, part)
                original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            except (ImportError, AttributeError, KeyError):  # not in this torch
                continue
            self._saved.append((owner, name, original))
            setattr(owner, name, self._wrap(original))

    def watch_compile(self, after: Callable[[], None]) -> None:
        """Call `after()` after each `torch.compile(...)` call (until `remove()`)."""
        original = torch.compile

        @functools.wraps(original)
        def compile_then(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            finally:
                after()

        compile_then.__gradscope_original__ = original  # type: ignore[attr-defined]
        self._saved.append((torch, "compile", original))
        torch.compile = compile_then  # type: ignore[assignment]

    def remove(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved = []

    def _wrap(self, original: Callable) -> Callable:
        current_mode = self._current_mode

        @functools.wraps(original)
        def aside(*args: Any, **kwargs: Any) -> Any:
            with mode_aside(current_mode()):
                return original(*args, **kwargs)

        aside.__gradscope_original__ = original  # type: ignore[attr-defined]
        return aside
