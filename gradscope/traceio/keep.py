"""Bounding a long run's trace: which passes to keep when there are too many.

`trace(keep=N)` / `gradscope trace --max-passes N` keep at most about N passes of a run:
every pass a diagnostic points at, the first quarter of N, the last quarter of N, and
every k-th pass in between (k as small as fits). What was kept is stated in the trace's
`meta["sampling"]`, which the report shows. The stream a run writes as it goes
(`gradscope.traceio.stream`) holds every pass until the run ends.
"""

from __future__ import annotations

from ..model import Trace


def thin(trace: Trace, keep: int) -> None:
    """Keep at most about `keep` of `trace`'s passes (plus those diagnostics point at)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    passes = trace.passes
    if len(passes) <= keep:
        return
    ends = max(1, keep // 4)
    first, last = passes[:ends], passes[-ends:]
    middle = passes[ends:-ends]
    room = max(keep - 2 * ends, 0)
    step = -(-len(middle) // room) if room else 0  # ceiling: every step-th of the middle
    sampled = middle[::step] if step else []
    diagnosed = {d.pass_index for d in trace.diagnostics if d.pass_index is not None}
    kept = {p.index for p in (*first, *sampled, *last)}
    extra = diagnosed - kept
    trace.passes = [p for p in passes if p.index in kept or p.index in extra]
    how = [f"the first {len(first)}", f"the last {len(last)}"]
    if step:
        how.insert(1, f"every {step}{_ordinal(step)} in between")
    if extra:
        how.append(f"{len(extra)} more that diagnostics point at")
    trace.meta["sampling"] = (f"kept {len(trace.passes):,} of {len(passes):,} passes (keep={keep}): "
                              + ", ".join(how))


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
