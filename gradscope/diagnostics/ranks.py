"""ddp-gradients-differ: DistributedDataParallel promises every rank the same gradients
after its all-reduce. This rule compares what each rank recorded (the parameters' `.grad`
statistics after each synchronised pass) and says where they part.

It works on small per-rank summaries (`leaf_grads`), not on live tensors: the ranks are
separate processes, and gradscope never adds a collective of its own to a user's job.
"""

from __future__ import annotations

import math
from typing import Mapping

from ..model import Diagnostic, Trace

CODE = "ddp-gradients-differ"
_REL_TOL = 1e-6


def leaf_grads(trace: Trace) -> dict[str, dict]:
    """{pass index: {"step": s, "leaves": {name: [norm, max |g|, mean]}}} for the passes DDP
    synchronises: the last pass before each optimizer step (earlier ones may be no_sync()
    accumulation) and the last pass of the trace; DDP's parameters only (named `module.*`)."""
    last_of_step: dict[int, int] = {}
    for p in trace.passes:
        last_of_step[p.step] = p.index
    found = {}
    for p in trace.passes:
        if p.index != last_of_step[p.step]:
            continue
        leaves = {n.name: [n.grad_after.norm, n.grad_after.max_abs, n.grad_after.mean]
                  for n in p.graph.leaves
                  if n.is_parameter and n.name.startswith("module.") and n.grad_after is not None}
        if leaves:
            found[str(p.index)] = {"step": p.step, "leaves": leaves}
    return found


def _differ(a: list, b: list) -> bool:
    for x, y in zip(a, b):
        if x is None or y is None:
            continue
        if not math.isclose(x, y, rel_tol=_REL_TOL, abs_tol=1e-12):
            return True
    return False


def ddp_gradients_differ(trace: Trace, rank: int, others: Mapping[int, dict]) -> list[Diagnostic]:
    """A diagnostic (on this rank's trace) for the first synchronised pass whose parameter
    gradients differ from another rank's (`others`: rank -> its `leaf_grads`)."""
    mine = leaf_grads(trace)
    bad: dict[str, dict[str, list[int]]] = {}  # pass -> leaf -> ranks that differ
    for other, theirs in sorted(others.items()):
        for index, here in mine.items():
            there = theirs.get(index)
            if there is None or there.get("step") != here["step"]:
                continue
            for name, stats in here["leaves"].items():
                if name in there["leaves"] and _differ(stats, there["leaves"][name]):
                    bad.setdefault(index, {}).setdefault(name, []).append(other)
    if not bad:
        return []
    first = min(bad, key=int)
    p = next(p for p in trace.passes if p.index == int(first))
    names = sorted(bad[first])
    ranks = sorted({r for rs in bad[first].values() for r in rs})
    ids = [n.id for n in p.graph.leaves if n.name in bad[first]]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [Diagnostic(
        code=CODE, severity="error", title="DDP ranks' gradients differ after all-reduce",
        message=(f"After pass {p.index} (step {p.step}) rank {rank} and rank(s) {', '.join(map(str, ranks))} "
                 f"hold different gradients for {shown}, where DistributedDataParallel averages them "
                 f"to the same values on every rank; {len(bad)} synchronised pass(es) differ."),
        hint=("Look for what changes gradients on one rank only: a communication hook that does not "
              "all-reduce, a gradient edited after backward, parameters outside the DDP module, or "
              "no_sync() on the step that should synchronise."),
        sources=[p.source] if p.source else [], nodes=ids, pass_index=p.index,
    )]
