"""Which frames of a traced script's traceback `python script.py` would have shown.

Under tracing, a torch function written in Python (`Tensor.backward`, `F.softmax`,
`torch.autograd.grad`) first sees gradscope's function mode, hands the call to
`torch.overrides.handle_torch_function`, which calls gradscope's `__torch_function__`,
which calls the function again. So three frames appear that python never shows: the
function's first entry (at its `handle_torch_function` line), `handle_torch_function`
itself, and gradscope's frames; the function's second entry is the one python shows.
"""

from __future__ import annotations

import os
import traceback
from typing import Callable, Sequence

import torch.overrides

_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_DISPATCH = (os.path.abspath(torch.overrides.__file__), "handle_torch_function")


def user_frames(frames: Sequence[traceback.FrameSummary],
                is_ours: Callable[[str], bool]) -> list[traceback.FrameSummary]:
    """`frames` without gradscope's (`is_ours`) and the function-mode dispatch into them.

    A dispatch that leads into a mode of the user's own is kept: python shows it too.
    """
    drop: set[int] = set()
    for i, frame in enumerate(frames):
        if is_ours(frame.filename):
            drop.add(i)
        elif _is_dispatch(frame) and i + 1 < len(frames) and is_ours(frames[i + 1].filename):
            drop.add(i)
            if i > 0 and os.path.abspath(frames[i - 1].filename).startswith(_TORCH):
                drop.add(i - 1)  # the torch function's first entry, that dispatched
    return [f for i, f in enumerate(frames) if i not in drop]


def _is_dispatch(frame: traceback.FrameSummary) -> bool:
    return (os.path.abspath(frame.filename), frame.name) == _DISPATCH
