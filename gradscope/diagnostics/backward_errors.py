"""Backward calls that PyTorch refuses: a freed graph, a non-scalar root without `gradient=`."""

from __future__ import annotations

from collections import deque

from ..events import BackwardError, FreedGraphReused
from ..model import Diagnostic, Graph, Node, Source, Trace
from ..torch_errors import backward_twice as second_backward_error
from ..torch_errors import nonscalar_backward as nonscalar_backward_error
from ._common import (
    ERROR,
    Found,
    event_time,
    events,
    failed_pass,
    pass_at,
    unique_sources,
    where,
)
from .user_words import Carried, backward_receiver, carried_variables, detach_code, variable


def backward_twice(trace: Trace) -> list[Found]:
    """`backward-twice` (error): backward through a graph whose saved tensors an earlier
    backward freed. Tells the same graph run twice (retain_graph) from a tensor carried across
    loop iterations with its history (detach)."""
    found: list[Found] = []
    freed_events = {e.pass_index: data for _, e, data in events(trace, FreedGraphReused)}
    for _, e, error in events(trace, BackwardError):
        if not second_backward_error(error.message):
            continue
        p = failed_pass(trace, e)
        freed = freed_events.get(p.index) if p is not None else None
        freed_nodes = list(freed.nodes) if freed else []
        first = pass_at(trace, freed.freed_by) if freed else None
        if first is None and p is not None:  # no early event: the latest earlier pass from the same line
            earlier = [q for q in trace.passes if q.index < p.index and not q.retain_graph and q.error is None]
            first = earlier[-1] if earlier else None
        same_graph = p is not None and first is not None and p.graph.signature() == first.graph.signature()
        carried = carrier = variables = None
        if p is not None and not same_graph:
            if freed_nodes:
                carried = _nearest_to_root(p.graph, set(freed_nodes) - _ran(p.graph))
            variables = carried_variables(e.source, carried.source if carried is not None else None)
        freed_at = f"the backward at {where(first.source)}" if first is not None else "an earlier backward"
        if p is not None and (carried is not None or variables is not None):
            message, hint = _carried_words(e.source, carried, variables, freed_at, p.graph)
            carrier = variables.source if variables is not None else None
        else:
            message = (
                f"The backward at {where(e.source)} runs through a graph that {freed_at} already ran through. "
                f"Backward frees the tensors a graph saved for it (to save memory) unless told "
                f"retain_graph=True, so a second backward through the same graph has nothing to compute with."
            )
            hint = (
                "If you need two backward passes through one graph, pass retain_graph=True to the first one "
                "(for several losses, one `(loss1 + loss2).backward()` is simpler and faster). If the second "
                "backward should see new values, run the forward pass again before it. If a tensor is carried "
                "across loop iterations, `.detach()` it instead."
            )
        roots = [n.id for n in p.graph.roots] if p is not None else []
        found.append((float(p.index) if p else event_time(e), Diagnostic(
            code="backward-twice",
            severity=ERROR,
            title="Backward through a graph that was already freed",
            message=message,
            hint=hint,
            sources=unique_sources([e.source, first.source if first else None, carrier,
                                    carried.source if carried else None]),
            nodes=([carried.id] if carried is not None else []) or [n for n in freed_nodes][:8] or roots,
            pass_index=p.index if p else None,
        )))
    return found


