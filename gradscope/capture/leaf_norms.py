"""Every leaf's value norm at each pass: one norm per leaf, read with the pass's numbers.

Capture keeps a leaf's values only when it is small, so a real parameter's size over a run
(‖w‖, and with the optimizer's updates ‖Δw‖/‖w‖) would be unknown. The norms of a pass's
leaves are computed on their device when the pass starts (the values its forward used)
and stacked into one tensor per device, which rides with the pass's other numbers: no
synchronisation per leaf.
"""

from __future__ import annotations

from typing import Any

import torch

from ..model import Node
from ._torch import foreach_norm
from .sampling import SMALL, norms_due
from .summaries import Box, PendingBatch, readable

_WIDE = (torch.float16, torch.bfloat16)  # norms of these in float32: theirs overflow early


def value_norms_due(leaves: list[tuple[Node, torch.Tensor]], full: bool, pass_index: int, every: int) -> bool:
    """Norms of the leaves at this pass? Reading every parameter costs a share of the step:
    on full passes and those `sampling.norms_due` names (the charts draw the passes measured)."""
    return full or norms_due(pass_index, every, sum(leaf.numel() for _, leaf in leaves) <= SMALL)


def queue_value_norms(leaves: list[tuple[Any, torch.Tensor]], batch: PendingBatch) -> list[tuple[list, Box]]:
    """Queue the value norm of each leaf (call under no_grad), given with its node (or its
    number): once `batch` is resolved, `fill_value_norms` sets `Node.value_norm` (or
    `read_value_norms` reads them by number)."""
    groups: dict[Any, tuple[list[tuple[Any, bool]], list[torch.Tensor]]] = {}
    for node, leaf in leaves:
        if not (leaf.is_floating_point() or leaf.is_complex()) or not readable(leaf) or leaf.numel() == 0:
            continue
        nodes, tensors = groups.setdefault((leaf.device, leaf.dtype), ([], []))
        nodes.append((node, leaf.dtype != torch.float64))
        tensors.append(leaf.detach())
    by_device: dict[Any, tuple[list[tuple[Any, bool]], list[torch.Tensor]]] = {}
    for (device, dtype), (nodes, tensors) in groups.items():
        into = by_device.setdefault(device, ([], []))
        into[0].extend(nodes)
        into[1].append(norms(tensors).to(torch.float64))
    return [(nodes, batch.keep(torch.cat(parts))) for nodes, parts in by_device.values()]


def norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norms of tensors of one device and dtype, as one tensor (one kernel for all
    where torch has a fused one)."""
    if tensors[0].dtype in (torch.float32, torch.float64):
        return torch.stack(foreach_norm(tensors))
    wide = tensors[0].dtype in _WIDE
    return torch.stack([torch.linalg.vector_norm(t, dtype=torch.float32) if wide else torch.linalg.vector_norm(t)
                        for t in tensors])


def fill_value_norms(queued: list[tuple[list[tuple[Node, bool]], Box]]) -> None:
    for nodes, box in queued:
        for (node, single), value in zip(nodes, box.value or ()):
            node.value_norm = float32_digits(value) if single else float(value)


def read_value_norms(queued: list[tuple[list[tuple[int, bool]], Box]], count: int) -> list[float | None]:
    """The norms `queue_value_norms` queued for leaves numbered 0 to `count` - 1 (its
    `leaves` given as (number, tensor)), by number: None where a leaf has none."""
    found: list[float | None] = [None] * count
    for numbers, box in queued:
        for (k, single), value in zip(numbers, box.value or ()):
            found[k] = float32_digits(value) if single else float(value)
    return found


def float32_digits(value: float) -> float:
    """A float32's value with the 9 digits that tell it from any other float32 (not the 17
    its float64 copy prints with): the same number, half the bytes in a trace file."""
    return float(f"{value:.9g}")
