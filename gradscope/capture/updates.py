"""‖Δw‖ at optimizer steps: how far each step moved each parameter, for the update ratio.

Capture keeps values of small tensors only, so the update ratio ‖Δw‖/‖w‖ of a real
parameter needs its change measured at the step: a copy of the optimizer's parameters
before `step()`, and after it one norm of the difference per parameter, stacked and read
once per device. The norms go into the step's "optimizer-step" event
(`data["update_norms"]`, by leaf name). Copying costs memory and time in proportion to the
parameters, and a few torch calls whatever their size, so only some steps are measured:
the first ones (more of them for a small model: `sampling.norms_due`), then every
`every`-th (the trace's sampling of full passes), spaced out further past `MOST_ELEMENTS`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from ..events import OptimizerStep
from ._torch import foreach_sub
from .history import grad_name
from .leaf_norms import float32_digits, norms
from .quiet import unwatched
from .sampling import SHORT, SMALL, norms_due
from .summaries import readable

if TYPE_CHECKING:
    from .state import TraceState

log = logging.getLogger("gradscope")

MOST_ELEMENTS = 1 << 22  # parameter elements copied per step, on average


class UpdateNorms:
    """The optimizer-step hooks that measure ‖Δw‖, while installed."""

    def __init__(self, state: TraceState) -> None:
        self.state = state
        self._handles: list = []
        self._before: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # id(optimizer) -> copies
        self._steps: dict[int, int] = {}  # id(optimizer) -> steps seen

    def install(self) -> None:
        self._handles = [register_optimizer_step_pre_hook(self._on_start),
                         register_optimizer_step_post_hook(self._on_end)]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._before.clear()

    def _name(self, p: torch.Tensor) -> str:
        """The leaf's name in its last pass's graph (what the series go by), else its label."""
        history = self.state.leaf_histories.get(p)
        name = grad_name(history) if history is not None else None
        return name or self.state.leaf_label(p)

    def _on_start(self, optimizer, args, kwargs) -> None:
        try:
            if torch.compiler.is_compiling():
                return
            step = self._steps[id(optimizer)] = self._steps.get(id(optimizer), -1) + 1
            options = self.state.gradient_options
            if not options.gradients or (step >= SHORT and step % options.every):
                return  # (no model's step is measured there: decided before reading its parameters)
            params = [p for g in optimizer.param_groups for p in g["params"]
                      if isinstance(p, torch.Tensor) and (p.is_floating_point() or p.is_complex()) and readable(p)]
            total = sum(p.numel() for p in params)
            # a copy of every parameter can cost a good share of a step: only the steps
            # sampling.py names, spaced out further (by whole `every`s) for big models; the
            # update-ratio charts draw the steps measured
            spacing = options.every * max(1, math.ceil(total / MOST_ELEMENTS / options.every))
            if not params or not norms_due(step, spacing, total <= SMALL):
                return
            with torch.no_grad(), unwatched():  # (unseen by the recorder and the user's modes)
                self._before[id(optimizer)] = [(p, p.detach().clone()) for p in params]
        except Exception:  # a hook must never break the user's step
            log.debug("gradscope: copying parameters before a step failed", exc_info=True)

    def _on_end(self, optimizer, args, kwargs) -> None:
        before = self._before.pop(id(optimizer), None)
        if not before or torch.compiler.is_compiling():
            return
        try:
            with torch.no_grad(), unwatched():
                groups: dict = {}
                for p, old in before:
                    groups.setdefault((p.device, p.dtype), []).append((p, old))
                by_device: dict = {}
                for (device, _), pairs in groups.items():
                    moved = norms(foreach_sub([p.detach() for p, _ in pairs], [old for _, old in pairs]))
                    into = by_device.setdefault(device, ([], []))
                    into[0].extend(p for p, _ in pairs)
                    into[1].append(moved.to(torch.float64))
                found: dict[str, float] = {}
                for params, parts in by_device.values():
                    values = torch.cat(parts).tolist()  # one read per device
                    for p, v in zip(params, values):
                        name = self._name(p)
                        if name:
                            found[name] = v if p.dtype == torch.float64 else float32_digits(v)
            # the step's own event, just recorded (its checks may have recorded more after it)
            step = next((e for e in reversed(self.state.trace.events[-4:]) if e.kind == "optimizer-step"), None)
            if step is not None and "update_norms" not in step.data:
                step.data["update_norms"] = found
            else:
                self.state.emit(OptimizerStep(optimizer=type(optimizer).__name__, update_norms=found))
        except Exception:
            log.debug("gradscope: measuring a step's updates failed", exc_info=True)
