"""Backward calls into passes: each intercepted `backward`/`autograd.grad` call becomes a
`Pass` on the trace, its numbers filled in, in order, once they reach the host.

A failure of gradscope's own while preparing or finishing a pass never stops the user's
backward: the pass (or its numbers) is dropped and the trace says so ("pass-not-recorded").
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ..events import BackwardError
from ..model import Pass, Repeat, Source
from .backward import FullDecision, PassRecorder
from .backward_call import BackwardCall, parse_call
from .checks import LiveChecks
from .guard import internal_error
from .quiet import unwatched, user_watching
from .recorder import BACKWARD_APIS
from .source import user_source
from .state import TraceState

if TYPE_CHECKING:
    from .steady import SteadyPasses

log = logging.getLogger("gradscope")


class Passes:
    """The passes of one trace: recorded (`on_backward`), finished (`finish`), dropped (`drop`)."""

    def __init__(self, state: TraceState, checks: LiveChecks) -> None:
        self.state = state
        self.checks = checks  # shown each pass before and after it runs
        # told of each pass once its numbers are in, and how it repeats an earlier one (if known)
        self.listeners: list[Callable[[Pass, Repeat | None], None]] = []
        self._lock = threading.Lock()  # (threads: a pass's index is its place in the list)
        self._unfinished: list[PassRecorder] = []  # passes whose numbers are still in transit
        self.steady: SteadyPasses | None = None  # told after each pass (the tracer sets it)

    @property
    def busy(self) -> bool:
        """Are numbers of a pass still in transit (a pass added now would overtake it)?"""
        return bool(self._unfinished)

    def on_backward(self, func, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The recorder's handler for the backward APIs: run the call, record it as a pass."""
        return self.record(lambda: parse_call(func, args, kwargs), lambda: func(*args, **kwargs), BACKWARD_APIS[func])

    def record(self, describe: Callable[[], BackwardCall], run: Callable[[], Any], api: str,
               steady: bool = False, decided: FullDecision | None = None) -> Any:
        """Run a backward call (`run()`) and record it as a pass; `describe()` gives its
        arguments, `api` names it. `steady`: its forward ran with the recorder off (steady.py);
        `decided`: whether it is recorded in full, asked already (light.py)."""
        source = user_source()
        # gradscope's own tensor work is hidden from the user's modes and profiler (quiet.py)
        quiet = unwatched if user_watching() else contextlib.nullcontext
        recorder = None
        try:
            with quiet():
                recorder = PassRecorder(self.state, describe(), source, steady=steady, decided=decided)
                recorder.quiet = quiet is unwatched
                index = recorder.before()
                self.checks.before_pass(recorder, index)
        except Exception as exc:  # never let gradscope stop the user's backward
            log.debug("gradscope: preparing a pass failed", exc_info=True)
            self.state.not_recorded(exc, source)
            recorder = None
        result, error = None, None
        try:
            result = run()
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            with quiet():
                self._after_backward(api, recorder, result, error, source)

    def _after_backward(self, api: str, recorder: PassRecorder | None, result: Any, error: BaseException | None,
                        source) -> None:
        state = self.state
        pass_index = state.next_pass_index
        if recorder is not None and recorder.index is not None:
            if error is not None:
                self.checks.after_failed_pass(recorder.index, error)
            try:
                with self._lock:
                    pass_index = state.next_pass_index
                    state.trace.passes.append(recorder.after(result, error, pass_index))
                    self._unfinished.append(recorder)
                self.finish(wait=False)
            except Exception as exc:
                log.debug("gradscope: finishing a pass failed", exc_info=True)
                state.not_recorded(exc, source)
        repeated = recorder is not None and recorder.repeated and recorder.call.plain
        self._ended(pass_index, api, error, source, repeated)

    def add_repeat(self, make: Callable[[int], Pass], repeat: Repeat, api: str, error: BaseException | None,
                   source: Source | None) -> Pass:
        """Add a pass that light.py recorded: `make(index)` gives it, its numbers in;
        `repeat` says how it repeats its template (for the listeners)."""
        with self._lock:
            assert not self._unfinished  # (light passes wait for none: CPU numbers)
            pass_index = self.state.next_pass_index
            finished = make(pass_index)
            self.state.trace.passes.append(finished)
        try:
            for listener in self.listeners:
                listener(finished, repeat)
        except Exception as exc:  # (as in `finish`: the pass stays, the trace says what failed)
            log.debug("gradscope: finishing a pass failed", exc_info=True)
            self.state.not_recorded(exc, source, partly=True)
        self._ended(pass_index, api, error, source, repeated=error is None)
        return finished

    def _ended(self, pass_index: int, api: str, error: BaseException | None, source: Source | None,
               repeated: bool) -> None:
        """A pass ended (`repeated`: a plain backward over the last quiet pass's graph)."""
        self.checks.after_pass(pass_index, error)
        if error is not None and isinstance(error, Exception):
            self.state.emit(BackwardError(api=api, type=type(error).__name__, message=str(error)), source=source)
        if self.steady is not None:
            try:
                self.steady.after_pass(repeated, error)
            except Exception:  # (guard.py: the recorder stays as it is)
                internal_error("choosing how to record the next pass")

    def finish(self, wait: bool = True) -> None:
        """Fill in the numbers of recorded passes, in order: those whose copy to the host has
        landed, or (`wait`) all of them."""
        while self._unfinished and (wait or self._unfinished[0].ready()):
            recorder = self._unfinished.pop(0)
            try:
                started = time.perf_counter()
                with unwatched():
                    finished = recorder.finish()
                for listener in self.listeners:
                    listener(finished, None)
                recorder.finished(time.perf_counter() - started)
            except Exception as exc:
                log.debug("gradscope: finishing a pass failed", exc_info=True)
                self.state.not_recorded(exc, recorder.source, partly=True)

    def drop(self, gone: list[Pass]) -> None:
        """Forget finished passes (a long run's `keep=`); their indices stay taken."""
        ids = set(map(id, gone))
        state = self.state
        with self._lock:
            state.trace.passes[:] = [p for p in state.trace.passes if id(p) not in ids]
            state.passes_dropped += len(ids)
