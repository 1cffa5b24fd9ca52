"""The Tracer: installs the recorder and hooks, records passes and events, removes it all.

Everything the tracer installs (a TorchFunctionMode, global module hooks, an optimizer
step hook) is removed in `stop()`, on success and on failure alike. Only one tracer is
active at a time.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from dataclasses import asdict
from typing import Any, Callable, cast

import torch

from ..events import BackwardError, EventData, LeafInplaceError, NestedTrace, NonleafGradRead, PassNotRecorded, SourceDict
from ..model import Event, Pass, Source, Trace
from ..torch_errors import leaf_inplace
from . import userwarnings
from ._torch import base_of, check_supported
from .asides import TracingAsides
from .backward import GradientOptions, PassRecorder
from .backward_call import parse_call
from .checks import LiveChecks
from .full_passes import FullPasses
from .graph_snapshots import RequiresGradReads
from .idtable import IdTable
from .modules import ModuleTracker
from .names import leaf_names_changed, node_name
from .nodetable import NodeTable
from .quiet import unwatched, user_watching
from .recorder import BACKWARD_APIS, OpInfo, RecordingMode, assigned_name, prepare_for_dynamo
from .repeat import QuietTemplate
from .source import assignment_target, user_source
from .steps import OptimizerSteps
from .summaries import SummaryOptions
from .updates import UpdateNorms
from .walk import walk

log = logging.getLogger("gradscope")

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
        self.summary_options = SummaryOptions(stats=stats, max_values=max_values)
        self.gradient_options = GradientOptions(gradients=gradients, max_jacobian=max_jacobian, every=every)
        self.graphs_seen: dict[int, int] = {}  # graph structure -> passes seen (see GradientOptions)
        self.nonfinite_seen = False
        self.full_passes = FullPasses()  # which passes of small graphs are recorded in full
        # the last pass recorded without edge gradients, for the next one that repeats it
        # to share its op nodes and edges (see repeat.py)
        self.last_quiet: QuietTemplate | None = None
        self.trace = Trace()
        self.passes_dropped = 0  # finished passes forgotten during the run (keep=); indices go on
        self.modules = ModuleTracker()
        self.leaf_names: IdTable = IdTable()
        self.leaf_sources: IdTable = IdTable()
        self.steps = OptimizerSteps(self)  # optimizer-step events; the recorder steps aside
        self.updates = UpdateNorms(self)  # ‖Δw‖ of each step, in its event
        self.leaf_histories: IdTable = IdTable()  # leaf -> its LeafHistory
        self.checks = LiveChecks(self)
        # calls the recorder hands to the tracer instead of recording as ops
        self.intercepted = {func: self._on_backward for func in BACKWARD_APIS}
        # `.grad` reads: looked up by equality (each `Tensor.grad.__get__` is a new object)
        self.intercepted[torch.Tensor.grad.__get__] = self.on_grad_read
        # `.grad` writes (zero_grad sets each to None) change no tensor: nothing to record
        self.intercepted[torch.Tensor.grad.__set__] = _call
        self.intercepted.update(self.checks.intercepted())
        self.intercepted[torch.Tensor.requires_grad.__get__] = RequiresGradReads(self)
        # recent op outputs, weakly: the graph "as it stood" when an op fails
        self.recent_outputs: deque = deque(maxlen=64)
        # Each thread records with its own mode and notes (threads.py); the main thread's here
        self._threads = threading.local()
        self._main_nodes = NodeTable()
        self._modes: list[RecordingMode] = []  # every thread's recorder, to pause and stop
        self._previous_thread_profile: Any = None
        self._pass_lock = threading.Lock()
        self._unfinished: list[PassRecorder] = []  # passes whose numbers are still in transit
        self.pass_listeners: list[Callable[[Pass], None]] = []  # told of each pass once its numbers are in
        self.event_listeners: list[Callable[[Event], None]] = []  # told of each event as it is recorded
        self._asides = TracingAsides(lambda: self._mode)  # torch's own tracers: step aside
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
            self._record_this_thread(self._main_nodes)
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
            if self._mode is not None and self._mode.stepped_aside:  # a step raised: put it back
                self.steps.back_after_failed_step(until="the trace ended")
            mode = self._mode
            if mode is not None:
                mode.__exit__(None, None, None)
            for other in self._modes:  # other threads' recorders stay on their stacks: inert
                other.__class__ = PausedMode
            self._modes = []
            self._threads.mode = None
        finally:
            self.finish_passes()
            self._asides.remove()
            if self._warnings_installed:
                userwarnings.remove()
                self._warnings_installed = False
            self.modules.remove()
            self.steps.remove()
            self.updates.remove()
            self.recent_outputs.clear()
            self._main_nodes.clear()
            if _active is self:
                _active = self._outer
                if self._outer is not None:
                    self._outer._resume(self)
                self._outer = None

    def _pause(self) -> None:
        """The script's own `gradscope.trace()` starts inside this one (`gradscope trace`
        runs it): record nothing until it ends; it records what this trace would."""
        self._paused_at = user_source()
        for mode in self._modes:  # (it may be anywhere on a mode stack: it passes calls through)
            mode.__class__ = PausedMode
        self.modules.remove()
        self.steps.remove()
        self.updates.remove()

    def _resume(self, inner: "Tracer") -> None:
        for mode in self._modes:
            mode.__class__ = RecordingMode
        self.modules.install()
        self.steps.install()
        self.updates.install()
        self.emit(NestedTrace(passes=len(inner.trace.passes)), source=self._paused_at)

    @property
    def next_pass_index(self) -> int:
        return len(self.trace.passes) + self.passes_dropped

    def drop_passes(self, gone: list[Pass]) -> None:
        """Forget finished passes (a long run's `keep=`); their indices stay taken."""
        ids = set(map(id, gone))
        with self._pass_lock:
            self.trace.passes[:] = [p for p in self.trace.passes if id(p) not in ids]
            self.passes_dropped += len(ids)

    @property
    def optimizer_steps(self) -> int:
        return self.steps.count

    # -- threads ------------------------------------------------------------------------
    @property
    def _mode(self) -> RecordingMode | None:
        """The calling thread's recorder (None in a thread that records nothing)."""
        return getattr(self._threads, "mode", None)

    @property
    def nodes(self) -> NodeTable:
        """The calling thread's notes on autograd nodes (their sequence numbers count per thread)."""
        return getattr(self._threads, "nodes", None) or self._main_nodes

    def _record_this_thread(self, nodes: NodeTable) -> None:
        mode = RecordingMode(self, nodes)
        self._threads.mode, self._threads.nodes = mode, nodes
        self._modes.append(mode)
        mode.__enter__()

    def _thread_started(self, frame, event, arg) -> None:
        """(A profile function, called once in each thread started during the trace: the
        torch-function mode stack is per thread.) Record the new thread too."""
        sys.setprofile(self._previous_thread_profile)
        if _active is self:
            self._record_this_thread(NodeTable())

    # -- events from the recorder -------------------------------------------------------
    def emit(self, data: EventData, graph=None, source=None) -> Event:
        event = Event(
            kind=data.kind,
            source=source if source is not None else user_source(),
            pass_index=self.next_pass_index,
            data=data,
            graph=graph,
        )
        self.trace.events.append(event)
        for listener in self.event_listeners:
            listener(event)
        return event

    def on_new_leaf(self, tensor: torch.Tensor) -> None:
        """A tensor became a leaf that requires grad: name it after the line that made it."""
        if tensor in self.leaf_names:
            return
        source = user_source()
        name = assignment_target(source.code) if source else None
        if name:
            self.leaf_names[tensor] = name
        if source:
            self.leaf_sources[tensor] = source
            leaf_names_changed()

    def on_inplace(self, op: str, tensor: torch.Tensor, old_version: int) -> None:
        self.checks.on_inplace(op, tensor, old_version)

    def on_op_error(self, op: str, tensors: list[torch.Tensor], exc: RuntimeError) -> None:
        try:
            if leaf_inplace(str(exc)) and tensors:
                leaf = _modified_leaf(tensors)
                index = self._graph_as_it_stands(leaf)
                node = next((i for i, t in index.leaf_tensors.items() if t is leaf), None) if index else None
                self.emit(
                    LeafInplaceError(op=op, leaf=self._leaf_label(leaf), message=str(exc).splitlines()[0],
                                     node=node, view=leaf is not tensors[0]),
                    graph=index.graph if index else None,
                )
        except Exception:
            log.debug("gradscope: recording an op error failed", exc_info=True)

    def on_grad_read(self, func, args: tuple, kwargs: dict) -> Any:
        result = func(*args, **kwargs)
        t = args[0] if args else None
        if isinstance(t, torch.Tensor) and t.grad_fn is not None and not t.retains_grad:
            info = self.nodes.get(t.grad_fn)
            if type(info) is not OpInfo:
                info = None
            self.emit(NonleafGradRead(
                shape=list(t.shape), op=type(t.grad_fn).__name__,
                name=node_name(t.grad_fn) or assigned_name(info) or "",
                defined_at=cast(SourceDict, asdict(info.source)) if info is not None and info.source is not None else None,
            ))
        return result

    # -- backward -----------------------------------------------------------------------
    def _on_backward(self, func, args: tuple, kwargs: dict[str, Any]) -> Any:
        source = user_source()
        # gradscope's own tensor work is hidden from the user's modes and profiler (quiet.py)
        quiet = unwatched if user_watching() else contextlib.nullcontext
        recorder = None
        try:
            with quiet():
                recorder = PassRecorder(self, parse_call(func, args, kwargs), source)
                recorder.quiet = quiet is unwatched
                index = recorder.before()
                self.checks.before_pass(recorder, index)
        except Exception as exc:  # never let gradscope stop the user's backward
            log.debug("gradscope: preparing a pass failed", exc_info=True)
            self.not_recorded(exc, source)
            recorder = None
        result, error = None, None
        try:
            result = func(*args, **kwargs)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            with quiet():
                self._after_backward(func, recorder, result, error, source)

    def _after_backward(self, func, recorder: PassRecorder | None, result: Any, error: BaseException | None,
                        source) -> None:
        pass_index = self.next_pass_index
        if recorder is not None and recorder.index is not None:
            if error is not None:
                self.checks.after_failed_pass(recorder.index, error)
            try:
                with self._pass_lock:  # (threads: a pass's index is its place in the list)
                    pass_index = self.next_pass_index
                    self.trace.passes.append(recorder.after(result, error, pass_index))
                    self._unfinished.append(recorder)
                self.finish_passes(wait=False)
            except Exception as exc:
                log.debug("gradscope: finishing a pass failed", exc_info=True)
                self.not_recorded(exc, source)
        self.checks.after_pass(pass_index, error)
        if error is not None and isinstance(error, Exception):
            self.emit(
                BackwardError(api=BACKWARD_APIS[func], type=type(error).__name__, message=str(error)),
                source=source,
            )

    def finish_passes(self, wait: bool = True) -> None:
        """Fill in the numbers of recorded passes, in order: those whose copy to the host has
        landed, or (`wait`) all of them."""
        while self._unfinished and (wait or self._unfinished[0].ready()):
            recorder = self._unfinished.pop(0)
            try:
                started = time.perf_counter()
                with unwatched():
                    finished = recorder.finish()
                for listener in self.pass_listeners:
                    listener(finished)
                recorder.finished(time.perf_counter() - started)
            except Exception as exc:
                log.debug("gradscope: finishing a pass failed", exc_info=True)
                self.not_recorded(exc, recorder.source, partly=True)

    def not_recorded(self, exc: BaseException | None, source, partly: bool = False, reason: str = "") -> None:
        """Say in the trace that a pass was lost (or its numbers), and why: never a log line alone."""
        self.emit(PassNotRecorded(reason=reason or f"{type(exc).__name__}: {exc}", partly=partly),
                  source=source)

    # -- helpers ------------------------------------------------------------------------
    def _leaf_label(self, tensor: torch.Tensor) -> str:
        return self.modules.parameter_names.get(tensor) or self.leaf_names.get(tensor) or ""

    def _graph_as_it_stands(self, leaf: torch.Tensor):
        """The graph (its GraphIndex) of the recent outputs that still exist."""
        alive = [r() for r in self.recent_outputs]
        alive = [t for t in alive if t is not None and t.grad_fn is not None]
        if not alive:
            return None
        with unwatched():
            index = walk(_tops(alive), self)
        for node in index.graph.nodes:
            node.is_root = False  # no backward started from anything yet
        return index


def _modified_leaf(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The leaf an in-place op tried to change: its first argument, or the leaf it is a view of."""
    for t in tensors:
        base = base_of(t)
        base = base if base is not None else t
        if base.requires_grad and base.grad_fn is None:
            return base
    return tensors[0]


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


def _call(func, args: tuple, kwargs: dict) -> Any:
    return func(*args, **kwargs)


class PausedMode(RecordingMode):
    """A paused recorder (its class while paused: nothing is checked per op for a pause)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def active_tracer() -> Tracer | None:
    return _active
