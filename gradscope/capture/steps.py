"""Optimizer steps inside a trace: one event each, and the recorder out of their way.

An optimizer step updates every parameter in place: hundreds of ops that are one event
("optimizer-step") to gradscope. So, for a step without a closure, the step's pre-hook
takes the calling thread's recorder off the mode stack and the post-hook puts it back.
A step that raises never reaches its post-hook: the recorder is put back at the next
module call, the next step or the end of the trace, and when backward may have run unseen
in between the trace says so ("pass-not-recorded").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from ..events import OptimizerStep
from ..model import Source
from ._torch import pop_function_mode, push_function_mode, top_function_mode
from .guard import internal_error
from .source import user_source

if TYPE_CHECKING:
    from .recorder import RecordingMode
    from .state import TraceState


class OptimizerSteps:
    """The global optimizer-step hooks of one trace, while installed. `on_step(optimizer)`
    is told of each step that ended (the live checks: its parameters were updated)."""

    def __init__(self, state: TraceState, on_step: Callable[[torch.optim.Optimizer], None],
                 stay_off: Callable[[RecordingMode], bool] | None = None) -> None:
        self.state = state
        self._on_step = on_step
        # asked at a step's end, its recorder off the stack: keep it off? (steady.py)
        self._stay_off = stay_off
        self._handles: list = []
        self._failed_at: Source | None = None  # the line of the last step that stepped aside

    @property
    def count(self) -> int:
        """Steps taken in the trace (in the state: each pass records the step count it follows)."""
        return self.state.optimizer_steps

    def install(self) -> None:
        self._handles = [
            register_optimizer_step_pre_hook(self._on_start),
            register_optimizer_step_post_hook(self._on_end),
        ]

    def remove(self) -> None:
        for hook in self._handles:
            hook.remove()
        self._handles = []

    def _on_start(self, optimizer, args, kwargs) -> None:
        try:
            self._start(optimizer, args, kwargs)
        except Exception:  # (guard.py: the step runs as without gradscope)
            internal_error("noting the start of an optimizer step")

    def _on_end(self, optimizer, args, kwargs) -> None:
        try:
            self._end(optimizer, args, kwargs)
        except Exception:  # (guard.py: the step's event is dropped)
            internal_error("noting the end of an optimizer step")

    def _start(self, optimizer, args, kwargs) -> None:
        state = self.state
        mode = state.mode
        if torch.compiler.is_compiling() or mode is None:
            return
        if mode.stepped_aside:  # the last step raised: nothing was recorded since
            self.back_after_failed_step(until="the next step")
        mode.in_optimizer_step = True
        # (torch passes the step's own arguments, the optimizer first: `step(closure)` is (opt, closure))
        closure = args[1] if len(args) > 1 else kwargs.get("closure")
        if closure is None and top_function_mode() is mode:
            # Step aside entirely: each of the step's many ops would otherwise still be
            # dispatched to the recorder. (A closure runs forward and backward inside the
            # step, so with one the recorder stays and only passes the step's ops through.)
            pop_function_mode()
            mode.stepped_aside = True
            self._failed_at = user_source()
            state.modules.on_enter = self.back_after_failed_step  # (a module runs: the step is over)

    def _end(self, optimizer, args, kwargs) -> None:
        state = self.state
        mode = state.mode
        if torch.compiler.is_compiling() or mode is None:
            return
        if mode.stepped_aside:
            mode.stepped_aside = False
            state.modules.on_enter = None
            if self._stay_off is None or not self._stay_off(mode):
                push_function_mode(mode)
        mode.in_optimizer_step = False
        state.optimizer_steps += 1
        state.emit(OptimizerStep(optimizer=type(optimizer).__name__, step=self.count))
        self._on_step(optimizer)

    def back_after_failed_step(self, until: str = "") -> None:
        """An optimizer.step() raised (its post-hook never ran): put the recorder back. `until`
        ("the next step", "the trace ended"): backward may have run meanwhile unseen (no
        module ran since), which the trace says."""
        state = self.state
        state.modules.on_enter = None
        mode = state.mode
        if mode is None or not mode.stepped_aside:
            return
        mode.stepped_aside = mode.in_optimizer_step = False
        push_function_mode(mode)
        if until:
            at = self._failed_at
            state.not_recorded(None, at, reason=(
                f"optimizer.step() at line {at.line if at else '?'} raised, and until {until} no module "
                "ran: backward passes run in between, if any, were not seen"))
