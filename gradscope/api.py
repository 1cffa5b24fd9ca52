"""The public entry points: `trace`, `graph`, `name`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from .capture import Tracer, active_tracer, set_name, walk
from .model import Diagnostic, Graph, Pass, Trace

F = TypeVar("F", bound=Callable[..., Any])

_GRADIENT_MODES = ("stats", "values", "off")


class trace:
    """Record every backward pass inside a block (or a decorated function).

        with gradscope.trace() as t:
            loss.backward()
        t.passes[0].graph.find("w").grad_after

    Options:
      gradients: "stats" (default: norm, max |g|, mean, NaN/Inf counts, and values of
                 tensors up to `values` elements), "values" (the same, with values up to
                 `values` elements, default 4096 in this mode) or "off" (graph only).
      values:    keep full values of tensors with at most this many elements.
      jacobian:  compute local Jacobians of nodes up to this many elements (0: off).
      every:     a big graph that repeats (a training loop; over 65,536 output elements)
                 gets its edge gradients recorded on its first 3 passes and every
                 `every`-th pass after; leaves' `.grad` is recorded on every pass (its
                 norm and NaN/Inf count; extremes and mean on the full passes), small
                 graphs in full on every pass. 1: every pass in full.
      save:      a path to write the trace JSON to when the block ends.

    On exit every hook and mode gradscope installed is removed, also when the block raises
    (the exception propagates unchanged). A decorated function is traced on every call;
    the object keeps the record of the most recent one.
    """

    def __init__(
        self,
        gradients: str = "stats",
        values: int | None = None,
        jacobian: int = 64,
        every: int = 10,
        save: str | Path | None = None,
        _yields: bool = False,
    ) -> None:
        if gradients not in _GRADIENT_MODES:
            raise ValueError(f"gradients must be one of {_GRADIENT_MODES}, not {gradients!r}")
        if values is None:
            values = 4096 if gradients == "values" else 16
        if every < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        self.options = {"gradients": gradients, "values": values, "jacobian": jacobian, "every": every}
        self.save_path = Path(save) if save is not None else None
        # `gradscope trace`'s own trace: a gradscope.trace() in the script pauses it (else nesting is an error)
        self._yields = _yields
        self.trace: Trace = Trace()
        self._tracer: Tracer | None = None

    def __enter__(self) -> "trace":
        tracer = Tracer(
            gradients=self.options["gradients"] != "off",
            stats=self.options["gradients"] != "off",
            max_values=self.options["values"],
            max_jacobian=self.options["jacobian"],
            every=self.options["every"],
            yields=self._yields,
        )
        tracer.start()
        self._tracer = tracer
        self.trace = tracer.trace
        self.trace.meta.update(_meta(self.options))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        tracer, self._tracer = self._tracer, None
        if tracer is not None:
            tracer.stop()
            self.trace.diagnostics = _diagnose(self.trace)
            if self.save_path is not None:
                self.trace.save(self.save_path)
        return False

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return traced  # type: ignore[return-value]

    # the recorded trace, for convenience
    @property
    def passes(self) -> list[Pass]:
        if self._tracer is not None:  # read inside the block: bring every number home first
            self._tracer.finish_passes()
        return self.trace.passes

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self.trace.diagnostics

    def save(self, path: str | Path) -> Path:
        """Write the recorded trace as JSON."""
        return self.trace.save(path)

    def render(self, path: str | Path, pass_index: int = -1, **options: Any) -> Path:
        """Render a pass (.svg/.png/.dot) or the whole trace (.html)."""
        return self.trace.render(path, pass_index=pass_index, **options)

    def _repr_html_(self) -> str:
        return self.trace._repr_html_()


def graph(*tensors: torch.Tensor) -> Graph:
    """The autograd graph behind `tensors` as it stands now, without running backward."""
    if not tensors:
        raise TypeError("gradscope.graph() needs at least one tensor")
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"gradscope.graph() expects tensors, got {type(t).__name__}")
    with torch.no_grad():
        return walk(list(tensors), active_tracer()).graph


def name(tensor: torch.Tensor, label: str) -> torch.Tensor:
    """Give `tensor` the name `label` in gradscope's graphs; returns the tensor."""
    return set_name(tensor, label)


def _meta(options: dict[str, Any]) -> dict[str, Any]:
    from . import __version__

    return {"gradscope": __version__, "torch": torch.__version__, "options": dict(options)}


def _diagnose(t: Trace) -> list[Diagnostic]:
    from .diagnostics import diagnose

    return diagnose(t)
