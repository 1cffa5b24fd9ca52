"""Per-leaf and loss series accumulated as a run goes, in bounded memory.

`RunningSeries` is told of every pass as it finishes (`add_pass`, a tracer's pass listener)
and of every event (`add_event`, an event listener), and keeps what `leaf_series` and
`loss_series` compute from a trace's passes, without holding the passes: each series in a
`envelope.Points` (exact up to `envelope.CAP` points, then min/max buckets), the gradient
norms' counts, extremes and medians in a `GradStats`. So a long run's trace may drop its
passes from memory (`gradscope trace` keeps a sample for its pictures) while its charts
still cover every pass; for a run whose series fit, the result equals `leaf_series` of the
whole trace, field for field.

Events are applied when the pass they come before arrives (an optimizer step's ‖Δw‖ and
its "leaf-update" are complete by then), in the order they were recorded.
"""

from __future__ import annotations

import math
from typing import Any

from ..events import LeafUpdate, OptimizerStep
from ..model import Event, LazyGraph, LightNumbers, Node, Pass, Repeat, single_number
from . import LeafSeries, LossSeries, Thinned, _flat, _grad_norm, _norm, _ratio, flagged, module_of, summary_norm
from .envelope import CAP, GradStats, Points

MOST_MOVES = 4 * CAP  # ‖Δw‖ held per leaf while it is absent from the passes
FORGET_EVERY = 16  # passes between two clean-ups of what no later pass can use


class _Leaf:
    __slots__ = ("name", "module", "shape", "is_parameter", "grad", "value", "ratio", "updates", "nonfinite",
                 "last", "last_id", "last_value", "last_norm")

    def __init__(self, name: str, module: str, shape: list[int] | None, is_parameter: bool) -> None:
        self.name, self.module, self.shape, self.is_parameter = name, module, shape, is_parameter
        self.grad, self.value, self.ratio = Points(stats=GradStats()), Points(), Points()
        self.updates = self.nonfinite = 0
        # its previous pass: index (None before any), node id, value as recorded, value norm
        # (fields, not a tuple: one object fewer per leaf and pass for the collector)
        self.last: int | None = None
        self.last_id = ""
        self.last_value: Any = None
        self.last_norm: float | None = None


