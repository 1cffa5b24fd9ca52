"""Recording one backward pass: the graph, the gradient along every edge, local derivatives.

A `PassRecorder` is made when the user's code calls `backward`/`autograd.grad` inside a
trace. It snapshots the graph, puts a pre-hook and a post-hook on each op node for the
length of the call, and turns what flowed into plain model objects when the call ends.

Hook rules that keep the user's numbers untouched (../shared/DESIGN.md): every hook returns
None, runs under no_grad, and swallows its own exceptions. AccumulateGrad nodes, custom
Python Functions and nodes whose saved tensors carry unpack hooks (checkpoint) are never
called; everything else may be called with one-hot gradients to get its local Jacobian.
"""

from __future__ import annotations

import logging
import math
import operator
import weakref
from typing import Any

import torch

from ..model import Edge, Graph, Pass, Source, TensorSummary
from ._torch import has_grad_hooks, input_metadata, version_of
from .backward_call import BackwardCall
from .created_grads import mark_made_by_backward, name_new_gradients
from .deferred import Deferred, SameAs
from .full_passes import FullPasses, cpu_time
from .history import LeafHistory, history_of
from .jacobians import local_jacobians
from .leaf_norms import fill_value_norms, queue_value_norms, value_norms_due
from .quiet import unwatched_hook
from .repeat import QuietTemplate, unshare
from .sampling import FIRST, SMALL, sampled
from .state import GradientOptions, TraceState
from .summaries import PendingBatch, _device_name, _dtype_name, _nest
from .walk import GraphIndex, finish_leaf_values, walk

log = logging.getLogger("gradscope")

FIRST_FULL = FIRST
SMALL_GRAPH = SMALL  # elements over all node outputs: below it full passes are chosen by cost


