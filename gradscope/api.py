"""The public entry points: `trace`, `graph`, `name`."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Literal, TypeVar

import torch

from .capture import Tracer, active_tracer, set_name, walk
from .model import Diagnostic, Graph, Pass, Trace
from .render.select import graph_groups, graphs_text
from .series import attach
from .series.running import RunningSeries
from .traceio.keep import RunningKeep
from .traceio.stream import StreamWriter

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
                 `every`-th pass after, while those take gradscope under 0.3 s of CPU
                 time in all, then under 2 % of the run's; leaves' `.grad` is recorded
                 on every pass (its norm and NaN/Inf count; extremes and mean on the full
                 passes). Small graphs: every pass in full while that costs gradscope
                 under 0.3 s in all (a run's first 150 passes: while each costs under
                 5 ms on average), then full passes while they take under 2 % of the
                 run's time (`meta["full_passes"]` says so). 1: every pass in full.
      save:      a path to write the trace JSON to. Passes are written there as they
                 finish (a stream a killed run leaves readable: `gradscope.load` gives
                 its passes with `meta["incomplete"]`), and the whole trace replaces the
                 stream when the block ends.
      keep:      for long runs: keep at most about this many passes (the first and last
                 ones, every k-th in between, and every pass a diagnostic points at); the
                 report states the sampling (`meta["sampling"]`).
      stream:    write passes as they finish to this path without saving at the end
                 (`gradscope trace` does, then saves itself); default: `save`.

    With `keep=` (or `gradscope trace`'s sample, below) the per-parameter series over time
    (`gradscope.series.leaf_series`, the report's charts) are gathered pass by pass as the
    run goes and cover every pass, also those let go.

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
        keep: int | None = None,
        stream: str | Path | None = None,
        _yields: bool = False,
        _hold: int | None = None,
    ) -> None:
        if gradients not in _GRADIENT_MODES:
            raise ValueError(f"gradients must be one of {_GRADIENT_MODES}, not {gradients!r}")
        if values is None:
            values = 4096 if gradients == "values" else 16
        if every < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"keep must be a positive number of passes, not {keep!r}")
        self.keep = keep
        self.options: dict[str, Any] = {"gradients": gradients, "values": values, "jacobian": jacobian, "every": every}
        self.save_path = Path(save) if save is not None else None
        self.stream_path = Path(stream) if stream is not None else self.save_path
        self._stream: StreamWriter | None = None
        self._keeping: RunningKeep | None = None  # keep=: thins passes as the run goes
        # `gradscope trace`: hold about this many passes in memory (a sample for the report)
        # while the stream, and the file saved from it, gets every one (ignored with keep=)
        self._hold = _hold
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
        holding = self.keep is None and self._hold is not None and self.stream_path is not None
        if self.stream_path is not None:
            if stream_path_for_rank := self._rank_stream_path():
                self.stream_path = stream_path_for_rank
            self._stream = StreamWriter(self.trace, self.stream_path, holds=holding)
            tracer.pass_listeners.append(self._stream.write_pass)
            tracer.event_listeners.append(self._stream.write_event)
        if self.keep is not None or holding:  # (after the stream: it gets every pass)
            series = RunningSeries()  # every pass's numbers, for the charts over time
            tracer.pass_listeners.append(series.add_pass)
            tracer.event_listeners.append(series.add_event)
            attach(self.trace, series)
            bound = self.keep if self.keep is not None else self._hold
            assert bound is not None
            self._keeping = RunningKeep(self.trace, bound, tracer.drop_passes, held=holding)
            tracer.pass_listeners.append(self._keeping.add)
            tracer.event_listeners.append(self._keeping.on_event)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        tracer, self._tracer = self._tracer, None
        if tracer is not None:
            if exc is not None:
                tracer.uncaught(exc)
            tracer.stop()
            if how := tracer.full_passes.describe():
                self.trace.meta["full_passes"] = how
            if how := tracer.steady.describe(tracer.next_pass_index):
                self.trace.meta["steady_passes"] = how
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            self.trace.diagnostics = _diagnose(self.trace)
            if self._keeping is not None:
                self._keeping.finish()
                self._keeping = None
            if self.save_path is not None:
                self._save_on_exit(exc)
        return False

    def _script_failed(self, exc: BaseException) -> None:
        """(`gradscope trace`: the script raised `exc`, caught by the runner inside the block.)"""
        if self._tracer is not None:
            self._tracer.uncaught(exc)

    def _rank_stream_path(self) -> Path | None:
        """Under a distributed launch, `save=` streams into this rank's own folder (where
        it is saved at the end), so ranks never write one file."""
        from . import distributed

        ranks = distributed.rank_and_world()
        if ranks is None or self.save_path is None or self.stream_path != self.save_path:
            return None
        folder = distributed.rank_folder(self.save_path.parent, ranks[0])
        folder.mkdir(parents=True, exist_ok=True)
        return folder / self.save_path.name

    def _save_on_exit(self, exc: BaseException | None) -> None:
        """Write the trace to `save`. When the block raised, its exception goes on unchanged
        and a failed save is only a warning (and a note on that exception)."""
        from .distributed import save  # one rank of several saves into its own rank-N/ folder

        try:
            assert self.save_path is not None
            save(self.trace, self.save_path)
        except Exception as save_error:
            if exc is None:
                raise
            message = f"gradscope: could not save the trace to {self.save_path}: {save_error}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            if hasattr(exc, "add_note"):  # Python 3.11+: shown under the block's own traceback
                exc.add_note(message)

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

    def __repr__(self) -> str:
        t = self.trace
        state = "recording" if self._tracer is not None else "finished"
        return (f"<gradscope.trace {state}: {len(t.passes)} pass{'es' if len(t.passes) != 1 else ''}, "
                f"{graphs_text(graph_groups(t))}, {len(t.diagnostics)} diagnostic"
                f"{'s' if len(t.diagnostics) != 1 else ''}>")

    def _repr_html_(self) -> str:
        return self.trace._repr_html_()


def graph(*tensors: torch.Tensor) -> Graph:
    """The autograd graph behind `tensors` as it stands now, without running backward."""
    if not tensors:
        raise TypeError("gradscope.graph() needs at least one tensor")
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"gradscope.graph() expects tensors, got {type(t).__name__}")
    tracer = active_tracer()  # (inside a trace: the trace's names and lines)
    with torch.no_grad():
        return walk(list(tensors), tracer.state if tracer is not None else None).graph


def name(tensor: torch.Tensor, label: str) -> torch.Tensor:
    """Give `tensor` the name `label` in gradscope's graphs; returns the tensor."""
    return set_name(tensor, label)


def _meta(options: dict[str, Any]) -> dict[str, Any]:
    from .version import __version__

    return {"gradscope": __version__, "torch": torch.__version__, "options": dict(options)}


def _diagnose(t: Trace) -> list[Diagnostic]:
    from .diagnostics import diagnose

    return diagnose(t)
