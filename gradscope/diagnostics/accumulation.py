"""`.grad` piling up across steps: backward adds to .grad, it never overwrites it.

Facts the rule reads (all recorded during capture, see capture/checks.py):
  - "grad-carried" events: a leaf's `.grad` was set when a pass began, linked to the same
    tensor's node in the previous pass it took part in;
  - "leaf-update" events: leaves changed in place between passes (an optimizer step, a manual
    `w -= lr * w.grad` under no_grad), named by their last pass and node;
  - each leaf's grad_before in the pass (all zero or None: cleared).

For each leaf, passes follow one another: a pass starts fresh (.grad None or zero) or adds
to what the previous one left. Adding is fine as long as no update used those gradients
already (micro-batching: several passes, then one step, then zero_grad). It is a mistake
when
  - an update consumed .grad and, without clearing it, the next pass added to it and a
    later update used the sum ("stale": the usual forgotten optimizer.zero_grad()), or
  - no update ever happens and the same loop body (same backward line, same graph) keeps
    adding to .grad ("repeat": the lesson's 5, 10, 15, 20).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import GradCarried, LeafUpdate
from ..model import Diagnostic, Node, Source, Trace
from ._common import (
    INFO,
    WARNING,
    Found,
    events,
    is_zero,
    names,
    plural,
    show,
    unique_sources,
    where,
)
from .user_words import loss_divided, variable

Key = tuple[int, str]  # (pass index, node id): one leaf in one pass


@dataclass
class _State:
    contributions: int = 1  # passes whose gradient .grad holds now
    stale_from: Key | None = None  # the pass that added to gradients an update already applied
    passes: list[int] = field(default_factory=list)  # the passes that added since it was last cleared


def grad_accumulation(trace: Trace) -> list[Found]:
    """`grad-accumulation`: warning for gradients carried across an update or summed by a
    repeating loop that never clears them; info for deliberate micro-batching."""
    prev: dict[Key, Key] = {}
    for _, e, carried in events(trace, GradCarried):
        if e.pass_index is None:  # (capture always numbers it: the pass it was seen before)
            continue
        for node_id, q, m in carried.leaves:  # [node id here, previous pass, node id there]
            prev[(e.pass_index, str(node_id))] = (int(q), str(m))
    updated_after: dict[Key, Source | None] = {}
    for _, e, update in events(trace, LeafUpdate):
        for q, m in update.leaves:  # [last pass, node id there]
            updated_after.setdefault((int(q), str(m)), e.source)
    any_update = bool(updated_after)
    passes = {p.index: p for p in trace.passes}

    # Only gradients carried into a pass have a history to follow: a leaf whose .grad was
    # fresh in a pass holds one contribution, which is never a mistake (and is never stored).
    state: dict[Key, _State] = {}
    stale_hits: list[tuple[Key, Source | None, int]] = []  # (leaf, the update, the pass whose update used it)
    micro_hits: list[tuple[Key, int, Source | None]] = []
    ends: list[Key] = []
    continued: set[Key] = set()
    carried_into = {pass_index for pass_index, _ in prev}
    for p in trace.passes:
        if p.index not in carried_into:
            continue
        for n in p.graph.leaves:
            key = (p.index, n.id)
            before = prev.get(key)
            if before is None:
                continue
            zero = is_zero(n.grad_before)
            if not (zero is False or (zero is None and n.grad_carried_over)):
                continue
            old = state.get(before) or _State(passes=[before[0]])
            continued.add(before)
            st = state[key] = _State(
                contributions=old.contributions + 1,
                stale_from=old.stale_from or (key if before in updated_after else None),
                passes=old.passes + [p.index],
            )
            if key in updated_after:
                if st.stale_from is not None:
                    stale_hits.append((st.stale_from, updated_after[prev[st.stale_from]], p.index))
                elif st.contributions > 1:
                    micro_hits.append((key, st.contributions, updated_after[key]))
            else:
                ends.append(key)

    found: list[Found] = []
    found += _stale(trace, passes, stale_hits)
    if not any_update:
        repeat = [k for k in ends if k not in continued and _repeats(passes, state[k])]
        found += _repeat(trace, passes, state, repeat)
    found += _micro(trace, passes, micro_hits)
    return found


def _repeats(passes, st: _State) -> bool:
    """The passes that summed into .grad ran the same backward line over the same graph."""
    if st.contributions < 2:
        return False
    ps = [passes[i] for i in st.passes if i in passes]
    if len(ps) < 2 or any(q.error for q in ps):
        return False
    first = ps[0]
    line = (first.source.file, first.source.line) if first.source else None
    sig = first.graph.signature()
    return all(
        ((q.source.file, q.source.line) if q.source else None) == line and q.graph.signature() == sig
        for q in ps[1:]
    )


def _leaf(passes, key: Key) -> Node | None:
    p = passes.get(key[0])
    if p is None:
        return None
    for n in p.graph.nodes:
        if n.id == key[1]:
            return n
    return None


def _stale(trace, passes, hits) -> list[Found]:
    """hits: (leaf in the pass that added onto applied gradients, that update, pass whose update used it)."""
    if not hits:
        return []
    first_pass = min(k[0] for k, _, _ in hits)
    keys = list(dict.fromkeys(k for k, _, _ in hits if k[0] == first_pass))
    update = next(u for k, u, _ in hits if k[0] == first_pass)
    updates = len({h for _, _, h in hits})
    p = passes[first_pass]
    leaves = [n for n in (_leaf(passes, k) for k in keys) if n is not None]
    leaves.sort(key=lambda n: n.name)
    shown = names([n.name for n in leaves])
    steps = f" {plural(updates, 'update')} in this trace applied such sums." if updates > 1 else ""
    example = ""
    if leaves and leaves[0].grad_before is not None and leaves[0].grad_after is not None:
        n = leaves[0]
        example = f" (`{n.name}.grad` went from {show(n.grad_before)} to {show(n.grad_after)} in this pass)"
    message = (
        f"{where(update)} updated {shown} from their `.grad`, but `.grad` was not cleared afterwards: the "
        f"backward at {where(p.source)} added the new gradient to the old one{example}, and the next update "
        f"applied the sum. backward() adds to `.grad`, it never overwrites it, so each step re-applies every "
        f"earlier step's gradient.{steps}"
    )
    return [(float(first_pass), Diagnostic(
        code="grad-accumulation",
        severity=WARNING,
        title=f"Gradients of {shown} carried over from the previous step",
        message=message,
        hint=(
            "Clear gradients once per step: `optimizer.zero_grad()` at the top of the loop or right after "
            "`optimizer.step()` (for plain tensors: `w.grad = None` or `w.grad.zero_()` under no_grad)."
        ),
        sources=unique_sources([p.source, update]),
        nodes=[n.id for n in leaves],
        pass_index=first_pass,
    ))]


def _repeat(trace, passes, state, keys: list[Key]) -> list[Found]:
    groups: dict[tuple, list[Key]] = {}
    for k in keys:
        groups.setdefault(tuple(state[k].passes), []).append(k)
    found: list[Found] = []
    for run, ks in groups.items():
        last = passes[run[-1]]
        leaves = [n for n in (_leaf(passes, k) for k in ks) if n is not None]
        leaves.sort(key=lambda n: n.name)
        shown = names([n.name for n in leaves])
        n0 = leaves[0] if leaves else None
        history = ""
        if n0 is not None:
            values = []
            for i in run:  # a repeated graph keeps its node ids
                node = _leaf(passes, (i, n0.id))
                values.append(show(node.grad_after) if node is not None else "?")
            history = f": `{n0.name}.grad` went " + " → ".join(values)
        first = passes[run[0]]
        found.append((float(run[1]), Diagnostic(
            code="grad-accumulation",
            severity=WARNING,
            title=f"Gradients of {shown} pile up over {len(run)} backward calls",
            message=(
                f"The backward at {where(first.source)} ran {len(run)} times over the same graph and each run "
                f"added its gradient to `.grad` of {shown}{history}. backward() adds to `.grad`, it never "
                f"overwrites it, and nothing cleared it in between (no zero_grad, no update)."
            ),
            hint=(
                f"If each backward should see only its own gradient, clear it in between: {_clear(leaves)} "
                f"(`optimizer.zero_grad()` for a model). If summing over several batches is what you want "
                f"(gradient accumulation), this is fine" + _divide_advice(last)
            ),
            sources=unique_sources([first.source]),
            nodes=[n.id for n in leaves if any(n is x for x in last.graph.nodes)],
            pass_index=last.index,
        )))
    return found


def _clear(leaves: list[Node]) -> str:
    """`w.grad.zero_()` or `w.grad = None` for a leaf the user holds in a variable."""
    name = next((v for v in (variable(n) for n in leaves if not n.is_parameter) if v), None)
    if name is None:
        return "set `.grad = None` (or call `.grad.zero_()`) on each of them"
    return f"`{name}.grad.zero_()` or `{name}.grad = None`"


def _divide_advice(p) -> str:
    """The end of the sentence on averaging: nothing to add when the loss is already divided."""
    scale = loss_divided(p)
    if scale is not None:
        return f" (the loss is already divided at {where(scale.source)})."
    return ": divide each loss by the number of batches."


def _mean_hint(p, counts: list[int]) -> str:
    """The micro-batching hint, unless the code already takes the mean (nanoGPT's
    `loss = loss / gradient_accumulation_steps`)."""
    k = " or ".join(map(str, counts))
    scale = loss_divided(p)
    if scale is None:
        return f"The update uses the sum of {k} gradients: divide each loss by {k} to get their mean."
    at = where(scale.source)
    if scale.divisor is None:
        return (f"The code already divides each loss at {at}: the update uses the mean of the {k} gradients "
                f"when that divisor is {k}.")
    if len(counts) == 1 and abs(scale.divisor - counts[0]) < 1e-6 * counts[0]:
        return f"Nothing to change: the code already divides each loss by {k} at {at}, so the update uses their mean."
    return (f"Each loss is divided by {scale.divisor:g} at {at}, while {k} gradients are summed per update: "
            f"the update uses their mean only if that divisor is {k}.")


def _micro(trace, passes, hits) -> list[Found]:
    if not hits:
        return []
    counts = sorted({c for _, c, _ in hits})
    key, count, update = hits[0]
    p = passes[key[0]]
    leaves = [n for n in (_leaf(passes, k) for k, _, _ in hits if k[0] == key[0]) if n is not None]
    k = " or ".join(map(str, counts))
    return [(float(key[0]), Diagnostic(
        code="grad-accumulation",
        severity=INFO,
        title=f"Gradient accumulation: {k} backward passes per update",
        message=(
            f"The gradients of {k} backward passes were summed in `.grad` before each update at {where(update)}, "
            f"then cleared: deliberate gradient accumulation (micro-batching) "
            f"({plural(len({h[0][0] for h in hits}), 'update')} like this)."
        ),
        hint=_mean_hint(passes[key[0]], counts),
        sources=unique_sources([p.source, update]),
        nodes=[n.id for n in leaves],
        pass_index=key[0],
    ))]
