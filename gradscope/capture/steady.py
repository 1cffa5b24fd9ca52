"""Steady passes: a training loop that repeats itself, recorded with the recorder off.

The recorder is a TorchFunctionMode: while it is on the mode stack, every torch call of the
user's code goes through torch's mode dispatch and the recorder's notes, a cost no faster
recorder can remove (docs/benchmarks.md). Yet once a loop's passes repeat one graph
(repeat.py: a pass shares the last quiet pass's nodes), what the recorder would note for
the next forward is known already: the op names, lines and modules are the template's.

So after `STEADY_AFTER` passes in a row that repeated the template, quietly, the recorder
steps off the calling thread's mode stack: at the end of the optimizer step that follows
(the step takes it off anyway, steps.py), or at the next module call. The global module
hooks come off too while no other thread records (modules.py `pause`: with any, torch
calls every module the slow way). While it is off,
backward calls are caught where all of torch's backward APIs meet,
`torch.autograd._engine_run_backward` (wrapped for that time only; torch patches the same
name for make_fx), and each is recorded as a steady pass: its graph recognised by wiring,
node classes and leaf tensors (repeat.py `replay`), its numbers those of any pass (the
loss, each leaf's `.grad`, value norms when due; edge gradients when the budget records it
in full). Only the small forward values of ops other than the roots (the loss) are not read
on a steady pass: the recorder alone holds an op's output.

The recorder comes back, for the next forward, after a pass whose graph did not repeat
(that one is recorded as the walk finds it, its ops named from their autograd classes: no
recorder saw them), a pass that raised, a diagnostic or other non-routine event, a
non-finite gradient, a backward of another kind (`autograd.grad`, `retain_graph`,
`create_graph`, `inputs=`), and for every `LOOK_EVERY`-th pass, so that what only the
recorder sees (in-place edits of leaves and of saved tensors, `.data` edits, `.grad` reads
of non-leaves, the line of an op that raises) is looked at regularly. In between, those
checks are off: the trade that makes a long run cheap (docs/architecture.md).
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable

from ..events import GradCarried, LeafUpdate, OptimizerStep
from ..model import Event
from ._torch import (
    compiling,
    engine_backward,
    function_mode_depth,
    pop_function_mode,
    push_function_mode,
    set_engine_backward,
    top_function_mode,
)
from .backward_call import BackwardCall, engine_call
from .guard import internal_error

if TYPE_CHECKING:
    from .light import LightPasses
    from .recorder import RecordingMode
    from .state import TraceState

STEADY_AFTER = 3  # passes in a row that repeated the template before the recorder steps off
LOOK_EVERY = 100  # every this many passes, one is recorded with the recorder on

# events a steady pass records as a recorded one does (they keep a loop steady): a step,
# the leaves it updated, gradients accumulating across passes
_SEEN_ALIKE = (OptimizerStep, LeafUpdate, GradCarried)

# steady passes: record(describe the call, run it, api name, steady=True) -> the call's result
Record = Callable[..., Any]


class SteadyPasses:
    """Takes the recorder of the thread that traces off its mode stack while passes repeat,
    and records the backward calls made meanwhile (see the module's docstring)."""

    def __init__(self, state: TraceState, record: Record, light: LightPasses,
                 alone: Callable[[], bool]) -> None:
        self.state = state
        self._record = record
        self.light = light  # records the passes it can from their numbers alone (light.py)
        self._alone = alone  # is the tracing thread the only one recording? (its module hooks then pause)
        self._thread = threading.get_ident()  # (the tracing thread: other threads keep recording)
        self.active = False  # the recorder is off the stack, backward caught at the engine
        self.wanted = False  # ... to be taken off at the next chance
        self.count = 0  # steady passes recorded (the trace's meta says how many)
        self._mode: RecordingMode | None = None
        self._original: Callable | None = None  # torch's engine entry while ours replaces it
        self._torch_engine: Callable = engine_backward() or _no_engine  # ... as it was at the start
        self._repeats = 0  # passes in a row that repeated the template, quietly
        self._noteworthy = False  # an event other than a routine one since the last pass
        self._in_pass = False
        self._depth = 0  # the mode stack's depth once the recorder stepped off
        self._back_wanted = False  # the recorder waits to go back (a user's mode is on top)
        self.paused = False  # (a nested trace runs: its passes are its own)
        state.event_listeners.append(self._on_event)

    # -- deciding -------------------------------------------------------------------------
    def after_pass(self, repeated: bool, error: BaseException | None) -> None:
        """A pass ended (recorded with the recorder on, or steady; `repeated`: a plain
        backward over the last quiet pass's graph): is the next forward recorded, or
        steady? (Only the tracing thread's passes count: another thread's recorder stays
        on its own stack.)"""
        if threading.get_ident() != self._thread:
            return
        repeated = repeated and error is None
        quiet = not self._noteworthy and not self.state.nonfinite_seen
        self._noteworthy = False
        self._repeats = self._repeats + 1 if repeated and quiet else 0
        template = self.state.last_quiet
        steady_next = (
            self._repeats >= STEADY_AFTER
            and template is not None and template.replayable
            and self.state.next_pass_index % LOOK_EVERY != 0
            and engine_backward() is not None
        )
        if self.active and not steady_next:
            self.step_back()
        elif not self.active:
            self.wanted = steady_next
            modules = self.state.modules
            if steady_next and modules.on_enter is None:
                modules.on_enter = self._at_module_call
            elif not steady_next and modules.on_enter == self._at_module_call:
                modules.on_enter = None

    def _on_event(self, event: Event) -> None:
        if not isinstance(event.data, _SEEN_ALIKE):
            self._noteworthy = True

    def describe(self, passes: int) -> str:
        """How many of the trace's `passes` were steady, for its meta (empty when none)."""
        if not self.count:
            return ""
        light = f" ({self.light.count:,} of them from their numbers alone)" if self.light.count else ""
        return (f"{self.count:,} of {passes:,} passes recorded steady{light}, the recorder off the mode stack: each "
                f"repeated the graph of the pass before it; what only the recorder sees (in-place edits of "
                f"leaves and saved tensors, .data edits, the line of a failing op, the small values of ops "
                f"other than the roots, which modules ran) was read on the other passes, at least every "
                f"{LOOK_EVERY}th")

    # -- stepping off and back ------------------------------------------------------------
    def stay_off(self, mode: RecordingMode) -> bool:
        """(At the end of an optimizer step, its recorder off the stack.) Keep it off, the
        passes steady? Else the step puts it back."""
        if not self.wanted or threading.get_ident() != self._thread:
            return False
        self._begin(mode)
        return True

    def _at_module_call(self) -> None:
        """(A module's forward starts.) Take the recorder off now, if it is on top; or put
        it back, if that had to wait."""
        state = self.state
        if state.modules.on_enter == self._at_module_call:
            state.modules.on_enter = None
        if threading.get_ident() != self._thread:
            return
        if self._back_wanted:
            self.step_back()
            return
        mode = state.mode
        if not self.wanted or self.active or mode is None or mode.in_optimizer_step or compiling() \
                or top_function_mode() is not mode:
            return
        pop_function_mode()
        self._begin(mode)

    def _begin(self, mode: RecordingMode) -> None:
        self.wanted = False
        self.active = True
        self._mode = mode
        self._depth = function_mode_depth()  # (the stack as the recorder left it)
        self._original = engine_backward()
        set_engine_backward(self._engine_backward)
        self.state.modules.log_calls = False  # (no op is tagged with a module call meanwhile)
        if self._alone():  # (another thread's recorder reads module paths: the hooks stay then)
            self.state.modules.pause()

    def step_back(self) -> None:
        """Put the recorder back on the stack and let backward calls reach it again.

        Only onto the stack as the recorder left it: a mode the user entered meanwhile
        would otherwise be under the recorder, and its `__exit__` would pop the recorder.
        Until that mode is gone, passes stay steady (each is recorded all the same)."""
        self.wanted = False
        if not self.active:
            return
        self.state.modules.resume()  # (module calls are seen again, `on_enter` too)
        if function_mode_depth() != self._depth:
            self._back_wanted = True
            if self.state.modules.on_enter is None:
                self.state.modules.on_enter = self._at_module_call
            return
        mode = self._mode
        self._stop_catching()
        if mode is not None:
            push_function_mode(mode)
            mode.back_on_stack()

    def end(self) -> bool:
        """The trace ends: stop catching backward calls. Is the recorder off the stack (so
        that the tracer must not pop it)?"""
        self.wanted = False
        if self.state.modules.on_enter == self._at_module_call:
            self.state.modules.on_enter = None
        if not self.active:
            return False
        self._stop_catching()
        return True

    def _stop_catching(self) -> None:
        self.active = self._back_wanted = False
        self.state.modules.log_calls = True
        self.state.modules.resume()
        if engine_backward() == self._engine_backward and self._original is not None:
            set_engine_backward(self._original)
        self._original = self._mode = None

    # -- steady passes --------------------------------------------------------------------
    def _engine_backward(self, t_outputs: Any, *args: Any, **kwargs: Any) -> Any:
        """torch's `_engine_run_backward`, while the recorder is off: records the pass."""
        # (None: our wrapper, called past its time by whoever kept it: torch's own then)
        original = self._original or self._torch_engine
        if not self.active or self.paused or self._in_pass or threading.get_ident() != self._thread \
                or compiling():
            return original(t_outputs, *args, **kwargs)
        template = self.state.last_quiet
        try:
            call: BackwardCall | None = engine_call(t_outputs, args, kwargs, template.api if template else "")
        except Exception:  # (guard.py: the recorder comes back; this call runs unrecorded)
            internal_error("reading a backward call")
            call = None
        if call is None:
            self.step_back()
            return original(t_outputs, *args, **kwargs)
        self._in_pass = True
        self.count += 1
        try:
            run = functools.partial(original, t_outputs, *args, **kwargs)
            general = functools.partial(self._record, lambda: call, run, call.api, steady=True)
            return self.light.record(call, template, run, general)
        finally:
            self._in_pass = False


def _no_engine(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this torch has no torch.autograd._engine_run_backward (steady passes are never used then)")
