"""Bounding a long run's trace: which passes to keep when there are too many.

`trace(keep=N)` / `gradscope trace --max-passes N` keep at most about N passes of a run:
every pass a diagnostic points at, the first quarter of N, the last quarter of N, and
every k-th pass in between (k as small as fits). What was kept is stated in the trace's
`meta["sampling"]`, which the report shows.

Memory stays bounded while the run goes (`RunningKeep`): passes are thinned as they
finish, so that at most about 2 × N are held (every k-th of the middle, k doubling as the
run grows, plus passes with an error, a non-finite gradient or an event of their own);
when the run ends, `thin` brings what is left down to N. The stream a run writes as it goes
(`gradscope.traceio.stream`) holds every pass until the run ends.

`gradscope trace` without --max-passes holds a sample the same way (`RunningKeep(...,
held=True)`) for its report's pictures, while trace.json gets every pass from the stream:
the sample is then stated in `meta["in_memory"]`, which the saved file leaves out, and the
routine events of the passes let go (optimizer steps, leaf updates) are let go too: the
stream, and so the file, has them all. (With `keep=` the file is what is held: every
event stays.)
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from ..model import Event, LazyGraph, Pass, Repeat, Trace

# events every training step has: they single no pass out
ROUTINE_EVENTS = frozenset({"optimizer-step", "leaf-update"})
HELD_KEY = "in_memory"  # meta: the passes a run held in memory, when its file has them all
THIN_EVENTS_EVERY = 1024  # routine events recorded between two thinnings of the event list


def thin(trace: Trace, keep: int, seen: int | None = None, stride: int = 1,
         regular: set[int] | None = None, standouts: set[int] | frozenset[int] = frozenset(),
         held: bool = False, most_held: int | None = None) -> None:
    """Keep at most about `keep` of `trace`'s passes (plus those diagnostics point at).

    `seen`: how many passes the run had, when some were dropped already (`RunningKeep`):
    `regular` are then the middle passes left, every `stride`-th of the run's, and
    `standouts` those kept for an error, a NaN/Inf gradient or an event of their own.
    `held`: the passes are a sample held in memory of a run saved whole (`HELD_KEY`), at
    most `most_held` of them at once while it ran.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    passes = trace.passes
    total = len(passes) if seen is None else seen
    if total <= keep:
        return
    ends = max(1, keep // 4)
    diagnosed = {d.pass_index for d in trace.diagnostics if d.pass_index is not None}
    if len(passes) <= max(keep, 2 * ends):  # (dropped while running, and few enough now)
        first, sampled, last, step, extra = passes[:ends], passes[ends:-ends], passes[-ends:], 1, set()
    else:
        first, last = passes[:ends], passes[-ends:]
        middle = passes[ends:-ends]
        if regular is not None:  # (thinned while running: what stood out is no part of the every-k-th)
            middle = [p for p in middle if p.index in regular]
        room = max(keep - 2 * ends, 0)
        step = -(-len(middle) // room) if room else 0  # ceiling: every step-th of the middle
        sampled = middle[::step] if step else []
        kept = {p.index for p in (*first, *sampled, *last)}
        extra = {p.index for p in passes if p.index in diagnosed or p.index in standouts} - kept
        trace.passes = [p for p in passes if p.index in kept or p.index in extra]
    how = [f"the first {len(first)}", f"the last {len(last)}"]
    if step and sampled:
        k = step * stride
        how.insert(1, f"every {k}{_ordinal(k)} in between")
    if extra:
        why = "that diagnostics point at" if not extra - diagnosed else "with a diagnostic, an error, NaN/Inf or an event"
        how.append(f"{len(extra)} more {why}")
    if held:
        most = f", at most {most_held:,} at once while it ran" if most_held else ""
        trace.meta[HELD_KEY] = (f"the report's graphs are drawn from {len(trace.passes):,} of {total:,} passes "
                                f"held in memory ({', '.join(how)}{most}); trace.json and the charts over "
                                f"time have all {total:,}")
        return
    trace.meta["sampling"] = (f"kept {len(trace.passes):,} of {total:,} passes (keep={keep}): "
                              + ", ".join(how))


class RunningKeep:
    """Thins `trace`'s passes as they finish (`add`, a tracer's pass listener), handing
    the ones it lets go to `drop`, and the routine events around them (`on_event`, an
    event listener); `finish()` thins to `keep` at the end of the run (`held`: a sample
    for the report of a run saved whole, see the module's docstring)."""

    def __init__(self, trace: Trace, keep: int, drop: Callable[[list[Pass]], None], held: bool = False) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.trace, self.keep, self._drop, self.held = trace, keep, drop, held
        self._routine = 0  # routine events recorded since the event list was last thinned
        # passes let go, handed to `drop` a few at a time (each drop rebuilds the pass list)
        self._gone: list[Pass] = []
        self._batch = max(1, min(32, keep // 8)) if held else 1
        self._last_seen = -1  # the index of the last pass added
        self.ends = max(1, keep // 4)
        self.room = max(2 * keep - 2 * self.ends, 1)  # middle passes held while running
        self.seen = 0
        self.stride = 1  # every stride-th middle pass is held
        self.most_held = 0  # the most passes held at once (what bounds memory)
        self._tail: deque[tuple[Pass, Repeat | None]] = deque()  # (how each repeats, if told)
        self._middle: list[tuple[int, Pass]] = []
        self._middle_seen = 0
        self._standouts: set[int] = set()
        self._with_events: set[int] = set()

    def on_event(self, event: Event) -> None:
        """(An event listener.) A pass with an event of its own stands out; routine events
        are thinned with the passes they sit between."""
        if event.kind in ROUTINE_EVENTS:
            self._routine += 1
        elif event.pass_index is not None:
            self._with_events.add(event.pass_index)

    def drop(self, gone: list[Pass]) -> None:
        self._drop(gone)
        if self.held and self._routine >= THIN_EVENTS_EVERY:
            self._thin_events()

    def _thin_events(self) -> None:
        """Let go of the routine events numbered before the last pass seen whose passes on
        both sides (the one before: updated; the one after: stepped into) are let go.
        (Recent events stay: capture still completes them.)"""
        self._routine = 0
        held = {p.index for p in self.trace.passes}
        until = self._last_seen
        events = self.trace.events
        kept = [k for k, e in enumerate(events)
                if e.kind not in ROUTINE_EVENTS or e.pass_index is None or e.pass_index >= until
                or e.pass_index in held or e.pass_index - 1 in held]
        events[:] = [events[k] for k in kept]
        pointed = [d for d in self.trace.diagnostics if d.event_index is not None]
        if pointed:  # (found before the last thinning: their events' places move)
            place = {k: new for new, k in enumerate(kept)}
            for d in pointed:
                d.event_index = place.get(d.event_index)  # type: ignore[arg-type]

    def add(self, p: Pass, repeat: Repeat | None = None) -> None:
        """(A tracer's pass listener.) Hold a finished pass, or let it or an older one go."""
        self.seen += 1
        self._last_seen = p.index
        if self.seen > self.ends:  # (the first passes stay)
            self._tail.append((p, repeat))
            if len(self._tail) > self.ends:
                self._leave_tail(*self._tail.popleft())
        self.most_held = max(self.most_held, len(self.trace.passes))

    def _leave_tail(self, p: Pass, repeat: Repeat | None) -> None:
        ordinal = self._middle_seen
        self._middle_seen += 1
        if len(self._standouts) < self.keep and self._stands_out(p, repeat):
            self._standouts.add(p.index)
            return
        if ordinal % self.stride:
            self._gone.append(p)
            if len(self._gone) >= self._batch:
                self.drop(self._gone)
                self._gone = []
            return
        self._middle.append((ordinal, p))
        if len(self._middle) > self.room:
            self.stride *= 2
            gone = [q for o, q in self._middle if o % self.stride]
            self._middle = [(o, q) for o, q in self._middle if o % self.stride == 0]
            self.drop(gone + self._gone)
            self._gone = []

    def _stands_out(self, p: Pass, repeat: Repeat | None) -> bool:
        """An error, a non-finite gradient, or an event of its own (not a routine one)."""
        if p.error is not None or p.index in self._with_events:
            return True
        graph = p.graph
        if type(graph) is LazyGraph and not graph.made:  # (a light pass: its numbers)
            return not graph.numbers.finite()
        nodes = graph.nodes
        # (not `Graph.leaves`: a list made on each call; of a repeat, the nodes it owns)
        for n in nodes if repeat is None else map(nodes.__getitem__, repeat.own):
            g = n.grad_after
            if g is not None and not g.finite and n.kind == "leaf":
                return True
        return False

    def finish(self) -> None:
        """Thin what is left to about `keep` passes and state the sampling."""
        if self._gone:
            self.drop(self._gone)
            self._gone = []
        regular = {q.index for _, q in self._middle} if self.seen > len(self.trace.passes) else None
        thin(self.trace, self.keep, seen=self.seen, stride=self.stride, regular=regular,
             standouts=self._standouts, held=self.held, most_held=self.most_held)
        if self.held and self.seen > len(self.trace.passes):
            self._last_seen += 2  # (the run is over: every event is complete)
            self._thin_events()


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
