"""Gradients that are not where people expect them: on a non-leaf, missing, or not finite."""

from __future__ import annotations

from ..events import Cut, MissingLeaf, NoGradient, NonleafGradRead
from ..model import Diagnostic, Event, Graph, LazyGraph, Node, Trace
from ._common import (
    ERROR,
    WARNING,
    Found,
    event_time,
    events,
    names,
    pass_at,
    plural,
    source_of,
    unique_sources,
    where,
)
from .user_words import variable


def nonleaf_grad(trace: Trace) -> list[Found]:
    """`nonleaf-grad` (warning): `.grad` read on a tensor that is not a leaf (always None)."""
    found: list[Found] = []
    by_line: dict[tuple, list[tuple[Event, NonleafGradRead]]] = {}
    for _, e, data in events(trace, NonleafGradRead):
        key = (e.source.file, e.source.line) if e.source else (None, id(e))
        by_line.setdefault(key, []).append((e, data))
    for group in by_line.values():
        e, read = group[0]
        name = read.name
        defined = source_of(read.defined_at)
        op = read.op
        # the node in the pass just before the read, when the tensor took part in it
        p = pass_at(trace, (e.pass_index or 0) - 1)
        node = _find(p.graph, op, defined) if p is not None else None
        if node is not None and not name:
            name = variable(node) or ""  # never a made-up label (`add_1`) as a variable to type
        shown = f"`{name}`" if name else "a tensor that is not a leaf"
        times = f" ({plural(len(group), 'read')})" if len(group) > 1 else ""
        found.append((event_time(e), Diagnostic(
            code="nonleaf-grad",
            severity=WARNING,
            title=f"`.grad` of non-leaf {shown} is always None" if name else "`.grad` of a non-leaf tensor is always None",
            message=(
                f"{where(e.source)} reads `.grad` of {shown}{times}. It was computed "
                + (f"at {where(defined)}" if defined else f"by {_op_of(op)}")
                + ", so it is not a leaf: backward stores .grad only on leaves (tensors "
                "created with requires_grad=True, and parameters) and passes through intermediate results "
                "without keeping their gradient."
            ),
            hint=(
                f"Call `{name}.retain_grad()` before backward to keep its gradient in `.grad`, or get it "
                f"directly with `torch.autograd.grad(loss, {name})`, or watch it with "
                f"`{name}.register_hook(print)`." if name else
                "Keep the tensor in a variable and call `.retain_grad()` on it before backward to keep its "
                "gradient in `.grad`, or get it directly with `torch.autograd.grad(loss, that_tensor)`, or watch "
                "it with `.register_hook(print)`."
            ),
            sources=unique_sources([e.source, defined]),
            nodes=[node.id] if node is not None else [],
            pass_index=p.index if node is not None and p is not None else None,
        )))
    return found


def _op_of(grad_fn: str) -> str:
    """`MulBackward0` -> "mul"."""
    import re

    base = re.sub(r"Backward\d*$", "", grad_fn)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower() or "an op"


def _find(graph: Graph, grad_fn: str, source) -> Node | None:
    for n in graph.nodes:
        if n.kind == "op" and n.grad_fn == grad_fn and source is not None and n.source is not None \
                and n.source.line == source.line and n.source.file == source.file:
            return n
    return None


