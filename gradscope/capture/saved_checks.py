"""Live checks of saved tensors (part of `LiveChecks`, checks.py): which line's in-place
edit broke a tensor a node saved for backward, which pass freed a graph that a later
backward runs into, and edits through `.data` that PyTorch cannot see at all.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

import torch

from ..events import Edit, FreedGraphReused, SavedTensorModified, SourceDict
from ..torch_errors import graph_freed, saved_tensor_modified, without_hint
from ._torch import saved_label, saved_tensor_attributes, version_of
from .recorder import OpInfo

if TYPE_CHECKING:
    from .graph_index import GraphIndex
    from .state import TraceState

log = logging.getLogger("gradscope")

_DATA_MUTATIONS_KEPT = 256  # edits through `.data` aliases


class SavedTensorChecks:
    """The saved-tensor half of `LiveChecks` (its state: `state`, `mutations`,
    `data_mutations`, `_unread`, `_unpackers`, `_snapshots`)."""

    state: TraceState
    mutations: Any
    data_mutations: Any
    _unread: Any
    _unpackers: dict
    _snapshots: Any

    # saved tensors: what an in-place edit broke, and `.data` edits PyTorch cannot see
    def _check_saved(self, recorder, index: "GraphIndex", p: int) -> None:
        """Mark each node with this pass; read saved tensors only when `.data` edits may hit them.

        Reading every saved tensor before each pass would cost a tensor object per saved
        value per node. PyTorch's own version check raises during backward when an in-place
        edit broke one: `after_failed_pass` then reads them to say which line did it.
        """
        mark = (p, recorder.call.retain_graph)
        for note in index.notes:
            if type(note) is OpInfo:
                note.prev_mark, note.mark = note.mark, mark
        self._unread = index
        if self.data_mutations:
            todo = self._with_saved_tensors(index)
            if not todo:
                return
            min_seq = min(info.seq for _, _, info, _ in todo)
            data_muts = [m for m in self.data_mutations if m.seq >= min_seq and m.ptr is not None]
            if len(data_muts) != len(self.data_mutations):  # older edits cannot touch newer graphs
                self.data_mutations = deque(data_muts, maxlen=_DATA_MUTATIONS_KEPT)
            if data_muts:
                self._read_saved(index, todo, data_muts, looking_for="freed")
                self._unread = None  # read already: a failing backward has nothing more to show

    def _with_saved_tensors(self, index: "GraphIndex") -> list:
        """(node id, autograd node, its OpInfo, saved attributes) of the nodes whose saved
        tensors may be read."""
        todo = []
        saved_names = self._unpackers
        for node, fn, info in zip(index.graph.nodes, index.node_of.values(), index.notes):
            if type(info) is not OpInfo or info.saved_hooks:  # never unpack what a hook would recompute
                continue
            names = saved_names.get(type(fn))
            if names is None:
                names = saved_names[type(fn)] = _saved_attributes(fn)
            if names:
                todo.append((node.id, fn, info, names))
        return todo

    def after_failed_pass(self, index: "GraphIndex", error: BaseException) -> None:
        """Backward raised: find the saved tensor an in-place edit modified, or the pass that
        freed the graph. (Nodes that ran before the failure have freed their own saved
        tensors: those are not the cause, and are not reported as a freed graph.)"""
        unread, self._unread = self._unread, None
        text = str(error)
        looking_for = "modified" if saved_tensor_modified(text) else "freed" if graph_freed(text) else None
        if unread is index and looking_for:
            try:
                self._read_saved(index, self._with_saved_tensors(index), [], looking_for)
            except Exception:
                log.debug("gradscope: checking saved tensors failed", exc_info=True)

    def _read_saved(self, index: "GraphIndex", todo: list, data_muts: list, looking_for: str = "") -> None:
        freed: list[tuple[str, Any]] = []
        for node_id, fn, info, names in todo:
            for name in names:
                try:
                    value = getattr(fn, name)
                except RuntimeError as exc:
                    text = str(exc)
                    if saved_tensor_modified(text):
                        self._on_saved_modified(index, node_id, fn, info, name, text)
                    elif looking_for == "freed" and graph_freed(text):
                        freed.append((node_id, info.prev_mark))
                    break
                if data_muts:
                    self._check_data_edit(node_id, info, name, value, data_muts)
        if freed:
            by = [m[0] for _, m in freed if m is not None]
            self.state.emit(
                FreedGraphReused(nodes=[n for n, _ in freed], freed_by=max(by) if by else None),
            )

    def _on_saved_modified(self, index, node_id, fn, info: OpInfo, name: str, text: str) -> None:
        modified_by = self._modifiers(index, fn, info)
        self._emit_saved_modified("version", node_id, info, name, modified_by, without_hint(text),
                                  _source_of(modified_by[0]) if modified_by else info.source)

    def _emit_saved_modified(self, detected_by: str, node_id, info: OpInfo, name: str,
                             modified_by: list[dict], message: str, source) -> None:
        self.state.emit(
            SavedTensorModified(
                detected_by=detected_by,
                node=node_id,
                op=info.op,
                saved=saved_label(name),
                saved_by=cast(SourceDict, _plain(info.source)),
                module=info.module,
                modified_by=cast("list[Edit]", modified_by),
                message=message,
            ),
            source=source,
        )

    def _modifiers(self, index, fn, info: OpInfo) -> list[dict]:
        """The edits, after `info`'s op ran, of the tensors it read or of its output."""
        found: list[dict] = []
        for ref, version in info.inputs:
            t = ref()
            if t is None or version_of(t) == version:
                continue
            ptr = _storage_ptr(t)
            for m in self.mutations:
                if m.ptr == ptr and ptr is not None and m.seq >= info.seq:
                    found.append({"op": m.op, "module": m.module, **_plain(m.source)})
                    break
        if found:
            return found
        # its output (still alive) was edited, in the graph or not (`s.mul_(2)` after backward's
        # path went elsewhere, a view's edit, an edit under no_grad): the first edit of its storage
        out = info.tensor() if info.tensor is not None else None
        ptr = _storage_ptr(out) if isinstance(out, torch.Tensor) else None
        if ptr is not None:
            for m in self.mutations:
                if m.ptr == ptr and m.seq > info.seq:
                    return [{"op": m.op, "module": m.module, **_plain(m.source), **self._edit_node(index, m)}]
        # its output was edited: an in-place op (in this graph) whose first input is this node
        # (`nn.ReLU(inplace=True)` records as "relu": in place is known from the edit log)
        edits = {(m.seq, m.op) for m in self.mutations}
        notes = self.state.nodes
        for other_id, other in index.node_of.items():
            other_info = notes.get(other)
            if type(other_info) is not OpInfo:
                continue
            if not (_is_inplace(other_info.op) or (other_info.seq - 1, other_info.op) in edits):
                continue
            nexts = other.next_functions
            if nexts and nexts[0][0] is fn:
                found.append({"op": other_info.op, "module": other_info.module, **_plain(other_info.source),
                              "node": other_id})
        found.sort(key=lambda d: d.get("line") or 0)
        return found[:1]

    def _edit_node(self, index, m: Any) -> dict:
        """{"node": id} of the edit `m` in this graph (its op is recorded right after the edit), or {}."""
        notes = self.state.nodes
        for node_id, fn in index.node_of.items():
            info = notes.get(fn)
            if type(info) is OpInfo and info.seq == m.seq + 1 and info.op == m.op:
                return {"node": node_id}
        return {}

    def _check_data_edit(self, node_id, info: OpInfo, name, value, data_muts) -> None:
        tensors = value if isinstance(value, (list, tuple)) else (value,)
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                continue
            ptr = _storage_ptr(t)
            if ptr is None:
                continue
            for m in data_muts:
                if m.ptr == ptr and m.seq >= info.seq:
                    if self._snapshots.undone(t, ptr):
                        break
                    modified_by = [{"op": m.op, "module": m.module, "tensor": m.name, **_plain(m.source)}]
                    self._emit_saved_modified("data", node_id, info, name, modified_by, "", m.source)
                    return


def _storage_ptr(t: torch.Tensor) -> int | None:
    try:
        if t.numel() == 0:
            return None
        return t.untyped_storage().data_ptr() or None
    except Exception:
        return None


def _saved_attributes(fn) -> tuple[str, ...]:
    """The attributes that unpack a node's saved tensors (`_saved_self`, `saved_tensors`)."""
    cls = type(fn).__name__
    if cls == "AccumulateGrad" or "CompiledFunction" in cls:
        return ()
    return saved_tensor_attributes(fn)


def _is_inplace(op: str) -> bool:
    return (op.endswith("_") and not op.endswith("__")) or op == "setitem"


def _plain(source) -> dict:
    return asdict(source) if source is not None else {}


def _source_of(d: dict):
    from ..model import Source

    if not d or "file" not in d:
        return None
    return Source(file=d["file"], line=d.get("line", 0), code=d.get("code", ""), function=d.get("function", ""),
                  cell=d.get("cell"))