class PassRecorder:
    """Records one backward call: `before()`, run the call, `after(...)`, and `finish()`.

    `after()` returns the `Pass` at once, its numbers still on their way to the host;
    `finish()` fills them in. On a GPU a pass is finished (passes.py) once its copy has landed
    (`ready()`), so tracing never makes the host wait for the device mid-training.
    """

    def __init__(self, state: TraceState, call: BackwardCall, source: Source | None, steady: bool = False,
                 decided: FullDecision | None = None):
        self.state = state
        self.decided = decided  # `due_in_full` as asked for this pass already (light.py)
        self.call = call
        self.source = source
        self.steady = steady  # its forward ran with the recorder off (steady.py)
        self.repeated = False  # its graph repeated the last quiet pass's (repeat.py)
        self.options: GradientOptions = state.gradient_options
        self.batch = PendingBatch(state.summary_options)
        # (model object, attribute, pending value, unwrap to a number) to set once resolved
        self._fill: list[Deferred] = []  # model fields to fill once the numbers land
        self._handles: list = []
        self._tagged: set[int] = set()
        # gradients that are the same tensor as another summary (an edge's, the previous
        # pass's .grad) and need no second one: filled after `_fill`
        self._copy_later: list[SameAs] = []
        self._only_edge_into_leaf: dict[str, Edge] = {}
        self._had_grad: set[str] = set()  # leaves whose .grad was not None before the pass
        self.index: GraphIndex | None = None
        self.histories: list[LeafHistory] = []  # of index.leaves, in their order
        self.result: Pass | None = None
        self.full = False  # edge gradients recorded on this pass
        self._pending_values: list = []
        self.quiet = False  # the user's modes or profiler watch: hooks run under `unwatched()`
        self._budget = None  # the full-pass budget this pass is charged to (full_passes.py)
        self._structure_key: int | None = None  # (big graphs: see `_due_in_full`)
        self._value_norms: list = []  # the leaves' value norms, on their way (leaf_norms.py)
        self._started = cpu_time()  # (the budget counts CPU time: full_passes.py)
        self._finishing = 0.0

    # -- before the call -------------------------------------------------------------
    def before(self) -> GraphIndex:
        with torch.no_grad():
            index = self.index = walk(self.call.roots, self.state, self.batch, self.state.last_quiet, self.steady)
            self.repeated = index.repeated
            histories = self.state.leaf_histories
            # (a repeated pass's leaves are its template's tensors, in order: so are their histories)
            self.histories = index.histories or [history_of(histories, leaf) for _, leaf in index.leaves]
            self.full = self.options.gradients and self._due_in_full(index)
            self._own_or_share(index)
            self._record_seeds(index)
            for (node, leaf), history in zip(index.leaves, self.histories):
                self._grad_before(node, leaf, history)
            if self.options.gradients and value_norms_due(index.leaves, self.full, self.state.next_pass_index,
                                                          self.options.every):
                self._value_norms = queue_value_norms(index.leaves, self.batch)
        if self.full:
            self._install_hooks(index)
        return index

    def _own_or_share(self, index: GraphIndex) -> None:
        """A pass that records edge gradients writes them on its edges: it gets Edge objects
        of its own. A pass that does not offers its graph to the next one that repeats it."""
        if self.full:
            unshare(index)
        elif not index.shares_nodes:
            self.state.last_quiet = QuietTemplate(index, list(index.node_of.values()), self.histories, self.call.api,
                                                 self._structure_key)

    def _due_in_full(self, index: GraphIndex) -> bool:
        """Record this pass's edge gradients? (See `GradientOptions`.)"""
        if self.decided is not None:  # (asked already: light.py)
            full, self._budget, self._structure_key = self.decided
            return full
        template = self.state.last_quiet if index.repeated else None
        full, self._budget, self._structure_key = due_in_full(self.state, index.graph, template)
        return full

    def _record_seeds(self, index: GraphIndex) -> None:
        """Each root's seed gradient, and its value when small (a loss, per pass)."""
        for root, seed in zip(self.call.roots, self.call.seeds):
            node = index.node_for(root)
            if node is None:
                continue
            if node.kind == "op" and root.numel() <= self.batch.options.max_values:
                self._later(node, "value", self.batch.keep(root))
            if seed is None and root.numel() == 1 and not root.is_complex():
                # the implicit gradient of a scalar's backward(): a one, known without a tensor
                node.seed = ones_summary(root)
            elif isinstance(seed, torch.Tensor):
                self._later(node, "seed", self.batch.summarize(seed))

    def _install_hooks(self, index: GraphIndex) -> None:
        edges_into: dict[str, dict[int, Edge]] = {}
        edges_out: dict[str, list[Edge]] = {}
        for e in index.graph.edges:
            edges_into.setdefault(e.dst, {})[e.index] = e
            edges_out.setdefault(e.src, []).append(e)
        for leaf_id in index.leaf_tensors:
            if len(edges_out.get(leaf_id, ())) == 1:
                self._only_edge_into_leaf[leaf_id] = edges_out[leaf_id][0]
        for node, fn in zip(index.graph.nodes, index.node_of.values()):  # (both in node order)
            node_id = node.id
            if node_id in index.leaf_tensors:
                continue
            out = edges_out.get(node_id, [])
            if len(out) == 1 and not node.is_root and len(input_metadata(fn) or ()) == 1:
                # what arrives is what its one consumer sent: no need to summarise it twice
                self._copy_later.append(SameAs(node, "grad_outputs", out[0], "grad", as_list=True))
            else:
                self._handles.append(fn.register_prehook(self._quiet(self._make_prehook(node))))
            self._handles.append(fn.register_hook(self._quiet(self._make_posthook(fn, node, edges_into.get(node_id, {})))))

    def _quiet(self, hook):
        """The hook, unseen by the user's dispatch modes and profiler when they watch (quiet.py)."""
        return unwatched_hook(hook) if self.quiet else hook

    def _make_prehook(self, node):
        def prehook(grad_outputs):
            try:
                with torch.no_grad():
                    self._later(node, "grad_outputs", [self.batch.summarize(g) for g in grad_outputs])
            except Exception:  # a hook must never break the user's backward
                log.debug("gradscope pre-hook failed", exc_info=True)
            return None

        return prehook

    def _make_posthook(self, fn, node, edges: dict[int, Edge]):
        def posthook(grad_inputs, grad_outputs):
            try:
                with torch.no_grad():
                    for i, edge in edges.items():
                        if i < len(grad_inputs):
                            self._later(edge, "grad", self.batch.summarize(grad_inputs[i]))
                    if self.options.max_jacobian and edges:
                        self._local_derivatives(fn, grad_inputs, edges)
                if self.call.create_graph:
                    mark_made_by_backward(self.state, self.index, self._tagged, self.call, self.source, fn, grad_inputs)
            except Exception:
                log.debug("gradscope post-hook failed", exc_info=True)
            return None

        return posthook

    def _grad_before(self, node, leaf: torch.Tensor, history: LeafHistory) -> None:
        grad = leaf.grad
        if grad is None:
            return
        self._had_grad.add(node.id)
        last = history.grad
        if last is not None and last[0]() is grad and last[1] == version_of(grad):
            # the .grad the previous pass left, untouched since: neither zeroed nor replaced
            node.grad_carried_over = True
            self._copy_later.append(SameAs(node, "grad_before", last[2].nodes[last[3]], "grad_after"))
        else:
            self._leaf_grad(node, "grad_before", leaf, grad, history)

    def _grad_after(self, node, leaf: torch.Tensor, history: LeafHistory) -> None:
        edge = self._only_edge_into_leaf.get(node.id)
        if edge is not None and node.id not in self._had_grad and not _has_grad_hooks(leaf) and leaf.grad is not None:
            # .grad was None and one gradient arrived: AccumulateGrad stored exactly that
            self._copy_later.append(SameAs(node, "grad_after", edge, "grad"))
        else:
            self._leaf_grad(node, "grad_after", leaf, leaf.grad, history)

    def _grads_after_light(self, index: GraphIndex) -> None:
        """`_grad_after` of every leaf of a pass without edge gradients (no hook saw a
        gradient arrive, so each `.grad` is summarised: their norms together)."""
        norms = []
        for (node, leaf), history in zip(index.leaves, self.histories):
            grad = leaf.grad
            if grad is not None and not self.batch.options.stats and leaf.numel() > self.batch.options.max_values:
                self._leaf_grad(node, "grad_after", leaf, grad, history)
            else:
                norms.append((node, grad))
        for (node, _), pending in zip(norms, self.batch.summarize_norms([g for _, g in norms])):
            self._later(node, "grad_after", pending)

    def _leaf_grad(self, node, attr: str, leaf: torch.Tensor, grad: torch.Tensor | None,
                   history: LeafHistory) -> None:
        """node.<attr> = the summary of a leaf's .grad.

        With statistics off, a .grad too big for its values has nothing to read but its shape,
        dtype and device, and those are the leaf's (AccumulateGrad and the .grad setter keep
        them equal): the summary is made from the leaf's node without touching the tensor,
        and is the same object pass after pass while they stay the same.
        """
        if grad is not None and not self.batch.options.stats and leaf.numel() > self.batch.options.max_values:
            described = history.grad_described
            if described is None or described.shape != node.shape or described.dtype != node.dtype \
                    or described.device != node.device:
                described = history.grad_described = TensorSummary(shape=list(node.shape), dtype=node.dtype,
                                                                   device=node.device)
            setattr(node, attr, described)
        else:
            self._later(node, attr, self.batch.summarize(grad, norm_only=not self.full))

    def _remember_grads(self, index: GraphIndex) -> None:
        places = None
        for (node, leaf), history in zip(index.leaves, self.histories):
            grad = leaf.grad
            if grad is not None:
                if places is None:
                    places = {id(n): k for k, n in enumerate(index.graph.nodes)}
                history.grad = (weakref.ref(grad), version_of(grad), index.graph, places[id(node)])

    # -- local derivatives -------------------------------------------------------------
    def _local_derivatives(self, fn, grad_inputs, edges: dict[int, Edge]) -> None:
        """d output / d input for each small edge (jacobians.py)."""
        for i, jac, scalar in local_jacobians(fn, grad_inputs, edges, self.options.max_jacobian, self.state.nodes):
            self._later(edges[i], "local", self.batch.keep(jac), scalar=scalar)

    # -- after the call ------------------------------------------------------------------
    def after(self, result: Any, error: BaseException | None, pass_index: int) -> Pass:
        """Remove the hooks, queue the last summaries and start their copy to the host.

        Returns the `Pass`; its numbers are filled in by `finish()`. Drops every autograd
        node and tensor of the pass.
        """
        for h in self._handles:
            h.remove()
        self._handles.clear()
        index = self.index
        assert index is not None
        results = []
        with torch.no_grad():
            if self.full:
                for (node, leaf), history in zip(index.leaves, self.histories):
                    self._grad_after(node, leaf, history)
            else:
                self._grads_after_light(index)
            if self.call.api == "torch.autograd.grad" and error is None:
                results = [self.batch.summarize(r) for r in result]
        self._remember_grads(index)
        if error is None and not self.call.retain_graph and self.call.api != "torch.autograd.grad" \
                and not self.call.inputs:
            # every node of the graph ran and freed what it saved: its notes can go
            self.state.nodes.retire(index.notes)
        if self.call.create_graph and error is None:
            name_new_gradients(index, self.call, self.source, result)
        self.result = Pass(
            index=pass_index,
            api=self.call.api,
            graph=index.graph,
            source=self.source,
            retain_graph=self.call.retain_graph,
            create_graph=self.call.create_graph,
            step=self.state.optimizer_steps,
            edge_gradients=self.full,
            inputs=[node.id for node in map(index.node_for, self.call.inputs) if node is not None],
            error=None if error is None else f"{type(error).__name__}: {error}",
        )
        self._later(self.result, "results", results)
        self._pending_values = index.pending_values
        self.index = None
        self.batch.start_transfer()
        if self._budget is not None:
            self._budget.ran(self.full, cpu_time() - self._started)
        return self.result

    def ready(self) -> bool:
        """Have the pass's numbers reached the host? (Never waits.)"""
        return self.batch.done()

    def finish(self) -> Pass:
        """Fill the pass's numbers in (waiting for their copy only if it has not landed)."""
        self._finishing = cpu_time()
        self.batch.resolve()
        finish_leaf_values(self._pending_values)
        fill_value_norms(self._value_norms)
        for deferred in self._fill:
            deferred.fill()
        for same in self._copy_later:
            same.fill()
        self._fill.clear()
        self._copy_later.clear()
        assert self.result is not None
        if self.options.gradients and any(
            n.grad_after is not None and not n.grad_after.finite for n in self.result.graph.leaves
        ):
            self.state.nonfinite_seen = True  # record the next pass in full, to find where
        return self.result

    def finished(self, seconds: float) -> None:
        """The pass's finishing (`finish` and the trace's listeners) took `seconds`: part of
        what a full pass costs (full_passes.py). Counted here in CPU time since `finish()`
        began, as the budget counts."""
        if self._budget is not None:
            self._budget.finished(self.full, cpu_time() - self._finishing)

    def _later(self, obj: object, attr: str, pending: Any, scalar: bool = False) -> None:
        self._fill.append(Deferred(obj, attr, pending, scalar))


