"""Which op call made an autograd node the recorder never saw.

One torch call can make several autograd nodes: `F.linear` on a 3-d input makes a
`TBackward0`, a `ViewBackward0`, an `AddmmBackward0`...; `F.multi_head_attention_forward`
dozens. The recorder sees only the call's output, so only the output's node gets a note.
Autograd numbers the nodes it makes (`grad_fn._sequence_nr()`, a per-thread counter), and
the output's node is made last: the nodes a call made are those numbered between the
previous recorded call's output and this call's output. The recorder stores that lower
bound (`OpInfo.first`); `owner_note` finds, for a node without a note, the note of the call
whose range holds its number.
"""

from __future__ import annotations

from typing import Any

import torch

from ._torch import sequence_nr
from .quiet import unwatched

# How far past a node's number to look for its call's note: a call making more internal
# nodes than this (none in torch.nn.functional) leaves the rest without a source.
_MAX_GAP = 4096


def next_sequence_nr() -> int | None:
    """The number autograd gives the next node made in this thread (None under
    inference_mode, where no node is made). Costs one tiny op: called once per trace and
    once after each backward, never per op. Call it outside the recording mode."""
    with unwatched(), torch.enable_grad():  # the user's profiler and modes never see the probe
        probe = torch.zeros((), requires_grad=True) * 1
    fn = probe.grad_fn
    return None if fn is None else sequence_nr(fn) + 1


def owner_note(notes: dict[int, Any], seq: int, note_type: type) -> Any:
    """The recorder's note (of type `note_type`) of the call that made node number `seq`,
    or None. `notes` maps sequence numbers to notes (NodeTable's forward notes)."""
    for key in range(seq + 1, seq + _MAX_GAP):
        note = notes.get(key)
        if note is not None:
            if type(note) is note_type and note.first is not None and note.first <= seq:
                return note
            return None
    return None
