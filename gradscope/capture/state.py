"""The per-trace state: what one trace has recorded so far and remembers between passes.

One `TraceState` per `Tracer`. The parts of capture (the pass recorder, the walk, the live
checks, the optimizer-step hooks) receive it, or a narrower piece of it (a bound method, a
table), instead of the `Tracer`: they read and update the trace's data here, while the
`Tracer` alone installs and removes things (modes, hooks) and wires the parts together.
Nothing here installs anything or holds a torch object past the trace.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..events import EventData, PassNotRecorded
from ..model import Event, Graph, Source, Trace
from .full_passes import FullPasses
from .idtable import IdTable
from .modules import ModuleTracker
from .nodetable import NodeTable
from .source import user_source
from .summaries import SummaryOptions

if TYPE_CHECKING:
    from .recorder import RecordingMode
    from .repeat import QuietTemplate


@dataclass(frozen=True)
class GradientOptions:
    """What a pass records: gradients on/off, local Jacobians up to `max_jacobian` elements.

    A training loop builds the same graph every step. When that graph is big enough for
    its gradient statistics to cost (more than `sampling.SMALL` elements of output), edge
    gradients and Jacobians are recorded on the first `sampling.FIRST` passes of each distinct
    graph and on every `every`-th pass of it after while full passes stay within their
    budget (full_passes.py; and on the pass after one where a leaf's gradient was not
    finite); the other passes record the graph and the leaves'
    `.grad` with its norm (and NaN/Inf) but not its extremes and mean: one reduction per
    parameter instead of three or four. `every=1` records every pass in full; small graphs
    record every pass in full while that stays cheap, then a sample chosen by its cost
    (full_passes.py).
    """

    gradients: bool = True
    max_jacobian: int = 64
    every: int = 10


class TraceState:
    """The data of one trace, shared by the parts that record it (see the module's docstring)."""

    def __init__(self, summary_options: SummaryOptions, gradient_options: GradientOptions) -> None:
        self.trace = Trace()  # what is recorded: passes, events
        self.summary_options = summary_options  # how a tensor is summarised (values kept, statistics)
        self.gradient_options = gradient_options  # what a pass records (gradients, Jacobians, sampling)
        self.event_listeners: list[Callable[[Event], None]] = []  # told of each event as it is recorded
        self.passes_dropped = 0  # finished passes forgotten during the run (keep=); indices go on
        self.optimizer_steps = 0  # optimizer steps taken in the trace (a pass's `step`)
        self.graphs_seen: dict[int, int] = {}  # graph structure -> passes seen (see GradientOptions)
        self.nonfinite_seen = False  # a leaf's gradient was not finite: record the next pass in full
        self.full_passes = FullPasses()  # which passes of small graphs are recorded in full
        # the last pass recorded without edge gradients, for the next one that repeats it
        # to share its op nodes and edges (see repeat.py)
        self.last_quiet: QuietTemplate | None = None
        self.modules = ModuleTracker()  # running modules, parameter names, module calls
        self.leaf_names: IdTable = IdTable()  # leaf -> the name its line assigned it to
        self.leaf_sources: IdTable = IdTable()  # leaf -> the line that made it
        self.leaf_histories: IdTable = IdTable()  # leaf -> its LeafHistory (history.py)
        # recent op outputs, weakly: the graph "as it stood" when an op fails
        self.recent_outputs: deque = deque(maxlen=64)
        # each thread records with its own recorder and node notes (sequence numbers of
        # autograd nodes count per thread); the main thread's notes are `main_nodes`
        self.threads = threading.local()
        self.main_nodes = NodeTable()

    @property
    def next_pass_index(self) -> int:
        """The index the next recorded pass gets (dropped passes keep theirs)."""
        return len(self.trace.passes) + self.passes_dropped

    @property
    def mode(self) -> RecordingMode | None:
        """The calling thread's recorder (None in a thread that records nothing)."""
        return getattr(self.threads, "mode", None)

    @property
    def nodes(self) -> NodeTable:
        """The calling thread's notes on autograd nodes."""
        return getattr(self.threads, "nodes", None) or self.main_nodes

    def record_thread(self, mode: RecordingMode | None, nodes: NodeTable) -> None:
        """The calling thread records with `mode`, into `nodes`."""
        self.threads.mode, self.threads.nodes = mode, nodes

    def emit(self, data: EventData, graph: Graph | None = None, source: Source | None = None) -> Event:
        """Record an event on the trace, numbered by the pass that comes next, at `source`
        (else the user's line now), with the graph as it stood when no pass holds it; tell
        the listeners (the stream writer)."""
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

    def not_recorded(self, exc: BaseException | None, source: Source | None, partly: bool = False, reason: str = "") -> None:
        """Say in the trace that a pass was lost (or its numbers), and why: never a log line alone."""
        self.emit(PassNotRecorded(reason=reason or f"{type(exc).__name__}: {exc}", partly=partly),
                  source=source)

    def leaf_label(self, tensor: Any) -> str:
        """A leaf's parameter name, else the name its line gave it, else ""."""
        return self.modules.parameter_names.get(tensor) or self.leaf_names.get(tensor) or ""