# (full?, the budget it is charged to, a big graph's structure key)
FullDecision = tuple[bool, "FullPasses | None", "int | None"]


def due_in_full(state: TraceState, graph: Graph, template: QuietTemplate | None,
                elements: int | None = None) -> FullDecision:
    """Record the pass that starts now, over `graph`, in full (edge gradients)? `template`:
    the quiet pass it repeats, if it does; `elements`: `graph_elements(graph)`, if known.
    (Counts the pass in the budget: ask once.)"""
    every = state.gradient_options.every
    if every <= 1 or state.nonfinite_seen:
        state.nonfinite_seen = False
        return True, None, None
    if (graph_elements(graph) if elements is None else elements) <= SMALL_GRAPH:
        budget = state.full_passes
        return budget.due(every), budget, None
    if template is not None and template.structure_key is not None:
        key = template.structure_key  # (a repeat of its template: the same structure)
    else:
        key = _structure_key(graph)
    seen = state.graphs_seen.get(key, 0)
    state.graphs_seen[key] = seen + 1
    # a big graph's full pass may cost several steps: past its first passes, the sampled
    # ones are budgeted (full_passes.py)
    big = state.full_passes.for_big()
    return big.sampled_due(seen < FIRST_FULL, sampled(seen, every)), big, key


def ones_summary(root: torch.Tensor) -> TensorSummary:
    """The summary of `torch.ones_like(root)` for a one-element root, made without a tensor
    (one object for every pass alike: model records are never edited)."""
    key = (root.shape, root.dtype, root.device)
    found = _ONES.get(key)
    if found is None:
        shape = list(root.shape)
        found = _ONES[key] = TensorSummary(shape=shape, dtype=_dtype_name(root.dtype),
                                           device=_device_name(root.device), norm=1.0, max_abs=1.0, mean=1.0,
                                           value=_nest([1.0], shape))
    return found


