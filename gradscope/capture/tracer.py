"""The Tracer: installs the recorder and hooks, wires the parts of capture, removes it all.

The trace's data lives in a `TraceState` (state.py) that the parts receive; the Tracer
owns the lifecycle: the recorders on each thread's mode stack, the module and
optimizer-step hooks, pausing for a nested trace. Everything it installs (a
TorchFunctionMode per thread, global module hooks, optimizer step hooks) is removed in
`stop()`, on success and on failure alike. Only one tracer is active at a time.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import torch

from ..events import NestedTrace
from ..model import Event, Pass, Repeat, Source, Trace
from . import userwarnings
from ._torch import check_supported
from .asides import TracingAsides
from .checks import LiveChecks
from .full_passes import FullPasses
from .graph_snapshots import RequiresGradReads
from .light import LightPasses
from .nodetable import NodeTable
from .op_reports import OpReports
from .passes import Passes
from .recorder import BACKWARD_APIS, OpListeners, RecordingMode, prepare_for_dynamo
from .source import user_source
from .state import GradientOptions, TraceState
from .steady import SteadyPasses
from .steps import OptimizerSteps
from .summaries import SummaryOptions
from .updates import UpdateNorms

_active: "Tracer | None" = None


class NestedTraceError(RuntimeError):
    """A gradscope.trace() block was entered inside another one."""


class Tracer:
    """Records every backward pass while started. `trace` holds what was recorded."""

    def __init__(
        self,
        gradients: bool = True,
        stats: bool = True,
        max_values: int = 16,
        max_jacobian: int = 64,
        every: int = 10,
        yields: bool = False,
    ) -> None:
        state = self.state = TraceState(
            SummaryOptions(stats=stats, max_values=max_values),
            GradientOptions(gradients=gradients, max_jacobian=max_jacobian, every=every),
        )
        self.trace: Trace = state.trace
        self.full_passes: FullPasses = state.full_passes
        self.event_listeners: list[Callable[[Event], None]] = state.event_listeners  # told of each event
        self.modules = state.modules  # (its hooks are installed and removed here)
        self.checks = LiveChecks(state)
        self.passes = Passes(state, self.checks)
        # told of each finished pass, and how it repeats an earlier one (when capture knows)
        self.pass_listeners: list[Callable[[Pass, Repeat | None], None]] = self.passes.listeners
        # while passes repeat, the recorder steps off the mode stack (steady.py)
        light = LightPasses(state, self.passes.add_repeat, lambda: self.passes.busy, self.checks)
        self.steady = self.passes.steady = SteadyPasses(state, self.passes.record, light,
                                                        alone=lambda: len(self._modes) == 1)
        self.steps = OptimizerSteps(state, self.checks.on_optimizer_step,  # the recorder steps aside
                                    stay_off=self.steady.stay_off)
        self.updates = UpdateNorms(state)  # ‖Δw‖ of each step, in its event
        reports = self._reports = OpReports(state)
        self._listeners = OpListeners(reports.on_new_leaf, self.checks.on_inplace, reports.on_op_error,
                                      self.checks.on_no_grad_output)
        # calls the recorder hands over instead of recording as ops
        self.intercepted = {func: self.passes.on_backward for func in BACKWARD_APIS}
        # `.grad` reads: looked up by equality (each `Tensor.grad.__get__` is a new object)
        self.intercepted[torch.Tensor.grad.__get__] = reports.on_grad_read
        # `.grad` writes (zero_grad sets each to None) change no tensor: nothing to record
        self.intercepted[torch.Tensor.grad.__set__] = _call
        self.intercepted.update(self.checks.intercepted())
        self.intercepted[torch.Tensor.requires_grad.__get__] = RequiresGradReads(state)
        self._modes: list[RecordingMode] = []  # every thread's recorder, to pause and stop
        self._previous_thread_profile: Any = None
        self._asides = TracingAsides(lambda: state.mode)  # torch's own tracers: step aside
        self._warnings_installed = False
        # `gradscope trace`'s own tracer pauses while the script's gradscope.trace() runs
        self.yields = yields
        self._outer: Tracer | None = None  # the tracer paused while this one runs
        self._paused_at: Source | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        global _active
        check_supported()  # one clear line on a torch whose internals gradscope does not know
        if _active is not None:
            if not _active.yields:
                raise NestedTraceError(
                    "gradscope.trace() is already active; traces cannot be nested (end the outer block first)"
                )
            self._outer = _active
            _active._pause()
        _active = self
        try:
            self.modules.install()
            self.steps.install()
            self.updates.install()
            self._asides.install()
            prepare_for_dynamo()  # (a backward inside a compiled function: recorder.py)
            self._asides.watch_compile(prepare_for_dynamo)
            userwarnings.install()
            self._warnings_installed = True
            self._record_this_thread(self.state.main_nodes)
            self._previous_thread_profile = threading.getprofile()
            threading.setprofile(self._thread_started)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Remove everything installed by `start()`. Safe to call more than once."""
        global _active
        try:
            if threading.getprofile() == self._thread_started:
                threading.setprofile(self._previous_thread_profile)
            off_stack = self.steady.end()  # (steady passes: the recorder is off the stack already)
            mode = self.state.mode
            if mode is not None and mode.stepped_aside:  # a step raised: put it back
                self.steps.back_after_failed_step(until="the trace ended")
            if mode is not None and not off_stack:
                mode.__exit__(None, None, None)
            for other in self._modes:  # other threads' recorders stay on their stacks: inert
                other.__class__ = PausedMode
            self._modes = []
            self.state.threads.mode = None
        finally:
            self.finish_passes()
            self._asides.remove()
            if self._warnings_installed:
                userwarnings.remove()
                self._warnings_installed = False
            self.modules.remove()
            self.steps.remove()
            self.updates.remove()
            self.state.recent_outputs.clear()
            self.state.main_nodes.clear()
            if _active is self:
                _active = self._outer
                if self._outer is not None:
                    self._outer._resume(self)
                self._outer = None

    def _pause(self) -> None:
        """The script's own `gradscope.trace()` starts inside this one (`gradscope trace`
        runs it): record nothing until it ends; it records what this trace would."""
        self._paused_at = user_source()
        self.steady.paused = True
        for mode in self._modes:  # (it may be anywhere on a mode stack: it passes calls through)
            mode.__class__ = PausedMode
        self.modules.remove()
        self.steps.remove()
        self.updates.remove()

    def _resume(self, inner: "Tracer") -> None:
        self.steady.paused = False
        for mode in self._modes:
            mode.__class__ = RecordingMode
        self.modules.install()
        self.steps.install()
        self.updates.install()
        self.state.emit(NestedTrace(passes=len(inner.trace.passes)), source=self._paused_at)

    def uncaught(self, exc: BaseException) -> None:
        """The traced code ended with `exc`: report what the recorder did not see it raise."""
        self._reports.on_uncaught(exc)

    @property
    def next_pass_index(self) -> int:
        return self.state.next_pass_index

    def drop_passes(self, gone: list[Pass]) -> None:
        """Forget finished passes (a long run's `keep=`); their indices stay taken."""
        self.passes.drop(gone)

    def finish_passes(self, wait: bool = True) -> None:
        """Fill in the numbers of recorded passes: those that have landed, or (`wait`) all."""
        self.passes.finish(wait)

    @property
    def optimizer_steps(self) -> int:
        return self.state.optimizer_steps

    @property
    def nodes(self) -> NodeTable:
        """The calling thread's notes on autograd nodes (their sequence numbers count per thread)."""
        return self.state.nodes

    # -- threads ------------------------------------------------------------------------
    def _record_this_thread(self, nodes: NodeTable) -> None:
        state = self.state
        mode = RecordingMode(nodes, self.intercepted, state.recent_outputs, state.modules.here(), self._listeners)
        state.record_thread(mode, nodes)
        self._modes.append(mode)
        mode.__enter__()

    def _thread_started(self, frame, event, arg) -> None:
        """(A profile function, called once in each thread started during the trace: the
        torch-function mode stack is per thread.) Record the new thread too."""
        sys.setprofile(self._previous_thread_profile)
        if _active is self:
            self._record_this_thread(NodeTable())
            self.modules.resume()  # (steady passes paused the module hooks: this thread's recorder needs them)


def _call(func, args: tuple, kwargs: dict) -> Any:
    return func(*args, **kwargs)


class PausedMode(RecordingMode):
    """A paused recorder (its class while paused: nothing is checked per op for a pause)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def active_tracer() -> Tracer | None:
    return _active
