"""Names people recognise for tensors: explicit names, parameter names, assignment targets.

Explicit names given with `gradscope.name(t, "w")` are kept weakly on the tensor's identity
(leaves) or in the grad_fn's metadata (non-leaves), so they die with the tensor or graph.
"""

from __future__ import annotations

import torch

from .idtable import IdTable

# Names from `gradscope.name` on leaves. Weak: a name never keeps a tensor alive.
_explicit_leaf_names: IdTable = IdTable()

NAME_KEY = "gradscope.name"


def set_name(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Give `tensor` a display name in gradscope graphs; returns the tensor unchanged."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"gradscope.name expects a torch.Tensor, got {type(tensor).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError("gradscope.name expects a non-empty string name")
    if tensor.grad_fn is not None:
        tensor.grad_fn.metadata[NAME_KEY] = name
    else:
        _explicit_leaf_names[tensor] = name
    return tensor


def explicit_leaf_name(tensor: torch.Tensor) -> str | None:
    return _explicit_leaf_names.get(tensor)
