"""Which passes (and optimizer steps) of a long run get gradscope's costly measurements.

One rule for all of them, so that a sampled pass has its edge gradients, its leaves'
value norms and its step's ‖Δw‖ together: the first `FIRST` and every `every`-th after.
Below `SMALL` elements the work is cheap enough to do every time (small graphs then
choose their full passes by cost: full_passes.py).
"""

from __future__ import annotations

FIRST = 3
SMALL = 1 << 16  # elements (graph outputs, leaves, parameters) below which nothing is sampled


def sampled(index: int, every: int) -> bool:
    """Is the `index`-th pass (or step) one of those measured?"""
    return index < FIRST or index % every == 0
