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
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from ..model import Pass, Trace

# events every training step has: they single no pass out
ROUTINE_EVENTS = frozenset({"optimizer-step", "leaf-update"})


def thin(trace: Trace, keep: int, seen: int | None = None, stride: int = 1,
         regular: set[int] | None = None, standouts: set[int] | frozenset[int] = frozenset()) -> None:
    """Keep at most about `keep` of `trace`'s passes (plus those diagnostics point at).

    `seen`: how many passes the run had, when some were dropped already (`RunningKeep`):
    `regular` are then the middle passes left, every `stride`-th of the run's, and
    `standouts` those kept for an error, a NaN/Inf gradient or an event of their own.
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
    trace.meta["sampling"] = (f"kept {len(trace.passes):,} of {total:,} passes (keep={keep}): "
                              + ", ".join(how))


class RunningKeep:
    """Thins `trace`'s passes as they finish (`add`, a tracer's pass listener), handing
    the ones it lets go to `drop`; `finish()` thins to `keep` at the end of the run."""

    def __init__(self, trace: Trace, keep: int, drop: Callable[[list[Pass]], None]) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.trace, self.keep, self.drop = trace, keep, drop
        self.ends = max(1, keep // 4)
        self.room = max(2 * keep - 2 * self.ends, 1)  # middle passes held while running
        self.seen = 0
        self.stride = 1  # every stride-th middle pass is held
        self.most_held = 0  # the most passes held at once (what bounds memory)
        self._tail: deque[Pass] = deque()
        self._middle: list[tuple[int, Pass]] = []
        self._middle_seen = 0
        self._standouts: set[int] = set()
        self._events = 0
        self._with_events: set[int] = set()

    def add(self, p: Pass) -> None:
        self.seen += 1
        if self.seen > self.ends:  # (the first passes stay)
            self._tail.append(p)
            if len(self._tail) > self.ends:
                self._leave_tail(self._tail.popleft())
        self.most_held = max(self.most_held, len(self.trace.passes))

    def _leave_tail(self, p: Pass) -> None:
        ordinal = self._middle_seen
        self._middle_seen += 1
        if len(self._standouts) < self.keep and self._stands_out(p):
            self._standouts.add(p.index)
            return
        if ordinal % self.stride:
            self.drop([p])
            return
        self._middle.append((ordinal, p))
        if len(self._middle) > self.room:
            self.stride *= 2
            gone = [q for o, q in self._middle if o % self.stride]
            self._middle = [(o, q) for o, q in self._middle if o % self.stride == 0]
            self.drop(gone)

    def _stands_out(self, p: Pass) -> bool:
        """An error, a non-finite gradient, or an event of its own (not a routine one)."""
        events = self.trace.events
        for e in events[self._events:]:
            if e.kind not in ROUTINE_EVENTS and e.pass_index is not None:
                self._with_events.add(e.pass_index)
        self._events = len(events)
        if p.error is not None or p.index in self._with_events:
            return True
        return any(n.grad_after is not None and not n.grad_after.finite for n in p.graph.leaves)

    def finish(self) -> None:
        """Thin what is left to about `keep` passes and state the sampling."""
        regular = {q.index for _, q in self._middle} if self.seen > len(self.trace.passes) else None
        thin(self.trace, self.keep, seen=self.seen, stride=self.stride, regular=regular,
             standouts=self._standouts)


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
