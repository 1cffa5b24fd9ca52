"""Each parameter's numbers across the passes of a trace, and what looks wrong with them.

The report's "over time" charts and a terminal table both read these series, so they are
made here from the plain model (no torch): for every named leaf (a parameter, or a tensor
made with requires_grad=True) its `.grad` norm after each pass, its value norm (recorded
for every leaf; older traces: from the values of small ones), and its update ratio
‖Δw‖/‖w‖ across each optimizer step (‖Δw‖ measured at the step) or other in-place update
(small tensors, from their values) seen between two of its passes. A leaf is
followed across passes by its name: node ids are numbered per pass.

Flags, worst first: "nan" (a non-finite gradient), "exploding", "vanishing" (including a
gradient that is always zero), "never updated" (other leaves were updated, this one never).

A trace recorded live with its passes thinned in memory (`gradscope trace`, `keep=`)
carries running series (`running.RunningSeries`, accumulated pass by pass as the run
went, over every pass): `leaf_series`/`loss_series` give those for it (`attach`). A trace
loaded from disk, or holding all its passes, gets them computed from its passes.
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from ..events import LeafUpdate, OptimizerStep
from ..model import Node, TensorSummary, Trace, single_number
from .envelope import GradStats

NAN, EXPLODING, VANISHING, NEVER_UPDATED = "nan", "exploding", "vanishing", "never updated"
FLAGS = (NAN, EXPLODING, VANISHING, NEVER_UPDATED)  # worst first

# A gradient this many times larger (smaller) than the run's typical one explodes (vanishes).
# Typical: the median over the leaves of each leaf's median gradient norm.
EXPLODING_FACTOR = 1e3
VANISHING_FACTOR = 1e-3
VANISHING_ABSOLUTE = 1e-10  # below this a gradient has vanished whatever the rest do
TOP_LEVEL = "(top level)"


@dataclass
class LeafSeries:
    """One leaf's numbers, one entry per pass it took part in (`passes[k]` is a pass index).

    `grad_norm[k]` is the 2-norm of `.grad` after the pass (NaN when it held NaN or Inf,
    None when `.grad` was None); `value_norm[k]` the norm of its value when recorded;
    `update_ratio` holds (pass index, ‖Δw‖/‖w‖) for each update seen before that pass.
    """

    name: str
    module: str
    shape: list[int] | None
    is_parameter: bool
    passes: list[int] = field(default_factory=list)
    grad_norm: list[float | None] = field(default_factory=list)
    value_norm: list[float | None] = field(default_factory=list)
    update_ratio: list[tuple[int, float]] = field(default_factory=list)
    updates: int = 0  # passes after which the leaf was updated in place
    nonfinite: int = 0  # passes whose gradient held NaN or Inf
    flags: list[str] = field(default_factory=list)
    # a long run's running series: the lists hold each bucket's extremes, this the true counts
    thinned: Thinned | None = None

    @property
    def worst(self) -> int:
        """The rank of the worst flag (0 = "nan"), len(FLAGS) when none: sorts worst first."""
        return min((FLAGS.index(f) for f in self.flags), default=len(FLAGS))

    def finite_grads(self) -> list[float]:
        """The finite gradient norms held (of a thinned series: its buckets' extremes)."""
        return [g for g in self.grad_norm if g is not None and math.isfinite(g)]

    @property
    def taken_part(self) -> int:
        """How many passes the leaf took part in."""
        return self.thinned.passes if self.thinned is not None else len(self.passes)

    @property
    def with_grad(self) -> int:
        """Passes after which it had a `.grad` (NaN/Inf included)."""
        if self.thinned is not None:
            return self.thinned.grads.with_grad
        return sum(g is not None for g in self.grad_norm)

    def grad_extremes(self) -> tuple[float, float, float, float] | None:
        """(first, last, least, greatest) finite gradient norm; None when there was none."""
        if self.thinned is not None:
            g = self.thinned.grads
            if g.first is None or g.last is None or g.lo is None or g.hi is None:
                return None
            return g.first, g.last, g.lo, g.hi
        grads = self.finite_grads()
        return (grads[0], grads[-1], min(grads), max(grads)) if grads else None

    def grad_median(self, positive: bool = False) -> float | None:
        """The median finite gradient norm (`positive`: of those above 0); None when none."""
        if self.thinned is not None:
            return self.thinned.grads.median(positive)
        grads = [g for g in self.finite_grads() if g > 0 or not positive]
        return median(grads) if grads else None

    def value_points(self) -> tuple[list[int], list[float | None]]:
        """(pass, value norm) of the value series."""
        if self.thinned is not None:
            return self.thinned.value_passes, self.value_norm
        return self.passes, self.value_norm

    def counts(self, kind: str) -> tuple[int, int]:
        """(finite, all) points of the "grad", "value" or "update" series."""
        t = self.thinned
        if kind == "grad":
            if t is not None:
                return t.grads.with_grad - t.grads.nonfinite, t.passes
            return len(self.finite_grads()), len(self.grad_norm)
        if kind == "value":
            if t is not None:
                return t.values_finite, t.passes
            return sum(v is not None and math.isfinite(v) for v in self.value_norm), len(self.value_norm)
        if t is not None:
            return t.ratios, t.ratios
        return len(self.update_ratio), len(self.update_ratio)


@dataclass
class Thinned:
    """What a running series of a long run knows beyond the points it holds (each bucket's
    extremes): the true counts, extremes and medians (see `envelope`)."""

    passes: int  # passes the leaf took part in
    grads: GradStats
    value_passes: list[int]  # the pass of each point of `value_norm`
    values_finite: int  # finite value norms
    ratios: int  # update ratios


@dataclass
class LossSeries:
    """A scalar root's value (a loss) at each pass it was the root of."""

    name: str
    passes: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    counts: tuple[int, int] | None = None  # a running series': (finite, all) values; else from `values`


# running series of traces recorded live, by id() of their trace (while the trace lives)
_running: dict[int, tuple[weakref.ref, Any]] = {}


def attach(trace: Trace, running: Any) -> None:
    """`running` (a `running.RunningSeries`, fed every pass of `trace`'s run) stands for
    `trace`'s passes in `leaf_series`, `loss_series` and `span`."""
    _running[id(trace)] = (weakref.ref(trace), running)
    weakref.finalize(trace, _running.pop, id(trace), None)


def running_of(trace: Trace) -> Any:
    """The running series attached to `trace`, or None."""
    found = _running.get(id(trace))
    return found[1] if found is not None and found[0]() is trace else None


def span(trace: Trace) -> tuple[int, int, int] | None:
    """(passes, first index, last index) the series cover: every pass of the run for a trace
    with running series, else its passes. None when there is none."""
    running = running_of(trace)
    if running is not None:
        return running.span()
    if not trace.passes:
        return None
    indexes = [p.index for p in trace.passes]
    return len(indexes), min(indexes), max(indexes)


def leaf_series(trace: Trace) -> list[LeafSeries]:
    """Every named leaf's series, flagged, worst first (ties in name order, `layers.2` before
    `layers.10`): the running series' when the trace has them, else from its passes."""
    running = running_of(trace)
    if running is not None:
        return running.leaf_series()
    return leaf_series_of_passes(trace)


def leaf_series_of_passes(trace: Trace) -> list[LeafSeries]:
    """`leaf_series` computed from the trace's passes and events."""
    updated = _updated_keys(trace)
    steps = _update_norms(trace)
    by_name: dict[str, LeafSeries] = {}
    # name -> its previous (pass, id, values, value norm)
    last: dict[str, tuple[int, str, list[float] | None, float | None]] = {}
    for p in trace.passes:
        seen: set[str] = set()
        for n in p.graph.leaves:
            if not n.name or n.name in seen:  # a name twice in one pass: the first one stands
                continue
            seen.add(n.name)
            s = by_name.get(n.name)
            if s is None:
                s = by_name[n.name] = LeafSeries(n.name, module_of(n), n.shape, n.is_parameter)
            values = _flat(n.value)
            norm = n.value_norm if n.value_norm is not None else _norm(values) if values is not None else None
            s.passes.append(p.index)
            s.grad_norm.append(_grad_norm(n))
            s.value_norm.append(norm)
            if s.grad_norm[-1] is not None and not math.isfinite(s.grad_norm[-1]):
                s.nonfinite += 1
            before = last.get(n.name)
            if before is not None:
                # ‖Δw‖ measured at the steps between the two passes, else from recorded values
                moved = [d[n.name] for k in range(before[0] + 1, p.index + 1) if n.name in (d := steps.get(k, {}))]
                if moved and before[3]:
                    s.update_ratio.extend((p.index, m / before[3]) for m in moved if math.isfinite(m / before[3]))
                if (before[0], before[1]) in updated:
                    s.updates += 1
                    ratio = None if moved else _ratio(before[2], values)
                    if ratio is not None:
                        s.update_ratio.append((p.index, ratio))
            last[n.name] = (p.index, n.id, values, norm)
    for name, (q, node_id, _, _) in last.items():  # an update after a leaf's last pass counts too
        if (q, node_id) in updated:
            by_name[name].updates += 1
    series = list(by_name.values())
    return flagged(series, any_update=bool(updated))


def flagged(series: list[LeafSeries], any_update: bool) -> list[LeafSeries]:
    """`series` with their flags, worst first."""
    _flag(series, any_update)
    return sorted(series, key=lambda s: (s.worst, _natural(s.name)))


def loss_series(trace: Trace) -> list[LossSeries]:
    """Each scalar root's value across passes (the loss curve), by the root's name."""
    running = running_of(trace)
    if running is not None:
        return running.loss_series()
    found: dict[str, LossSeries] = {}
    for p in trace.passes:
        for n in p.graph.roots:
            value = single_number(n.value)
            if n.kind != "op" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            s = found.setdefault(n.label, LossSeries(n.label))
            s.passes.append(p.index)
            s.values.append(float(value))
    return list(found.values())


def module_of(n: Node) -> str:
    """The module a leaf belongs to: `layers.0` for `layers.0.weight`, else its recorded module."""
    if "." in n.name:
        return n.name.rsplit(".", 1)[0]
    return n.module or TOP_LEVEL


def by_module(series: list[LeafSeries]) -> list[tuple[str, list[LeafSeries]]]:
    """Series grouped by module; a group sits where its worst member sits in `series`."""
    groups: dict[str, list[LeafSeries]] = {}
    for s in series:
        groups.setdefault(s.module, []).append(s)
    return list(groups.items())


# -- helpers -------------------------------------------------------------------------------
def _updated_keys(trace: Trace) -> set[tuple[int, str]]:
    """(pass index, node id) of leaves updated in place after that pass ("leaf-update" events)."""
    keys: set[tuple[int, str]] = set()
    for e in trace.events:
        if not isinstance(e.data, LeafUpdate):
            continue
        for item in e.data.leaves:  # [pass, node id]
            if len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str):
                keys.add((item[0], item[1]))
    return keys