class RunningSeries:
    """The series of every pass of a run, fed as it goes (see the module's docstring)."""

    def __init__(self) -> None:
        self._leaves: dict[str, _Leaf] = {}
        self._losses: dict[str, Points] = {}  # a scalar root's name -> its values
        self._pending: list[Event] = []  # events whose pass has not come yet
        self._moves: dict[str, list[tuple[int, float]]] = {}  # leaf name -> (pass index, ‖Δw‖)
        self._updated: dict[int, set[str]] = {}  # pass index -> node ids updated after it
        self._any_update = False
        self.passes = 0
        self._first: int | None = None
        self._last: int | None = None

    # -- listeners ---------------------------------------------------------------------
    def add_event(self, event: Event) -> None:
        """(An event listener.) Held until the pass it comes before arrives."""
        if isinstance(event.data, (LeafUpdate, OptimizerStep)):
            self._pending.append(event)

    def add_pass(self, p: Pass, repeat: Repeat | None = None) -> None:
        """(A pass listener.) Add a finished pass to every series."""
        self._apply_events(p.index)
        self.passes += 1
        self._first = p.index if self._first is None else self._first
        self._last = p.index
        seen: set[str] = set()
        graph = p.graph
        if type(graph) is LazyGraph and not graph.made:  # (a light pass: its numbers, no nodes made)
            self._add_light(p.index, graph.numbers, seen)
        else:
            nodes = graph.nodes
            # (leaves and roots in one walk: `Graph.leaves` is a scan; of a repeat, only the
            # nodes it owns: the rest are its template's, neither leaves nor roots)
            for n in nodes if repeat is None else map(nodes.__getitem__, repeat.own):
                if n.kind == "leaf":
                    if n.name and n.name not in seen:  # a name twice in one pass: the first one stands
                        seen.add(n.name)
                        self._add_leaf(p.index, n, _grad_norm(n), n.value, n.value_norm)
                elif n.is_root and n.kind == "op":
                    self._add_root(p.index, n)
        if not self.passes % FORGET_EVERY:
            self._forget(p.index)

    def _add_light(self, index: int, numbers: LightNumbers, seen: set[str]) -> None:
        """A light pass's leaves and roots, as `add_pass` adds nodes, from its numbers."""
        layout = numbers.layout
        grads, values, value_norms = numbers.grads, numbers.values, numbers.value_norms
        for _, i in layout.own:
            if i < 0:
                self._add_root(index, numbers.roots[-1 - i])
                continue
            n = layout.leaf_nodes[i]  # (the leaf's node but its numbers: its name, id, shape, module)
            if n.name and n.name not in seen:
                seen.add(n.name)
                g = grads[i]
                self._add_leaf(index, n, g if type(g) is float else summary_norm(g),  # type: ignore[arg-type]
                               None if values is None else values[i], None if value_norms is None else value_norms[i])

    def _add_root(self, index: int, n: Node) -> None:
        value = single_number(n.value)
        if not isinstance(value, bool) and isinstance(value, (int, float)):
            points = self._losses.get(n.label)
            if points is None:
                points = self._losses[n.label] = Points()
            points.add(index, float(value))

    def _add_leaf(self, index: int, n: Node, grad: float | None, value: Any, norm: float | None) -> None:
        """Leaf `n`'s numbers at pass `index`: its `.grad`'s norm, value and value norm."""
        s = self._leaves.get(n.name)
        if s is None:
            s = self._leaves[n.name] = _Leaf(n.name, module_of(n), n.shape, n.is_parameter)
        # (a leaf's values are flattened only when they are needed: no norm, or a ratio from them)
        if norm is None and value is not None and (values := _flat(value)) is not None:
            norm = _norm(values)
        s.grad.add(index, grad)
        s.value.add(index, norm)
        if grad is not None and not grad - grad == 0:  # NaN or ±Inf
            s.nonfinite += 1
        last = s.last  # (the leaf's previous pass)
        moves = self._moves.get(n.name)
        if last is not None:
            # ‖Δw‖ measured at the steps between the two passes, else from recorded values
            moved = [m for k, m in moves if last < k <= index] if moves else []
            if moved and s.last_norm:
                for m in moved:
                    if math.isfinite(m / s.last_norm):
                        s.ratio.add(index, m / s.last_norm)
            if s.last_id in self._updated.get(last, ()):
                s.updates += 1
                ratio = None if moved or s.last_value is None or value is None else \
                    _ratio(_flat(s.last_value), _flat(value))
                if ratio is not None:
                    s.ratio.add(index, ratio)
        if moves and moves[0][0] <= index:
            self._moves[n.name] = [(k, m) for k, m in moves if k > index]
        s.last, s.last_id, s.last_value, s.last_norm = index, n.id, value, norm

    def _apply_events(self, upto: int | None) -> None:
        """Apply, in order, the held events numbered up to pass `upto` (None: all)."""
        pending, self._pending = self._pending, []
        for k, e in enumerate(pending):
            if upto is not None and e.pass_index is not None and e.pass_index > upto:
                self._pending = pending[k:]
                return
            if isinstance(e.data, LeafUpdate):
                for item in e.data.leaves:  # [pass, node id]
                    if len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str):
                        self._updated.setdefault(item[0], set()).add(item[1])
                        self._any_update = True
            elif isinstance(e.data, OptimizerStep):
                norms = e.data.update_norms
                if isinstance(norms, dict) and e.pass_index is not None:
                    for name, v in norms.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            into = self._moves.setdefault(name, [])
                            if into and into[-1][0] == e.pass_index:  # (two steps between passes: both moves)
                                into[-1] = (e.pass_index, into[-1][1] + float(v))
                            else:
                                into.append((e.pass_index, 0.0 + float(v)))

    def _forget(self, index: int) -> None:
        """Drop what no later pass can use: updates after passes that are no leaf's last,
        steps before `index` of names that are no leaf's, the oldest steps of a long-absent leaf."""
        lasts = {s.last for s in self._leaves.values() if s.last is not None}
        for q in [q for q in self._updated if q not in lasts]:
            del self._updated[q]
        for name, moves in list(self._moves.items()):
            if name not in self._leaves:
                moves = [(k, m) for k, m in moves if k > index]
            if len(moves) > MOST_MOVES:
                moves = moves[-MOST_MOVES:]
            if moves:
                self._moves[name] = moves
            else:
                del self._moves[name]

    # -- results -----------------------------------------------------------------------
    def span(self) -> tuple[int, int, int] | None:
        """(passes, first index, last index) seen; None before any."""
        if self._first is None or self._last is None:
            return None
        return self.passes, self._first, self._last

    def leaf_series(self) -> list[LeafSeries]:
        """`series.leaf_series` of every pass seen (and every event), flagged, worst first."""
        self._apply_events(None)
        out = []
        for s in self._leaves.values():
            updates = s.updates
            if s.last is not None and s.last_id in self._updated.get(s.last, ()):
                updates += 1  # an update after a leaf's last pass counts too
            series = LeafSeries(s.name, s.module, s.shape, s.is_parameter, updates=updates, nonfinite=s.nonfinite)
            xs, series.grad_norm = s.grad.points()
            series.passes = [int(x) for x in xs]
            value_xs, series.value_norm = s.value.points()
            ratio_xs, ratios = s.ratio.points()
            series.update_ratio = [(int(x), y) for x, y in zip(ratio_xs, ratios) if y is not None]
            if not (s.grad.exact and s.value.exact and s.ratio.exact):
                stats = s.grad.grad_stats()
                assert stats is not None
                series.thinned = Thinned(s.grad.count, stats, [int(x) for x in value_xs], s.value.finite(),
                                         s.ratio.count)
            out.append(series)
        return flagged(out, any_update=self._any_update)

    def loss_series(self) -> list[LossSeries]:
        """`series.loss_series` of every pass seen."""
        out = []
        for name, points in self._losses.items():
            xs, ys = points.points()
            s = LossSeries(name, [int(x) for x in xs], [y for y in ys if y is not None])
            if not points.exact:
                s.counts = (points.finite(), points.count)
            out.append(s)
        return out
