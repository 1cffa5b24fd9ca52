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
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from statistics import median

from .events import LeafUpdate, OptimizerStep
from .model import Node, Trace, single_number

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

    @property
    def worst(self) -> int:
        """The rank of the worst flag (0 = "nan"), len(FLAGS) when none: sorts worst first."""
        return min((FLAGS.index(f) for f in self.flags), default=len(FLAGS))

    def finite_grads(self) -> list[float]:
        return [g for g in self.grad_norm if g is not None and math.isfinite(g)]


@dataclass
class LossSeries:
    """A scalar root's value (a loss) at each pass it was the root of."""

    name: str
    passes: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def leaf_series(trace: Trace) -> list[LeafSeries]:
    """Every named leaf's series, flagged, worst first (ties in name order, `layers.2` before
    `layers.10`)."""
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
    _flag(series, any_update=bool(updated))
    return sorted(series, key=lambda s: (s.worst, _natural(s.name)))


def loss_series(trace: Trace) -> list[LossSeries]:
    """Each scalar root's value across passes (the loss curve), by the root's name."""
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
    g = n.grad_after
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
    typical_each = [median(g) for s in series if (g := [x for x in s.finite_grads() if x > 0])]
    typical = median(typical_each) if typical_each else None
    for s in series:
        grads = s.finite_grads()
        if s.nonfinite:
            s.flags.append(NAN)
        if grads and typical and max(grads) >= EXPLODING_FACTOR * typical:
            s.flags.append(EXPLODING)
        if not grads and not s.nonfinite and typical is not None:  # others got gradients, it never did
            s.flags.append(VANISHING)
        elif grads and (median(grads) <= VANISHING_ABSOLUTE
                      or (typical and median(grads) <= VANISHING_FACTOR * typical)):
            s.flags.append(VANISHING)
        if any_update and s.updates == 0:
            s.flags.append(NEVER_UPDATED)