def _update_norms(trace: Trace) -> dict[int, dict[str, float]]:
    """‖Δw‖ by leaf name of the optimizer steps taken before each pass (by its index)."""
    found: dict[int, dict[str, float]] = {}
    for e in trace.events:
        norms = e.data.update_norms if isinstance(e.data, OptimizerStep) else None
        if isinstance(norms, dict) and e.pass_index is not None:
            into = found.setdefault(e.pass_index, {})
            for name, v in norms.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    into[name] = into.get(name, 0.0) + float(v)  # (two steps between passes: both moves)
    return found


def _natural(name: str) -> list[tuple[int, int | str]]:
    """A sort key reading runs of digits as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def _grad_norm(n: Node) -> float | None:
    return summary_norm(n.grad_after)


def summary_norm(g: TensorSummary | None) -> float | None:
    """A `.grad` summary's norm (NaN when it held a NaN or an infinity; None: no .grad)."""
    if g is None:
        return None
    if not g.finite:
        return math.nan
    if g.norm is not None:
        return float(g.norm)
    values = _flat(g.value)
    return _norm(values) if values is not None else None


def _flat(value) -> list[float] | None:
    """A recorded value's numbers, flattened; None when the value was not recorded."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    if not isinstance(value, list):
        return None
    out: list[float] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, (int, float)):
            out.append(float(v))
        else:
            return None
    return out


def _norm(values: list[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in values))


def _ratio(before: list[float] | None, after: list[float] | None) -> float | None:
    """‖after − before‖ / ‖before‖, when both were recorded and ‖before‖ is not 0."""
    if before is None or after is None or len(before) != len(after):
        return None
    size = _norm(before)
    if not size or not math.isfinite(size):
        return None
    ratio = _norm([a - b for a, b in zip(after, before)]) / size
    return ratio if math.isfinite(ratio) else None


def _flag(series: list[LeafSeries], any_update: bool) -> None:
    typical_each = [m for s in series if (m := s.grad_median(positive=True)) is not None]
    typical = median(typical_each) if typical_each else None
    for s in series:
        extremes = s.grad_extremes()
        if s.nonfinite:
            s.flags.append(NAN)
        if extremes and typical and extremes[3] >= EXPLODING_FACTOR * typical:
            s.flags.append(EXPLODING)
        if not extremes and not s.nonfinite and typical is not None:  # others got gradients, it never did
            s.flags.append(VANISHING)
        elif extremes and ((middle := s.grad_median()) is not None) and (
                middle <= VANISHING_ABSOLUTE or (typical and middle <= VANISHING_FACTOR * typical)):
            s.flags.append(VANISHING)
        if any_update and s.updates == 0:
            s.flags.append(NEVER_UPDATED)
