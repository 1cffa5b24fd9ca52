"""The arguments of one backward call, normalised across torch's three backward APIs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .recorder import BACKWARD_APIS

_TENSOR_BACKWARD = torch.Tensor.backward
_signatures: dict[Callable, inspect.Signature] = {}


@dataclass
class BackwardCall:
    """The arguments of one backward call, normalised across the three APIs."""

    api: str
    roots: list[torch.Tensor]
    seeds: list[torch.Tensor | None]
    inputs: list[torch.Tensor] = field(default_factory=list)
    retain_graph: bool = False
    create_graph: bool = False


def parse_call(func: Callable, args: tuple, kwargs: dict[str, Any]) -> BackwardCall:
    if func is _TENSOR_BACKWARD and len(args) == 1 and all(v is None or v is False for v in kwargs.values()):
        # `loss.backward()` (torch passes each argument by keyword, at its default): most calls
        return BackwardCall(api="Tensor.backward", roots=[args[0]], seeds=[None])
    sig = _signatures.get(func)
    if sig is None:
        sig = _signatures[func] = inspect.signature(func)
    bound = sig.bind(*args, **kwargs).arguments
    api = BACKWARD_APIS[func]
    if api == "Tensor.backward":
        roots, seeds = [bound["self"]], [bound.get("gradient")]
    elif api == "torch.autograd.backward":
        roots, seeds = _as_list(bound["tensors"]), _as_list(bound.get("grad_tensors"))
    else:
        roots, seeds = _as_list(bound["outputs"]), _as_list(bound.get("grad_outputs"))
    create = bool(bound.get("create_graph", False))
    retain = bound.get("retain_graph")
    return BackwardCall(
        api=api,
        roots=[r for r in roots if isinstance(r, torch.Tensor)],
        seeds=(seeds + [None] * len(roots))[: len(roots)],
        inputs=[t for t in _as_list(bound.get("inputs")) if isinstance(t, torch.Tensor)],
        retain_graph=create if retain is None else bool(retain),
        create_graph=create,
    )


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, torch.Tensor) or not isinstance(v, (list, tuple, dict)):
        return [v]
    return list(v.values()) if isinstance(v, dict) else list(v)