def _carried_words(backward: Source | None, carried: Node | None, found: Carried | None, freed_at: str,
                   graph: Graph) -> tuple[str, str]:
    """Message and hint in the user's words: the loop variable that carries the tensor
    (`hidden = hidden.detach()`), never a label gradscope made up."""
    names = found.names if found is not None else ()
    src = carried.source if carried is not None else None
    made = f" (computed at {where(src)})" if src is not None else ""
    if found is not None and names:
        by = f" by {where(found.source)}" if found.source is not None else ""
        if found.source is not None and src is not None and (found.source.file, found.source.line) == (src.file, src.line):
            made = ""
        what = " and ".join(f"`{n}`" for n in names) + f", carried over{by} from an earlier iteration{made}"
    else:
        own = variable(carried)
        at = f" at {where(src)}" if src is not None else ""
        what = (f"`{own}`, computed" if own else "a tensor computed") + f"{at} in an earlier iteration"
    message = (
        f"The backward at {where(backward)} reaches {what}, whose graph {freed_at} already ran through and "
        f"freed. Backward frees the tensors a graph saved as soon as it is done with them, unless told "
        f"retain_graph=True. A tensor carried from one iteration to the next keeps its whole history, so each "
        f"new graph still reaches the old, freed one."
    )
    later = ("retain_graph=True would silence the error but is usually the wrong fix here: every backward would "
             "run through all earlier iterations again, slower each step, and memory would grow.")
    if found is not None and found.summed and names == (backward_receiver(backward),):
        total = names[0]
        hint = (f"Call backward on each iteration's own loss, and keep the running total as a number: "
                f"`{total} += loss.item()` (or backward once, after the loop, on the sum). {later}")
        return message, hint
    if names:
        cut = f"{detach_code(names)} at the start of each iteration"
        if any(n.op == "lstm" for n in graph.nodes) and len(names) == 1:
            cut += f" (for an LSTM's `(h, c)` pair: `{names[0]} = tuple(t.detach() for t in {names[0]})`)"
    else:
        cut = "reassign the variable that carries it to its `.detach()` at the start of each iteration"
    return message, (f"Cut the history where the tensor is carried over (truncated backpropagation through time): "
                     f"{cut}. {later}")


def _ran(graph: Graph) -> set[str]:
    """Nodes that finished in this (failed) backward: they sent a gradient on. Their saved
    tensors are gone because they ran, not because an earlier backward freed them."""
    return {e.dst for e in graph.edges if e.grad is not None}


def _nearest_to_root(graph: Graph, ids: set[str]):
    """The node among `ids` that backward reaches first (fewest edges from a root)."""
    into: dict[str, list[str]] = {}
    for edge in graph.edges:
        into.setdefault(edge.dst, []).append(edge.src)
    queue = deque(n.id for n in graph.roots)
    seen = set(queue)
    by_id = {n.id: n for n in graph.nodes}
    while queue:
        nid = queue.popleft()
        if nid in ids:
            return by_id[nid]
        for src in into.get(nid, []):
            if src not in seen:
                seen.add(src)
                queue.append(src)
    return None


def nonscalar_backward(trace: Trace) -> list[Found]:
    """`nonscalar-backward` (error): `y.backward()` on a tensor with more than one element."""
    found: list[Found] = []
    for _, e, error in events(trace, BackwardError):
        if not nonscalar_backward_error(error.message):
            continue
        p = failed_pass(trace, e)
        roots = [n for n in p.graph.roots] if p is not None else []
        root = roots[0] if roots else None
        name = backward_receiver(e.source) or variable(root) or "y"
        shape = "x".join(map(str, root.shape)) if root is not None and root.shape else None
        of_shape = f" of shape [{shape}]" if shape else ""
        found.append((float(p.index) if p else event_time(e), Diagnostic(
            code="nonscalar-backward",
            severity=ERROR,
            title=f"backward() on non-scalar `{name}` without a gradient",
            message=(
                f"{where(e.source)} starts backward from `{name}`{of_shape}, which is not a single number. "
                f"Backward begins with d{name}/d{name} for every element of the root; PyTorch fills it in (1.0) "
                f"only when the root is a scalar. For a vector it must be told how to weigh each element."
            ),
            hint=(
                f"Pass one weight per element: `{name}.backward(gradient=torch.tensor([1., 2.]))` computes "
                f"the gradient of 1 * {name}[0] + 2 * {name}[1] (grad_tensors in torch.autograd.backward). "
                f"`gradient=torch.ones_like({name})` gives the gradient of the sum; or reduce first: "
                f"`{name}.sum().backward()` or `{name}.mean().backward()`."
            ),
            sources=unique_sources([e.source, root.source if root is not None else None]),
            nodes=[n.id for n in roots],
            pass_index=p.index if p else None,
        )))
    return found