def no_gradient(trace: Trace) -> list[Found]:
    """`no-gradient` (warning): a parameter or leaf that requires grad got no gradient from a
    pass in which its siblings did: detached, computed under no_grad, or unused."""
    # a leaf that some pass does reach is trained (a GAN's generator, detached in the
    # discriminator's step, gets its gradient from the generator's step)
    reached = {(n.name, tuple(n.shape or ())) for p in trace.passes for n in _leaf_nodes(p.graph) if n.name}
    groups: dict[tuple, dict] = {}
    for _, e, data in events(trace, NoGradient):
        p = pass_at(trace, data.pass_index if data.pass_index is not None else e.pass_index)
        by_cut: dict[tuple, list[MissingLeaf]] = {}
        for leaf in data.leaves:
            if leaf.get("name") and (leaf["name"], tuple(leaf.get("shape") or ())) in reached:
                continue
            cut = leaf.get("cut") or Cut()
            by_cut.setdefault((cut.get("file"), cut.get("line"), cut.get("op")), []).append(leaf)
        for cut_key, leaves in by_cut.items():
            key = (tuple(sorted(str(x.get("name")) for x in leaves)), cut_key)
            g = groups.get(key)
            if g is None:
                groups[key] = {"event": e, "pass": p, "leaves": leaves, "count": 1}
            else:
                g["count"] += 1
    found: list[Found] = []
    for g in groups.values():
        e, p, leaves = g["event"], g["pass"], g["leaves"]
        cut = leaves[0].get("cut") or Cut()
        cut_source = source_of(cut)
        cut_op = cut.get("op") or ""
        shown = names([str(x.get("name") or "") for x in leaves])
        plural_s = len(leaves) != 1
        they = "they" if plural_s else "it"
        backward = where(p.source if p is not None else e.source)
        if cut_source is not None and cut_op in ("detach", "detach_", "data"):
            why = (
                f"The path from {'them' if plural_s else 'it'} to the loss is cut at {where(cut_source)}: "
                f"`{'.data' if cut_op == 'data' else '.' + cut_op + '()'}` returns a tensor with no history, "
                f"so backward stops there."
            )
            hint = (
                "Remove the detach if these parameters should learn. If cutting them off is deliberate "
                "(a frozen part, a target network), say so: `requires_grad_(False)` on them, or run that part "
                "under `torch.no_grad()`, so that nothing expects a gradient."
            )
        elif cut_source is not None:
            why = (
                f"{where(cut_source)} used {'them' if plural_s else 'it'} outside autograd (`{cut_op}` ran "
                f"with gradients off, e.g. under `torch.no_grad()`, or is not differentiable), so no path "
                f"from the loss leads back to {'them' if plural_s else 'it'}."
            )
            hint = (
                "Run that computation with gradients on if these parameters should learn. If freezing them is "
                "deliberate, call `requires_grad_(False)` on them (optimizers then skip them, and gradscope "
                "stays quiet)."
            )
        else:
            why = (
                f"{they.capitalize()} did not take part in the graph of this loss: the module ran but its "
                f"result did not reach the loss (unused), or the path was cut by `.detach()`, "
                f"`torch.no_grad()` or a non-differentiable op (argmax, comparison, `.item()`)."
            )
            hint = (
                "Check that the output of the module that holds them is used in the loss. If leaving them out "
                "is deliberate, call `requires_grad_(False)` on them; unused parameters also make "
                "DistributedDataParallel fail unless find_unused_parameters=True."
            )
        passes = f" in {plural(g['count'], 'pass')}" if g["count"] > 1 else ""
        found.append((float(p.index if p is not None else e.pass_index or 0), Diagnostic(
            code="no-gradient",
            severity=WARNING,
            title=f"{shown} got no gradient{passes}",
            message=(
                f"{shown} {'require' if plural_s else 'requires'} grad, but the backward at {backward} gave "
                f"{'them' if plural_s else 'it'} no gradient, while other parameters of the same model got "
                f"one{passes}. {why}"
            ),
            hint=hint,
            sources=unique_sources([cut_source, p.source if p is not None else e.source]),
            nodes=[],
            pass_index=p.index if p is not None else e.pass_index,
        )))
    return found


