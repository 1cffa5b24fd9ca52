"""Which passes of a small graph are recorded in full, chosen by what they cost.

A full pass (edge gradients, local Jacobians) costs gradscope far more than the pass
itself on a small model: a few hundred Python-level calls per node against a backward of
microseconds. A short run (the lesson, a showcase, a test) can afford every pass in full;
a training loop of thousands of steps cannot. So the tracer measures its own time:

- every pass of a small graph is recorded in full while gradscope's time on full passes
  stays under `GRACE` seconds in all, and always the first `FIRST` passes;
- a short run of a cheap graph (the first `SHORT` passes of a run, such as the lesson's
  and the showcases': the longest, a logistic regression, has 141 of about 1.5 ms) is all
  recorded in full while a full pass costs under `SHORT_COST` on average: a count, not a
  time, decides what a short run is, so that a slow or loaded machine records the same
  passes of it in full (a costlier graph, a small MLP's of ~10 ms, gets the grace alone);
- after that, a pass is recorded in full only while that time stays under `SHARE` of the
  run's time since its first pass (the user's step, forward, optimizer and gradscope's
  own work together): full passes are then spaced out by their cost. Past `FREE` full
  passes they are also kept `every` passes apart (as big graphs are sampled), so that a
  slow step (a loaded machine, a slow data loader) cannot make most passes of a long run
  full and its memory grow with them.

A full pass's cost is the time of its backward call (hooks, summaries, Jacobians) and
of its finishing (its numbers filled in, its record written to the trace's stream: a full
pass's edge gradients and Jacobians make a record a hundred times a light one's), each
less what a pass without edge gradients takes there (measured on those passes; until one
was seen the whole time counts, which errs on the side of fewer full passes).

Big graphs (backward.py: over 65,536 output elements) have full passes sampled instead:
the first few of each distinct graph and every `every`-th after. A full pass of a big
graph can cost several of its steps, so those are budgeted too, on their own
(`FullPasses.for_big`): past its first passes a big graph's sampled pass is recorded in
full while that time is within the grace, then within the share of the run's time; the
trace's meta says how many were left light.

Times are the tracing thread's CPU time, not the wall clock: on a loaded machine the wall
clock runs on while the process waits for a core, and a budget in wall seconds would
record a short run's passes in full or not depending on the neighbours. Not the process's
CPU time either: reading it samples every thread's clock, which on a virtual machine can
wait milliseconds for another CPU (measured: several times a small step, docs/benchmarks.md).
(torch's own threads are then left out, of the run's time as of the passes': the share
errs towards fewer full passes.)
"""


from __future__ import annotations

import time
from typing import Callable

GRACE = 0.3  # CPU seconds of full recording any run gets before passes are sampled
# after that, full passes may take this share of the run's (CPU) time: a tenth of the 20 % a
# long run's `gradscope trace` may add in all (it was 5 %: docs/benchmarks.md, tenth session)
SHARE = 0.02
FIRST = 10  # passes always recorded in full, whatever their cost
SHORT = 150  # a run's first passes, all recorded in full while they cost under SHORT_COST each
SHORT_COST = 0.005  # (on average: at most 0.75 s in all)
FREE = 200  # full passes before they are also kept `every` passes apart


def cpu_time() -> float:
    """The clock of the full-pass budget: this thread's CPU time, in seconds."""
    return time.thread_time()


class FullPasses:
    """The full-recording budget of one trace (see the module's docstring)."""

    def __init__(self, grace: float | None = None, share: float | None = None, first: int | None = None,
                 clock: Callable[[], float] = cpu_time, short: int | None = None) -> None:
        self.grace = GRACE if grace is None else grace
        self.share = SHARE if share is None else share
        self.first = FIRST if first is None else first
        self.short = SHORT if short is None else short
        self.clock = clock
        self.started: float | None = None  # when the first pass began
        self.spent = 0.0  # seconds spent on full passes beyond what a light pass takes
        self.passes = 0  # passes asked about
        self.full = 0  # passes recorded in full
        self._light: float | None = None  # a light pass's time (moving average)
        self._light_finish: float | None = None  # ... and its finishing's
        self._last_full = 0  # the number (1, 2, ...) of the last pass recorded in full
        self.skipped = 0  # (big graphs) sampled passes left light by the budget
        self.big: FullPasses | None = None  # big graphs' own budget, made at their first pass

    def due(self, every: int = 1) -> bool:
        """Record the pass that starts now in full? (`every`: the least gap between full
        passes once the grace is spent.)"""
        within = self._start_pass()
        full = (self.passes <= self.first or self.spent <= self.grace
                or (self.passes <= self.short and self.spent <= SHORT_COST * max(self.full, 1))
                or (within and (self.full < FREE or self.passes - self._last_full >= every)))
        if full:
            self._last_full = self.passes
        return full

    def for_big(self) -> "FullPasses":
        """The budget of the trace's big graphs' full passes (its own: see the module)."""
        if self.big is None:
            self.big = FullPasses(self.grace, self.share, 0, self.clock, short=0)
        return self.big

    def sampled_due(self, first: bool, sampled: bool) -> bool:
        """(A big graph's budget.) Record in full the pass that starts now, one of its
        graph's first passes (`first`) or a sampled one (`sampled`)?"""
        within = self._start_pass()
        full = first or (sampled and within)
        if sampled and not full:
            self.skipped += 1
        return full

    def _start_pass(self) -> bool:
        """Count the pass that starts now; is the time spent on full passes within the
        budget (the grace, or the share of the run's time since its first pass)?"""
        now = self.clock()
        if self.started is None:
            self.started = now
        self.passes += 1
        return self.spent <= self.grace or self.spent <= self.share * (now - self.started)

    def ran(self, full: bool, seconds: float) -> None:
        """A pass took `seconds` (from before backward to after it), in full or not."""
        if full:
            self.full += 1
            self.spent += max(seconds - (self._light or 0.0), 0.0)
        else:
            self._light = seconds if self._light is None else 0.9 * self._light + 0.1 * seconds

    def finished(self, full: bool, seconds: float) -> None:
        """A pass's finishing (numbers filled in, record written) took `seconds`."""
        if full:
            self.spent += max(seconds - (self._light_finish or 0.0), 0.0)
        else:
            self._light_finish = seconds if self._light_finish is None else \
                0.9 * self._light_finish + 0.1 * seconds

    def describe(self) -> str:
        """How the passes were chosen, for the trace's meta (empty when all were full, and
        big graphs' were as sampled)."""
        parts = []
        if self.full < self.passes:
            short = (f" (the first {self.short}: while under {SHORT_COST * 1e3:g} ms each on average)"
                     if self.short else "")
            parts.append(f"{self.full:,} of {self.passes:,} passes of small graphs recorded in full (edge "
                         f"gradients, Jacobians): all while that took under {self.grace:g} s{short}, then while it "
                         f"stayed under {self.share:.0%} of the run's time (past {FREE} of them, every `every`-th "
                         f"pass at most)")
        big = self.big
        if big is not None and big.skipped:
            parts.append(f"{big.full:,} of {big.passes:,} passes of big graphs recorded in full: the first ones "
                         f"of each graph, then every `every`-th while full passes took under {big.grace:g} s, "
                         f"then under {big.share:.0%} of the run's time ({big.skipped:,} sampled passes left "
                         f"without edge gradients)")
        return "; ".join(parts)
