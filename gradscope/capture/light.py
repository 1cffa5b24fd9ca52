"""Light passes: steady passes recorded from their numbers alone.

Most passes of a training loop are steady (steady.py) and quiet: the graph repeats the
last quiet pass's (repeat.py), no `.grad` is set when backward starts (`zero_grad()`
cleared it), nothing is recorded in full. Such a pass's record is known but for a few
numbers: the loss, each leaf's `.grad` norm, the values of tiny leaves. The general way
(backward.py's `PassRecorder` over `QuietTemplate.replay`) still walks the graph into a
`GraphIndex`, queues each number as a pending summary and fills it in later, and each
listener (the stream, the series over time, the held sample) works the pass out anew:
together several times the cost of a small model's step.

A light pass does only what its record needs. It recognises the graph by walking the
autograd nodes against a plan made once per template (`LightPlan`: each node's class and
inputs, its leaves' tensors) and reads the numbers into a `model.LightNumbers`. Its
`Pass.graph` is a `model.LazyGraph`: the nodes are made from those numbers and the
template's objects only when something reads them. It tells the listeners how it repeats
the template (`model.Repeat`); they, `Trace.save` and the diagnostics read the numbers as
they are. Its record is the general way's, to the byte (tests/test_steady.py compares
them pass by pass and line by line of the stream).

Anything else goes the general way: a graph that differs, a `.grad` already set when the
pass starts (gradient accumulation), a pass due in full, a seed of the user's, tensors off
the CPU (their numbers would wait for the device there), a complex dtype, the user's modes
or profiler watching, a parameter a module left out of the graph, another pass's numbers
still in transit.
"""

from __future__ import annotations

import logging
import math
import operator
import weakref
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch

from ..model import Graph, LazyGraph, LightNumbers, Pass, Repeat, Source
from . import names
from ._torch import version_of
from .backward import due_in_full, graph_elements, ones_summary
from .full_passes import FullPasses, cpu_time
from .leaf_norms import queue_value_norms, read_value_norms
from .quiet import user_watching
from .repeat import fresh_root
from .sampling import SMALL, norms_due
from .source import user_source
from .summaries import Pending, PendingBatch

if TYPE_CHECKING:
    from .backward_call import BackwardCall
    from .checks import LiveChecks
    from .repeat import QuietTemplate
    from .state import TraceState

log = logging.getLogger("gradscope")

# add(make the pass from its index, how it repeats, api, error, source) -> the pass
AddRepeat = Callable[[Callable[[int], Pass], Repeat, str, "BaseException | None", "Source | None"], Pass]

_REAL = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class LightPlan:
    """How a steady pass over one template's graph is recognised and recorded."""

    def __init__(self, template: QuietTemplate, max_values: int) -> None:
        self.template = template
        self.classes = template.classes
        self.roots = template.roots
        self.walk = _walk_plan(template)
        self.leaves = template.leaves  # places
        self.keys = [template.keys[k] for k in template.leaves]  # (weakref, shape, dtype, device, requires_grad)
        self.node_ids = [template.nodes[k].id for k in template.leaves]
        self.histories = template.histories
        self.small = [math.prod(shape) <= max_values for _, shape, *_ in self.keys]
        self.leaf_ids = frozenset(id(key[0]()) for key in self.keys)
        self.elements = sum(math.prod(key[1]) for key in self.keys)  # (the leaves': value norms due?)
        # the graph's structure, for `due_in_full` (which reads no numbers), and its size
        self.structure = Graph(nodes=template.nodes, edges=template.edges)
        self.graph_elements = graph_elements(self.structure)
        self.any_small = any(self.small)
        self.layout = template.layout  # (where a pass's numbers go)
        self.repeat = self.layout.repeat

    @staticmethod
    def of(template: QuietTemplate, max_values: int) -> LightPlan | None:
        """The template's plan (made the first time), or None when no pass can repeat it lightly."""
        if template.light is None:
            plan = LightPlan(template, max_values) if _light_template(template) else None
            template.light = plan if plan is not None and plan.walk is not None else False
        return template.light or None

    def match(self, roots: list[torch.Tensor]) -> list | None:
        """The autograd nodes behind `roots`, numbered as the walk numbers them, when they
        are wired and classed as the template's and its leaves are the template's tensors,
        unchanged; else None. (It runs on every light pass: the walk reads each node's
        `next_functions` into one list, a few Python operations a node, and the list is
        then checked against the plan's in a few calls.)"""
        walk = self.walk
        assert walk is not None
        fns: list[Any] = []
        found = []
        fn: Any
        for t in roots:
            fn = t.grad_fn
            if fn is None:
                return None
            k = next((k for k, seen in enumerate(fns) if seen is fn), None)
            if k is None:
                k = len(fns)
                fns.append(fn)
            found.append(k)
        if sorted(set(found)) != self.roots:
            return None
        # every node's inputs, in the walk's order, after the roots: (node, input number) pairs
        pairs: list[Any] = [(fn, 0) for fn in fns]
        inputs: list[tuple] = []
        extend, keep = pairs.extend, inputs.append
        try:
            for at in walk.found_at:  # (where the node visited next was found)
                got = pairs[at][0].next_functions
                extend(got)
                keep(got)
        except (AttributeError, IndexError):  # (no node where the plan found one, or fewer inputs)
            return None
        if list(map(len, inputs)) != walk.arity:
            return None
        nodes = list(map(_first, pairs))
        fns = list(walk.places(nodes))
        # (each place one node: a node reached twice where the template had two would pass the rest)
        if list(map(type, fns)) != self.classes or len(set(map(id, fns))) != len(fns):
            return None
        fns.append(None)  # (what an absent input is)
        if not all(map(operator.is_, nodes, walk.expected(fns))):
            return None
        fns.pop()
        for k, (ref, shape, dtype, device, requires_grad) in zip(self.leaves, self.keys):
            leaf = fns[k].variable
            if not (ref() is leaf and leaf.shape == shape and leaf.dtype is dtype and leaf.device == device
                    and leaf.requires_grad == requires_grad):
                return None
        return fns