_ONES: dict[tuple, TensorSummary] = {}  # (a loss's seed: a handful of shapes and dtypes in a process)


def _has_grad_hooks(leaf: torch.Tensor) -> bool:
    """Hooks that may change what lands in .grad (gradient clipping hooks, optimizers in
    backward; DDP and FSDP average .grad across processes from hooks gradscope cannot list)."""
    return (
        has_grad_hooks(leaf)
        or (torch.distributed.is_available() and torch.distributed.is_initialized())
    )


def _structure_key(graph) -> int:
    """A hash of the graph's structure (C-level loops: a big graph's pass computes it)."""
    nodes = graph.nodes
    return hash((
        tuple(map(_GRAD_FN, nodes)),
        tuple(map(id, map(_SOURCE, nodes))),
        tuple(map(_NAME, nodes)),
        tuple(map(_EDGE, graph.edges)),
    ))


def graph_elements(graph: Graph) -> int:
    """How many elements the graph's nodes output: what a full pass summarises."""
    return sum(map(math.prod, filter(None, map(_SHAPE, graph.nodes))))


_GRAD_FN, _SOURCE, _NAME, _SHAPE = (operator.attrgetter(a) for a in ("grad_fn", "source", "name", "shape"))
_EDGE = operator.attrgetter("src", "dst", "index")
