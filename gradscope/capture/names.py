"""Names people recognise for tensors: explicit names, parameter names, assignment targets.

Explicit names given with `gradscope.name(t, "w")` are kept weakly on the tensor's identity
(leaves) or in the grad_fn's metadata (non-leaves), so they die with the tensor or graph.
Reading a node's metadata costs (see nodetable.py), so the nodes that carry a name are
listed by sequence number and only theirs is read.
"""

from __future__ import annotations

import torch

from ._torch import sequence_nr
from .idtable import IdTable

# Names from `gradscope.name` on leaves. Weak: a name never keeps a tensor alive.
_explicit_leaf_names: IdTable = IdTable()

NAME_KEY = "gradscope.name"

# Bumped whenever a leaf may be named differently than before (an explicit name, a module's
# parameter names, a leaf's line): a repeated pass reuses its leaves' names only while
# this stays the same (see repeat.py).
_generation = 0


def generation() -> int:
    return _generation


def leaf_names_changed() -> None:
    global _generation
    _generation += 1


def any_named(fns: list) -> bool:
    """Do any of these autograd nodes carry a name?"""
    return bool(_named_nodes) and any(_named_nodes.get(sequence_nr(fn)) is type(fn) for fn in fns)


# non-leaf nodes that carry a name: sequence number -> node class (the newest kept)
_named_nodes: dict[int, type] = {}
_NAMED_NODES_KEPT = 1 << 16


def set_name(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Give `tensor` a display name in gradscope graphs; returns the tensor unchanged."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"gradscope.name expects a torch.Tensor, got {type(tensor).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError("gradscope.name expects a non-empty string name")
    if tensor.grad_fn is not None:
        name_node(tensor.grad_fn, name)
    else:
        _explicit_leaf_names[tensor] = name
        leaf_names_changed()
    return tensor


def name_node(fn, name: str, replace: bool = True) -> None:
    """Name an autograd node (kept in its metadata: it dies with the node)."""
    meta = fn.metadata
    if replace or NAME_KEY not in meta:
        meta[NAME_KEY] = name
    if len(_named_nodes) >= _NAMED_NODES_KEPT:
        for key in list(_named_nodes)[: _NAMED_NODES_KEPT // 2]:
            del _named_nodes[key]
    _named_nodes[sequence_nr(fn)] = type(fn)


def node_name(fn) -> str | None:
    """The name given to an autograd node, if any."""
    if _named_nodes and _named_nodes.get(sequence_nr(fn)) is type(fn):
        return fn.metadata.get(NAME_KEY)
    return None


def explicit_leaf_name(tensor: torch.Tensor) -> str | None:
    return _explicit_leaf_names.get(tensor)