_first = operator.itemgetter(0)


class _Walk(NamedTuple):
    """How the walk (walk.py) finds a template's graph, as `LightPlan.match` follows it.

    The match lists the roots' nodes, then the `next_functions` of each node in the walk's
    order, one after the other: a node's place in that list is where it was first found."""

    found_at: list[int]  # per node, in the walk's order: where in the list it was found
    arity: list[int]  # per node, in the walk's order: its number of inputs
    places: Callable[[list], tuple]  # the list -> the nodes by place (the template's numbering)
    expected: Callable[[list], tuple]  # the nodes by place, then None -> what the list must hold


def _walk_plan(template: QuietTemplate) -> _Walk | None:
    """How to follow the template's graph as the walk numbered it (see `_Walk`); None when
    its numbering is not the walk's (no pass then repeats it lightly)."""
    size = len(template.classes)
    inputs: list[list[int | None]] = [[None] * n for n in template.arity]
    for dst, i, place in template.wiring:
        inputs[dst][i] = place
    found = sorted(set(template.roots))
    if found != list(range(len(found))) or size < 2:
        return None
    where: list[int] = list(found) + [0] * (size - len(found))  # place -> where in the list it is found
    expected: list[int] = list(found)  # per entry of the list: the place of its node (size: none)
    order: list[int] = []
    stack = list(found)
    seen = len(found)
    while stack:  # (as walk.py walks: the last found first, its inputs in order)
        k = stack.pop()
        order.append(k)
        for src in inputs[k]:
            if src == seen:  # first found here
                where[src] = len(expected)
                seen += 1
                stack.append(src)
            elif src is not None and src > seen:  # (numbered otherwise than the walk)
                return None
            expected.append(size if src is None else src)
    if seen != size or len(order) != size:
        return None
    return _Walk([where[k] for k in order], [len(inputs[k]) for k in order],
                 operator.itemgetter(*where), operator.itemgetter(*expected))


def _light_template(template: QuietTemplate) -> bool:
    """Can a pass repeat this template lightly? Its leaves are known (keys) and on the CPU,
    of a real dtype, and its roots are ops."""
    if not template.replayable or not template.keys or not template.leaves:
        return False
    if any(template.nodes[k].kind != "op" for k in template.roots):
        return False
    return all(template.keys[k][2] in _REAL and template.keys[k][3].type == "cpu" for k in template.leaves)


