"""Which passes (and optimizer steps) of a long run get gradscope's costly measurements.

One rule for all of them, so that a sampled pass has its edge gradients, its leaves'
value norms and its step's ‖Δw‖ together: the first `FIRST` and every `every`-th after.
Below `SMALL` elements the work costs little per element, yet each measurement still
costs a few torch calls (a copy of every parameter, a norm of each): beside a small
model's step of a few hundred microseconds, as much as the step itself. So a small model's
value and update norms are read on its first `SHORT` passes and steps (a short run, such
as the lesson's or a showcase's, every time) and then on every `every`-th, as a big one's
(small graphs choose their full passes by cost: full_passes.py).
"""

from __future__ import annotations

FIRST = 3
SMALL = 1 << 16  # elements (graph outputs, leaves, parameters) below which nothing is sampled early
SHORT = 200  # passes (steps) of a small model whose norms are all read


def sampled(index: int, every: int) -> bool:
    """Is the `index`-th pass (or step) one of those measured?"""
    return index < FIRST or index % every == 0


def norms_due(index: int, every: int, small: bool) -> bool:
    """Read value norms (or ‖Δw‖) at the `index`-th pass (step)? `small`: the leaves (the
    optimizer's parameters) hold at most `SMALL` elements."""
    return index < (SHORT if small else FIRST) or index % every == 0
