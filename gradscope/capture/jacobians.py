"""Local derivatives: the Jacobian d output / d input of one autograd node, taken in its
post-hook by calling the node with one-hot gradients (DESIGN: only nodes that are safe to
call; never AccumulateGrad, custom Functions, checkpointed or compiled nodes)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ._torch import has_input_metadata, input_metadata
from .nodetable import NodeTable
from .recorder import OpInfo


def local_jacobians(fn: Any, grad_inputs: tuple, edges: dict[int, Any], limit: int,
                    notes: NodeTable) -> list[tuple[int, torch.Tensor, bool]]:
    """(input index, Jacobian, is it one number) for each small edge `edges` names: one row
    per element of the node's outputs, one column per element of that input."""
    if not limit or not _callable(fn, notes):
        return []
    outputs = [(tuple(m.shape), m.dtype, m.device) for m in input_metadata(fn)]
    sizes = [math.prod(shape) for shape, _, _ in outputs]
    total = sum(sizes)
    wanted = [
        i for i, g in enumerate(grad_inputs)
        if i in edges and isinstance(g, torch.Tensor) and 0 < g.numel() <= limit
    ]
    if not wanted or total == 0 or total > limit:
        return []
    # one-hot gradients as rows of an identity matrix: views, no per-element writes
    # (writing one element of a GPU tensor from Python synchronises)
    eyes: dict[tuple, torch.Tensor] = {}
    rows: list[tuple] = []
    for k in range(total):
        one_hot = []
        offset = 0
        for (shape, dtype, device), size in zip(outputs, sizes):
            eye = eyes.get((dtype, device))
            if eye is None:
                eye = eyes[(dtype, device)] = torch.eye(total, dtype=dtype, device=device)
            one_hot.append(eye[k, offset : offset + size].view(shape))
            offset += size
        result = fn(*one_hot)
        rows.append(result if isinstance(result, tuple) else (result,))
    found = []
    for i in wanted:
        jac = _jacobian_columns([r[i] if i < len(r) else None for r in rows], grad_inputs[i])
        if jac is not None:
            found.append((i, jac, total == 1 and jac.shape[1] == 1))
    return found


def _jacobian_columns(rows: list, delivered: torch.Tensor) -> torch.Tensor | None:
    """Stack a node's outputs for each one-hot gradient into the Jacobian d output / d input:
    one row per output element, one column per element of the input.

    Called directly, a node returns the gradient before the engine reduces it to its input's
    shape: `A * v` with v of shape [3] and A of [2, 3] gives [2, 3] for v, which the engine
    sums to [3] (and an addmm bias of shape [1] gets the whole output's shape). Each row is
    reduced the same way, to the shape of what the engine `delivered`; None when it cannot be.
    """
    shape, width = delivered.shape, delivered.numel()
    out = []
    for r in rows:
        if r is None:
            out.append(torch.zeros(width, dtype=delivered.dtype, device=delivered.device))
            continue
        if r.shape != shape:
            try:
                r = r.sum_to_size(shape)
            except RuntimeError:  # not a broadcast of the input: no Jacobian to show
                return None
        if r.numel() != width:
            return None
        out.append(r.reshape(-1).to(delivered.dtype))
    return torch.stack(out) if out else None


def _callable(fn, notes: NodeTable) -> bool:
    """May gradscope call this node to get its local Jacobian? (DESIGN: never AccumulateGrad,
    never a custom Python Function — its backward is the user's code, maybe with side effects —
    never a node whose saved tensors have unpack hooks, never compiled-function nodes.)"""
    if isinstance(fn, torch.autograd.function.BackwardCFunction):
        return False
    name = type(fn).__name__
    if name == "AccumulateGrad" or "CompiledFunction" in name:
        return False
    if not has_input_metadata(fn):
        return False
    info = notes.get(fn)
    return type(info) is not OpInfo or not info.saved_hooks