def nonfinite_gradient(trace: Trace) -> list[Found]:
    """`nonfinite-gradient` (error): the first node, in backward order, whose gradient turns
    NaN or Inf although what arrived at it was finite, and the forward ops involved."""
    found: list[Found] = []
    seen: set[tuple] = set()
    origins = [(p, _first_nonfinite(p.graph, p.edge_gradients)) for p in trace.passes]
    count = sum(1 for _, o in origins if o is not None)
    for p, origin in origins:
        if origin is None:
            continue
        node, bad_inputs = origin
        key = (node.grad_fn, node.source.file if node.source else None, node.source.line if node.source else None)
        if key in seen:
            continue
        seen.add(key)
        by_id = {n.id: n for n in p.graph.nodes}
        inputs = [by_id[e.src] for e in bad_inputs if e.src in by_id]
        kinds = _kinds(bad_inputs)
        op = node.op or node.grad_fn
        if node.is_root and not bad_inputs:
            message = (
                f"Backward at {where(p.source)} started from `{node.label}` with a seed gradient that holds "
                f"{kinds}: every gradient of the pass inherits it."
            )
            hint = "Pass a finite `gradient=` to backward."
        else:
            to = names([n.label for n in inputs]) if inputs else "its inputs"
            message = (
                f"The first non-finite gradient of the backward at {where(p.source)} appears at {op}, "
                f"{where(node.source)}: the gradient that arrived there was finite, but what it sent to {to} "
                f"holds {kinds}. The backward of {op} computes that from the values its forward op saw"
                + (" (" + ", ".join(f"`{n.label}` from {where(n.source)}" for n in inputs if n.source) + ")"
                   if any(n.source for n in inputs) else "")
                + ": typically a log, sqrt, division or pow at 0 or at a negative number, or an overflow."
            )
            hint = _hint(op)
        if count > 1:
            message += f" {plural(count, 'pass')} of this trace have non-finite gradients."
        found.append((float(p.index), Diagnostic(
            code="nonfinite-gradient",
            severity=ERROR,
            title=f"NaN/Inf gradient first appears at {op}" + (f" ({node.source.short})" if node.source else ""),
            message=message,
            hint=hint,
            sources=unique_sources([node.source, *(n.source for n in inputs), p.source]),
            nodes=[node.id, *(n.id for n in inputs)],
            pass_index=p.index,
        )))
    if not found:  # only passes without edge gradients saw it: say which .grad, not where
        found.extend(_nonfinite_in_leaves(trace))
    return found


def _nonfinite_in_leaves(trace: Trace) -> list[Found]:
    """A pass recorded without edge gradients (sampled: a long run of a big graph, or of a
    small one past its cost budget) can only tell which leaves' `.grad` turned NaN or Inf."""
    bad_passes = []
    for p in trace.passes:
        if p.edge_gradients or isinstance(p.graph, LazyGraph) and not p.graph.made and p.graph.numbers.finite():
            continue  # (a light pass's numbers say it, without making its nodes)
        turned = [n for n in p.graph.leaves
                  if n.grad_after is not None and not n.grad_after.finite and _finite(n.grad_before)]
        if turned:
            bad_passes.append((p, turned))
    if not bad_passes:
        return []
    p, turned = bad_passes[0]
    message = (
        f"The backward at {where(p.source)} (pass {p.index}) left NaN or Inf in "
        f"{names([n.label for n in turned])}.grad. That pass was recorded without the gradient along each "
        f"edge, so where the first non-finite value appeared is not known."
    )
    if len(bad_passes) > 1:
        message += f" {plural(len(bad_passes), 'pass')} of this trace turned a gradient non-finite."
    return [(float(p.index), Diagnostic(
        code="nonfinite-gradient",
        severity=ERROR,
        title=f"NaN/Inf in {names([n.label for n in turned], limit=2)}.grad",
        message=message,
        hint="Trace with `gradscope.trace(every=1)` (every pass recorded in full) to see the op where it starts; "
             "typically a log, sqrt, division or pow at 0 or at a negative number, or an overflow.",
        sources=unique_sources([p.source]),
        nodes=[n.id for n in turned],
        pass_index=p.index,
    ))]


