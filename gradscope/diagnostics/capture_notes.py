"""Notes on what the trace could not record: said in the trace, never only in a debug log.

- `nested-trace` (info): the script's own `gradscope.trace()` ran under `gradscope trace`;
  the outer trace paused meanwhile, and the passes of that block are in the script's trace.
- `pass-not-recorded` (info): a backward ran but gradscope could not record it (or could
  record only part of it), with the reason.
"""

from __future__ import annotations

from ..events import NestedTrace, PassNotRecorded
from ..model import Diagnostic, Trace
from ._common import INFO, Found, event_time, events, plural, where


def nested_trace(trace: Trace) -> list[Found]:
    found: list[Found] = []
    for _, e, data in events(trace, NestedTrace):
        passes = data.passes
        found.append((event_time(e), Diagnostic(
            code="nested-trace",
            severity=INFO,
            title="the script's own gradscope.trace() block is recorded in its own trace",
            message=(
                f"{where(e.source)} starts a gradscope.trace() block of the script's own. This trace "
                f"paused while it ran; its {plural(passes, 'pass')} are in the block's trace, not here."
            ),
            sources=[e.source] if e.source else [],
            pass_index=None,
        )))
    return found


def pass_not_recorded(trace: Trace) -> list[Found]:
    found: list[Found] = []
    for _, e, data in events(trace, PassNotRecorded):
        reason = data.reason or "an internal error"
        partly = data.partly
        found.append((event_time(e), Diagnostic(
            code="pass-not-recorded",
            severity=INFO,
            title="a backward pass was recorded only in part" if partly else "a backward pass was not recorded",
            message=(
                f"The backward at {where(e.source)} ran as usual, but gradscope "
                + ("recorded only part of it" if partly else "could not record it")
                + f": {reason}."
            ),
            sources=[e.source] if e.source else [],
        )))
    return found