class LightPasses:
    """Records steady passes lightly where it can (see the module's docstring)."""

    def __init__(self, state: TraceState, add: AddRepeat, busy: Callable[[], bool], checks: LiveChecks) -> None:
        self.state = state
        self._add = add  # passes.py's `Passes.add_repeat`
        self._busy = busy  # ... its `busy`: numbers of a pass still in transit?
        self.checks = checks
        self.count = 0  # light passes recorded

    def record(self, call: BackwardCall, template: QuietTemplate | None, run: Callable[[], Any],
               general: Callable[..., Any]) -> Any:
        """Record the steady backward `call` (`run()` runs it) over the last quiet pass's
        `template` lightly, or hand it to `general(decided=...)`, the general way, with what
        was asked of the budget already."""
        if template is None:
            return general()
        state = self.state
        options = state.gradient_options
        batch_options = state.summary_options
        plan = LightPlan.of(template, batch_options.max_values)
        if (plan is None or not options.gradients or options.every <= 1 or state.nonfinite_seen
                or not batch_options.stats or not call.plain or any(s is not None for s in call.seeds)
                or self._busy() or names.generation() != template.generation):
            return general()
        roots = call.roots
        if not all(r.is_cpu and r.dtype in _REAL for r in roots) or user_watching():
            return general()
        fns = plan.match(roots)
        if fns is None or names.any_named(fns):
            return general()
        leaves = [fns[k].variable for k in plan.leaves]
        p = state.next_pass_index
        if any(leaf.grad is not None for leaf in leaves) \
                or not self.checks.before_repeat(p, plan.leaf_ids, plan.histories, plan.node_ids):
            return general()
        started = cpu_time()
        full, budget, key = due_in_full(state, plan.structure, template, plan.graph_elements)
        if full:
            return general(decided=(full, budget, key))
        return self._record(call, plan, fns, leaves, run, budget, started)

    def _record(self, call: BackwardCall, plan: LightPlan, fns: list, leaves: list[torch.Tensor],
                run: Callable[[], Any], budget: FullPasses | None, started: float) -> Any:
        state = self.state
        source = user_source()
        template = plan.template
        roots = [fresh_root(template.nodes[k]) for k in template.roots]
        # what the forward made: the roots' values (a loss), the tiny leaves' values, and
        # when due the value norms of all leaves
        max_values = state.summary_options.max_values
        values = value_norms = None
        with torch.no_grad():
            for k, root in zip(_places(fns, call.roots), call.roots):
                node = roots[template.roots.index(k)]
                if root.numel() <= max_values:
                    node.value = root.tolist()
                if root.numel() == 1:
                    node.seed = ones_summary(root)
            if plan.any_small:
                values = [leaf.tolist() if small else None for leaf, small in zip(leaves, plan.small)]
            if norms_due(state.next_pass_index, state.gradient_options.every, plan.elements <= SMALL):
                queued = queue_value_norms(list(enumerate(leaves)), PendingBatch(state.summary_options))
                value_norms = read_value_norms(queued, len(leaves))
        del fns  # (no autograd node held past what the pass needs)
        error = None
        try:
            return run()
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                numbers = LightNumbers(plan.layout, roots, [], values, value_norms)
                self._finish(plan, numbers, leaves, error, source, budget, started)
            except Exception as exc:  # (guard.py: never let gradscope stop the user's backward)
                log.debug("gradscope: recording a light pass failed", exc_info=True)
                state.not_recorded(exc, source)

    def _finish(self, plan: LightPlan, numbers: LightNumbers, leaves: list[torch.Tensor],
                error: BaseException | None, source: Source | None, budget: FullPasses | None,
                started: float) -> None:
        """The pass ran (or raised): read the leaves' gradients, make the pass, tell everyone.
        (Its graph's nodes are made only if something reads them: `model.LazyGraph`.)"""
        state = self.state
        template = plan.template
        self.count += 1
        with torch.no_grad():
            grads = [leaf.grad for leaf in leaves]
            numbers.grads = [n.result if isinstance(n, Pending) else n
                             for n in PendingBatch(state.summary_options).norms(grads)]
        graph = LazyGraph(numbers, template.edges, template.module_calls)
        for k, grad, history in zip(plan.leaves, grads, plan.histories):
            if grad is not None:
                history.grad = (weakref.ref(grad), version_of(grad), graph, k)
        if not numbers.finite():
            state.nonfinite_seen = True  # record the next pass in full, to find where
        if error is None:
            state.nodes.retire([])  # (a steady graph has no notes: those of the pass before go)
        finishing = cpu_time()
        if budget is not None:
            budget.ran(False, finishing - started)

        def make(index: int) -> Pass:
            return Pass(index=index, api=template.api, graph=graph, source=source, step=state.optimizer_steps,
                        edge_gradients=False, error=None if error is None else f"{type(error).__name__}: {error}")

        self._add(make, plan.repeat, template.api, error, source)
        if budget is not None:
            budget.finished(False, cpu_time() - finishing)


def _places(fns: list, roots: list[torch.Tensor]) -> list[int]:
    at = {id(fn): k for k, fn in enumerate(fns[:len(roots)])}
    return [at[id(r.grad_fn)] for r in roots]