def _finite(s) -> bool:
    return s is None or s.finite


def _leaf_nodes(graph: Graph) -> list[Node]:
    """Its leaves, or (a light pass not read yet: its nodes are not made for this) their
    descriptions, with the same names and shapes."""
    if isinstance(graph, LazyGraph) and not graph.made:
        return graph.numbers.layout.leaf_nodes
    return graph.leaves


def _first_nonfinite(graph: Graph, edge_gradients: bool = True):
    """(node, its non-finite outgoing edges) for the first node in backward order where a
    non-finite gradient appears, or None. (A pass without edge gradients has none on its
    edges and nodes: only its roots' seeds can tell.)"""
    if not edge_gradients:
        if all(_finite(n.seed) for n in graph.roots):
            return None
    elif all(_finite(e.grad) for e in graph.edges) and all(
        _finite(n.seed) and all(_finite(g) for g in n.grad_outputs) for n in graph.nodes
    ):
        return None  # (nearly every pass: checked before any index is built)
    edges_into: dict[str, list] = {}
    edges_from: dict[str, list] = {}
    for e in graph.edges:
        edges_into.setdefault(e.dst, []).append(e)
        edges_from.setdefault(e.src, []).append(e)
    by_id = {n.id: n for n in graph.nodes}
    # backward order: a node is ready once every consumer has sent its gradient
    waiting = {n.id: len(edges_from.get(n.id, ())) for n in graph.nodes}
    ready = [n.id for n in graph.nodes if waiting[n.id] == 0]
    order = []
    while ready:
        nid = ready.pop(0)
        order.append(nid)
        for e in edges_into.get(nid, ()):
            waiting[e.src] -= 1
            if waiting[e.src] == 0:
                ready.append(e.src)
    for nid in order:
        node = by_id[nid]
        if node.kind != "op":
            continue
        arriving = [g for g in node.grad_outputs if g is not None] or [e.grad for e in edges_from.get(nid, ())]
        if node.seed is not None and not node.seed.finite:
            return node, []
        if not all(_finite(g) for g in arriving):
            continue
        bad = [e for e in edges_into.get(nid, ()) if e.grad is not None and not e.grad.finite]
        if bad:
            return node, bad
    return None


def _kinds(edges) -> str:
    nan = sum(e.grad.nan for e in edges if e.grad is not None)
    inf = sum(e.grad.inf for e in edges if e.grad is not None)
    parts = []
    if nan:
        parts.append(plural(nan, "NaN"))
    if inf:
        parts.append(plural(inf, "Inf") if inf == 1 else f"{inf} Infs")
    return " and ".join(parts) or "NaN or Inf values"


def _hint(op: str) -> str:
    specific = {
        "log": "clamp its input away from 0: `torch.log(x.clamp_min(1e-12))` (or use log_softmax / "
               "BCEWithLogitsLoss instead of log of a probability)",
        "sqrt": "keep its input away from 0: `torch.sqrt(x + 1e-12)` (the derivative 1/(2*sqrt(x)) is Inf at 0)",
        "div": "keep the divisor away from 0: `x / (d + 1e-12)`",
        "truediv": "keep the divisor away from 0: `x / (d + 1e-12)`",
        "pow": "avoid a fractional power of 0 or of a negative number (clamp the base)",
        "norm": "the norm of an all-zero vector has no derivative: add an eps, or use `x.pow(2).sum()`",
        "acos": "clamp its input to (-1 + eps, 1 - eps)",
        "asin": "clamp its input to (-1 + eps, 1 - eps)",
        "atanh": "clamp its input to (-1 + eps, 1 - eps)",
        "exp": "its output overflowed: subtract the max first, or use logsumexp / softmax",
    }.get(op)
    base = "Check the values that reach this op"
    if specific:
        base += f"; for {op}: {specific}"
    return base + ". `torch.autograd.set_detect_anomaly(True)` stops at the same op with a traceback."
