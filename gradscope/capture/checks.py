"""Live checks: the parts of diagnostics that must look at tensors while they exist.

The recorder reports in-place edits, `.data` aliases and ops whose output left the graph
here, and each backward pass is shown here before it runs. What is found becomes `Event`s
on the trace; the rules in `gradscope.diagnostics` turn events and the model into
explained `Diagnostic`s, so a saved trace diagnoses the same as a live one.

Events emitted here (typed records of `gradscope.events`, written as plain JSON):

- `SavedTensorModified`: a tensor a node saved for backward was changed in place after
  the node's op ran. `detected_by` "version": PyTorch will refuse the backward (found early
  by reading the node's saved tensors); "data": the edit went through a `.data` alias,
  which PyTorch cannot see, so backward would silently use the new values.
- `FreedGraphReused`: nodes of this pass lost their saved tensors to an earlier backward.
- `GradCarried`: leaves whose `.grad` was already set when the pass started, each linked to
  the previous pass the same tensor took part in (node ids are per pass).
- `LeafUpdate`: leaves changed in place (an optimizer step, `w -= lr * w.grad` under
  no_grad, `w.data.add_`) between two passes, named by their last pass and node id.
- `NoGradient`: parameters and leaves that will get no gradient from this pass although
  their siblings do, with the line that cut them off when it was seen.

Nothing here returns a value to autograd or touches a gradient; every hook swallows its
own errors. Per op the recorder calls in only for in-place edits and for ops whose output
does not require grad although an input does.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING

import torch

from ..events import GradCarried, LeafUpdate, NoGradient
from ._torch import DisableTorchFunction, base_of, version_of
from .data_snapshots import DataSnapshots
from .idtable import IdTable
from .recorder import op_name
from .saved_checks import _DATA_MUTATIONS_KEPT, SavedTensorChecks, _plain, _storage_ptr
from .source import _is_internal, user_source

if TYPE_CHECKING:
    from .backward import PassRecorder
    from .graph_index import GraphIndex
    from .state import TraceState

log = logging.getLogger("gradscope")

_MUTATIONS_KEPT = 4096  # in-place edits remembered (all tensors): enough to name recent lines
_CUT_WALK_BUDGET = 256  # autograd nodes walked to find the leaves behind a detach

_OPTIM_DIR = "/torch/optim/".replace("/", __import__("os").sep)
_DETACHING = frozenset({"detach", "detach_", "data"})


class _Mutation:
    """One in-place edit: which storage, when (the recorder's op counter), by which line."""

    __slots__ = ("ptr", "seq", "op", "source", "via_data", "module", "name")

    def __init__(self, ptr, seq, op, source, via_data, module):
        self.ptr: int | None = ptr
        self.seq: int = seq
        self.op: str = op
        self.source = source
        self.via_data: bool = via_data
        self.module: str | None = module
        self.name: str = ""  # for edits through `.data`: the name of the tensor it aliases


class LiveChecks(SavedTensorChecks):
    def __init__(self, state: TraceState) -> None:
        self.state = state
        # every in-place edit, most recent last (storage, op counter, op, line)
        self.mutations: deque[_Mutation] = deque(maxlen=_MUTATIONS_KEPT)
        self.data_mutations: deque[_Mutation] = deque(maxlen=_DATA_MUTATIONS_KEPT)
        # `.data` alias -> weakref to the tensor it aliases (its own version counter!)
        self.data_aliases = IdTable()
        self._update_event = None
        self._updated: set[tuple[int, str]] = set()
        # since the last pass: leaf -> (op, Source) of the first op that used it outside autograd
        self._cuts = IdTable()
        self._walked: set[int] = set()
        self._unpackers: dict[type, tuple[str, ...]] = {}
        # per thread (two threads may run backward at once): see `_missing` and `_unread`
        self._passes = threading.local()
        # small tensors' values when a `.data` alias of them was taken (gradcheck's edits undone)
        self._snapshots = DataSnapshots()

    @property
    def _missing(self) -> tuple | None:
        """(pass index, candidates) of the calling thread's pass, until it ends."""
        return getattr(self._passes, "missing", None)

    @_missing.setter
    def _missing(self, value: tuple | None) -> None:
        self._passes.missing = value

    @property
    def _unread(self):
        """The graph of the calling thread's pass, if its saved tensors were not read yet."""
        return getattr(self._passes, "unread", None)

    @_unread.setter
    def _unread(self, value) -> None:
        self._passes.unread = value

    # -- calls the recorder hands over instead of running them as ops ----------------------
    def intercepted(self) -> dict:
        """{torch function: handler(func, args, kwargs)} for the recorder's interception table."""
        return {torch.Tensor.data.__get__: self._on_data}

    def _on_data(self, func, args, kwargs):
        alias = func(*args, **kwargs)
        try:
            t = args[0] if args else None
            if isinstance(t, torch.Tensor) and isinstance(alias, torch.Tensor):
                self.data_aliases.set(alias, weakref.ref(t))
                self._snapshots.take(t, _storage_ptr(t), self._seq(), self.data_mutations)
                if t.requires_grad and t.grad_fn is not None and torch.is_grad_enabled():
                    self._cut_behind(t, "data")
        except Exception:
            log.debug("gradscope: recording a .data alias failed", exc_info=True)
        return alias

    # -- in-place edits ---------------------------------------------------------------------
    def on_inplace(self, op: str, tensor: torch.Tensor, old_version: int) -> None:
        try:
            source = user_source()
            origin = self._alias_origin(tensor) if self.data_aliases else None
            m = _Mutation(_storage_ptr(tensor), self._seq(), op, source, origin is not None,
                          self.state.modules.current)
            self.mutations.append(m)
            if origin is not None:
                m.name = self.state.leaf_label(origin) or ""
                self.data_mutations.append(m)
            target = origin if origin is not None else tensor
            base = base_of(target)
            if base is not None:
                target = base
            if target.requires_grad and target.is_leaf:
                self._leaf_updated(target, source)
        except Exception:  # never let a check break the user's op
            log.debug("gradscope: recording an in-place edit failed", exc_info=True)

    def _alias_origin(self, tensor: torch.Tensor):
        ref = self.data_aliases.get(tensor)
        base = base_of(tensor)
        if ref is None and base is not None:
            ref = self.data_aliases.get(base)
        return ref() if ref is not None else None

    def on_optimizer_step(self, optimizer) -> None:
        """An optimizer stepped: the parameters it holds that have a .grad were updated."""
        try:
            source = self.state.trace.events[-1].source if self.state.trace.events else user_source()
            with DisableTorchFunction():  # plain attribute reads, not ops to record
                for group in optimizer.param_groups:
                    for t in group.get("params", ()):
                        if isinstance(t, torch.Tensor) and t.grad is not None:
                            self._leaf_updated(t, source)
        except Exception:
            log.debug("gradscope: recording an optimizer step failed", exc_info=True)

    def _leaf_updated(self, leaf: torch.Tensor, source) -> None:
        history = self.state.leaf_histories.get(leaf)
        last = history.last_pass if history is not None else None
        if last is None or last in self._updated:
            return
        self._updated.add(last)
        if self._update_event is None:
            self._update_event = self.state.emit(LeafUpdate(leaves=[]), source=source)
        self._update_event.data["leaves"].append(list(last))

    # -- ops whose output is outside autograd although an input is inside ------------------
    def on_no_grad_output(self, func, tensors: list[torch.Tensor]) -> None:
        """An op's output does not require grad: a detach, an op under no_grad, an argmax.

        Remembers, until the next pass, the first such op on each leaf (and, for a detach,
        on the leaves behind a non-leaf), so that a parameter that gets no gradient can be
        traced to the line that cut it off. (An op under no_grad on a non-leaf, such as an
        accuracy computed from the logits each step, is not followed back: too common to
        pay a walk for.)
        """
        for t in tensors:
            if t.requires_grad:
                break
        else:
            return
        try:
            op = op_name(func)
            explicit = op in _DETACHING
            for t in tensors:
                if not t.requires_grad:
                    continue
                if t.grad_fn is None:
                    if t not in self._cuts:
                        source = _cut_source()
                        if source is not None:
                            self._cuts.set(t, (op, source))
                elif explicit:
                    self._cut_behind(t, op)
        except Exception:
            log.debug("gradscope: recording a cut failed", exc_info=True)

    def _cut_behind(self, t: torch.Tensor, op: str) -> None:
        """Remember a detach of non-leaf `t` for the leaves its graph reaches (bounded walk)."""
        fn = t.grad_fn
        if fn is None or id(fn) in self._walked:
            return
        self._walked.add(id(fn))
        source = _cut_source()
        if source is None:
            return
        stack, seen, budget = [fn], {id(fn)}, _CUT_WALK_BUDGET
        while stack and budget:
            n = stack.pop()
            budget -= 1
            leaf = getattr(n, "variable", None)
            if isinstance(leaf, torch.Tensor):
                if leaf not in self._cuts:
                    self._cuts.set(leaf, (op, source))
                continue
            for nxt, _ in n.next_functions:
                if nxt is not None and id(nxt) not in seen:
                    seen.add(id(nxt))
                    stack.append(nxt)

    # -- before each backward ----------------------------------------------------------------
    def before_pass(self, recorder: "PassRecorder", index: "GraphIndex") -> None:
        """Look at the graph before backward runs (saved tensors still intact or not)."""
        p = self.state.next_pass_index
        self._start_pass()
        for name, check in (("grad links", self._link_leaves), ("saved tensors", self._check_saved),
                            ("missing gradients", self._check_missing)):
            try:
                check(recorder, index, p)
            except Exception:
                log.debug("gradscope: checking %s failed", name, exc_info=True)
        if len(self._cuts):
            self._cuts = IdTable()
        self._walked = set()

    def _start_pass(self) -> None:
        """Forget what the last pass's checks and optimizer steps left (a new pass starts)."""
        self._missing = None
        self._update_event = None
        self._updated = set()

    def before_repeat(self, p: int, leaves: frozenset[int], histories: list, node_ids: list[str]) -> bool:
        """`before_pass` for a light pass (light.py) over the leaves `leaves` (their id()s, in
        `histories` and `node_ids` their histories and node ids), none of which holds a
        `.grad`: nothing to look at but parameters cut off, which none of its graph's
        nodes saved for. False, having touched nothing, when this pass is no such pass
        (a module that ran since the last pass holds a parameter outside the graph, an op
        cut a leaf off): the general way then looks at it."""
        ran = self.state.modules.ran
        if len(self._cuts) or ran and not _all_in_graph(ran.values(), leaves):
            return False
        ran.clear()
        self._start_pass()
        self._walked = set()
        for history, node_id in zip(histories, node_ids):
            history.last_pass = (p, node_id)
        return True

    def _link_leaves(self, recorder, index: "GraphIndex", p: int) -> None:
        call = recorder.call
        if call.api == "torch.autograd.grad":  # returns gradients, leaves .grad alone
            return
        only = {id(t) for t in call.inputs} if call.inputs else None  # backward(inputs=...)
        links = []
        for (node, leaf), history in zip(index.leaves, recorder.histories):
            if only is not None and id(leaf) not in only:
                continue
            prev = history.last_pass
            history.last_pass = (p, node.id)
            if prev is not None and leaf.grad is not None:
                links.append([node.id, prev[0], prev[1]])
        if links:
            self.state.emit(GradCarried(leaves=links))

    # parameters that will get no gradient though their siblings do
    def _check_missing(self, recorder, index: "GraphIndex", p: int) -> None:
        modules = self.state.modules
        ran = getattr(modules, "ran", None)
        ran_modules = list(ran.values()) if ran else []
        if ran:
            ran.clear()
        call = recorder.call
        if call.api == "torch.autograd.grad" or call.inputs or not index.leaf_tensors:
            return
        in_graph = {id(t) for t in index.leaf_tensors.values()}
        missing: dict[int, torch.Tensor] = {}
        # the parameters of the modules that ran since the last pass: siblings when one of
        # them is in this graph (the rules drop those that get a gradient in another pass:
        # a GAN's generator, detached in the discriminator's step)
        group = [
            t for m in ran_modules for t in m._parameters.values()
            if t is not None and t.requires_grad
        ]
        if any(id(t) in in_graph for t in group):
            for t in group:
                if id(t) not in in_graph:
                    missing[id(t)] = t
        # plain leaves (not parameters: those go by their module) an op used outside autograd
        if len(self._cuts):
            names = modules.parameter_names
            for t, _ in list(self._cuts.items()):
                if (id(t) not in in_graph and t.requires_grad and t.grad_fn is None
                        and not isinstance(t, torch.nn.Parameter) and t not in names):
                    missing.setdefault(id(t), t)
        if not missing:
            return
        names = self.state.modules.parameter_names
        pending = []
        for t in missing.values():
            cut = self._cuts.get(t)
            pending.append((t, t.grad, None if t.grad is None else version_of(t.grad), {
                "name": names.get(t) or self.state.leaf_names.get(t) or "",
                "shape": list(t.shape),
                "parameter": isinstance(t, torch.nn.Parameter) or t in names,
                "cut": None if cut is None else {"op": cut[0], **_plain(cut[1])},
            }))
        self._missing = (p, pending)

    def after_pass(self, pass_index: int, error: BaseException | None) -> None:
        """Backward is done: emit "no-gradient" for the candidates whose .grad did not change.

        (A checkpoint with use_reentrant=True fills .grad of parameters its graph hides.)
        """
        self._unread = None  # hold no autograd node past its pass
        missing, self._missing = self._missing, None
        if missing is None or error is not None:
            return
        try:
            p, pending = missing
            leaves = [
                data for t, grad, version, data in pending
                if t.grad is None or (t.grad is grad and version_of(t.grad) == version)
            ]
            if leaves:
                self.state.emit(NoGradient(pass_index=p, leaves=leaves))
        except Exception:
            log.debug("gradscope: checking missing gradients failed", exc_info=True)

    def _seq(self) -> int:
        mode = self.state.mode
        return mode.op_count if mode is not None else 0


# -- helpers ---------------------------------------------------------------------------------
def _all_in_graph(modules, in_graph: frozenset[int]) -> bool:
    """Is every parameter (that requires grad) of these modules one of the graph's leaves
    (their id()s: `in_graph`), or none is? (`_check_missing` finds nothing then.)"""
    found = [id(t) in in_graph for m in modules for t in m._parameters.values() if t is not None and t.requires_grad]
    return all(found) or not any(found)




def _cut_source():
    """The user's line running now, or None inside an optimizer step (its own no_grad ops)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            break
        if _OPTIM_DIR in filename:
            return None
        frame = frame.f_back
    if frame is None:
        return None
    from .source import source_of

    return source_of(frame)
