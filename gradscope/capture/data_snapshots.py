"""Values of small tensors as they were when a `.data` alias of them was taken.

An edit through `.data` is invisible to PyTorch's version check, so gradscope reports a
saved tensor whose storage was edited that way. `torch.autograd.gradcheck` edits its
inputs through `.data` and puts every value back before backward: nothing backward reads
has changed. Comparing the saved tensor with its values from before the edits tells the
two apart (for tensors up to `ELEMENTS`; larger ones are reported on the edit alone).
"""

from __future__ import annotations

from typing import Iterable

import torch

from .quiet import unwatched

ELEMENTS = 1 << 16  # tensors up to this size keep their values when `.data` is taken
KEPT = 1 << 20  # ... up to this many elements in all


class DataSnapshots:
    """storage pointer -> (op counter when taken, the values then)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[int, torch.Tensor]] = {}
        self._elements = 0

    def take(self, t: torch.Tensor, ptr: int | None, seq: int, edits: Iterable) -> None:
        """Keep t's values (a `.data` alias of it was just taken), unless an edit through an
        alias since the last snapshot makes that one the values before the edits."""
        if ptr is None or t.numel() > ELEMENTS or t.is_sparse or t.is_meta:
            return
        kept = self._kept.get(ptr)
        if kept is not None:
            if any(m.ptr == ptr and m.seq >= kept[0] for m in edits):
                return  # edited since: the snapshot holds the values before the edits
            self._elements -= kept[1].numel()
            del self._kept[ptr]
        if self._elements + t.numel() > KEPT:
            return
        with unwatched(), torch.no_grad():
            self._kept[ptr] = (seq, t.detach().clone())
        self._elements += t.numel()

    def undone(self, t: torch.Tensor, ptr: int) -> bool:
        """Does saved tensor `t` hold the values it had before the `.data` edits of its storage?"""
        kept = self._kept.get(ptr)
        if kept is None or kept[1].shape != t.shape or kept[1].dtype != t.dtype:
            return False
        with unwatched(), torch.no_grad():
            return bool(torch.equal(kept[1].reshape(-1).view(torch.uint8), t.detach().reshape(-1).view(torch.uint8)))
