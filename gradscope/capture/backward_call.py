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

    @property
    def plain(self) -> bool:
        """A training step's backward: accumulates into `.grad`, frees its graph, all leaves."""
        return self.api != "torch.autograd.grad" and not self.inputs and not self.retain_graph \
            and not self.create_graph


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


def _engine_arguments(t_outputs, grad_tensors, keep_graph, create_graph, inputs=(), allow_unreachable=False,
                      accumulate_grad=True) -> tuple:
    """(The arguments of torch's `_engine_run_backward`, as its backward APIs pass them:
    Python binds them, as cheaply as a call.)"""
    return t_outputs, grad_tensors, keep_graph, create_graph, inputs, accumulate_grad


_ACCUMULATING_APIS = ("Tensor.backward", "torch.autograd.backward")


def engine_call(t_outputs: Any, args: tuple, kwargs: dict[str, Any], api: str = "") -> BackwardCall:
    """The call one of torch's backward APIs made of the engine, as a `BackwardCall` (steady.py
    catches backward there). The API is not known at that depth: `api` (the one the passes
    before it called) names it when it accumulates into `.grad` as this one does.

    A seed torch made for a scalar's `backward()` is recorded as the recorder records an
    implicit seed (None) when it is visibly one: a one on the CPU, read without waiting."""
    t_outputs, grad_tensors, keep_graph, create_graph, inputs, accumulates = _engine_arguments(
        t_outputs, *args, **kwargs)
    if not accumulates:
        api = "torch.autograd.grad"
    elif api not in _ACCUMULATING_APIS:
        api = "torch.autograd.backward"
    roots = [r for r in _as_list(t_outputs) if isinstance(r, torch.Tensor)]
    seeds = _as_list(grad_tensors)
    seeds = [None if _implicit_one(root, seed) else seed for root, seed in zip(roots, seeds + [None] * len(roots))]
    return BackwardCall(
        api=api,
        roots=roots,
        seeds=seeds,
        inputs=[t for t in _as_list(inputs) if isinstance(t, torch.Tensor)],
        retain_graph=bool(keep_graph),
        create_graph=bool(create_graph),
    )


def _implicit_one(root: torch.Tensor, seed: Any) -> bool:
    if not isinstance(seed, torch.Tensor):
        return seed is None
    return (root.numel() == 1 and seed.numel() == 1 and seed.device.type == "cpu" and not seed.is_complex()
            and seed.dtype == root.dtype and seed.item() == 1.0)
