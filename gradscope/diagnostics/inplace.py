"""In-place edits autograd cannot allow: of a leaf that requires grad, and of a saved tensor."""

from __future__ import annotations

from ..events import BackwardError, LeafInplaceError, SavedTensorModified
from ..model import Diagnostic, Trace
from ..torch_errors import saved_tensor_modified as modified_inplace_error
from ..torch_errors import without_hint
from ._common import (
    ERROR,
    Found,
    consumers,
    event_time,
    events,
    failed_pass,
    node_or_none,
    op_label,
    source_of,
    unique_sources,
    where,
)


def leaf_inplace(trace: Trace) -> list[Found]:
    """`leaf-inplace` (error): `w.add_(1)`, `w += 1`, `w[0] = 5` on a leaf that requires grad.

    PyTorch raises; the diagnostic says which leaf, which line, which ops had read it, and
    what to write instead. `nodes` are the leaf's id in the event's graph (`Event.graph`,
    the graph as it stood), not in a pass: `pass_index` is None.
    """
    found: list[Found] = []
    for event_index, e, data in events(trace, LeafInplaceError):
        leaf = data.leaf
        op = op_label(data.op or "an in-place op")
        shown = f"`{leaf}`" if leaf else "the leaf"
        node = node_or_none(e.graph, data.node)
        readers = consumers(e.graph, node.id) if (e.graph is not None and node is not None) else []
        reader_sources = unique_sources(r.source for r in readers)
        via_view = data.view
        what = (
            f"{where(e.source)} writes into a view of {shown}, which changes {shown} itself"
            if via_view else f"{where(e.source)} changes {shown} in place ({op})"
        )
        used = ""
        if reader_sources:
            used = (
                " The graph built so far already read its old value: "
                + ", ".join(where(s) for s in reader_sources[:3])
                + "."
            )
        message = (
            f"{what}. {shown} is a leaf that requires grad: backward will compute gradients with "
            f"respect to it, from the values the forward pass used.{used} Ops such as mul and pow keep "
            f"the tensors they read for backward; changing {shown} under them would give gradients "
            f"that belong to neither the old nor the new value, so PyTorch refuses the edit with a "
            f"RuntimeError."
        )
        name = leaf or "w"
        hint = (
            f"To change {shown} on purpose (an update, as an optimizer does), do it outside autograd: "
            f"`with torch.no_grad(): {name}.add_(1)`. To compute with a changed value, make a new tensor "
            f"instead: `{name}2 = {name} + 1` (or edit a copy: `{name}.clone().add_(1)`)."
        )
        found.append((event_time(e), Diagnostic(
            code="leaf-inplace",
            severity=ERROR,
            title=(f"In-place {op} on `{leaf}`, a leaf that requires grad" if leaf
                   else f"In-place {op} on a leaf that requires grad"),
            message=message,
            hint=hint,
            sources=unique_sources([e.source, *reader_sources, node.source if node else None]),
            nodes=[node.id] if node is not None else [],
            pass_index=None,
            event_index=event_index if e.graph is not None else None,
        )))
    return found


def saved_tensor_modified(trace: Trace) -> list[Found]:
    """`saved-tensor-modified` (error): a tensor saved for backward was changed in place before
    backward ran. Names the op that saved it and the line that changed it. Edits through
    `.data` are invisible to PyTorch and give wrong gradients without any error."""
    found: list[Found] = []
    seen: set[tuple] = set()
    explained_passes: set[int | None] = set()
    for _, e, data in events(trace, SavedTensorModified):
        edits = [m for m in data.modified_by if isinstance(m, dict)]  # (a hand-built event may hold anything)
        saved_by = source_of(data.saved_by)
        modified = [s for s in map(source_of, edits) if s is not None]
        by_data = data.detected_by == "data"
        key = (by_data, saved_by and (saved_by.file, saved_by.line), tuple((m.file, m.line) for m in modified))
        explained_passes.add(e.pass_index)
        if key in seen:
            continue
        seen.add(key)
        op = data.op or "an op"
        saved = data.saved or "input"
        what_saved = _what_saved(saved, [m.get("tensor") for m in edits])
        edit_ops = [str(m.get("op")) for m in edits if m.get("op")]
        saver = op + (f" (module `{data.module}`)" if data.module else "")
        if modified:
            editor = edits[0].get("op") or "an in-place op"
            editor += f" (module `{edits[0]['module']}`)" if edits[0].get("module") else ""
            same_line = saved_by is not None and (modified[0].file, modified[0].line) == (saved_by.file, saved_by.line)
            at = "on the same line" if same_line else f"at {where(modified[0])}"
            edit = f"then {editor} {at} changed that tensor in place"
        else:
            edit = "then an in-place edit changed that tensor"
        if by_data:
            title = f"Saved tensor changed through .data after {op} saved it: wrong gradients, no error"
            message = (
                f"{saver} at {where(saved_by)} saved {what_saved} for backward; {edit}, through `.data`. "
                f"`.data` gives a tensor with the same memory but its own version counter, so autograd "
                f"cannot see the edit: PyTorch raises no error, and backward computes with the new values. "
                f"The gradients of this pass are silently wrong."
            )
            hint = (
                "Do not edit tensors through `.data` while a graph that uses them is alive. Make the change "
                "after backward, under `with torch.no_grad():` on the tensor itself (PyTorch then checks it), "
                "or compute with a copy (`x.clone()`)."
            )
        else:
            title = f"Tensor saved by {op} for backward was modified in place"
            message = (
                f"{saver} at {where(saved_by)} saved {what_saved} for backward; {edit}. "
                f"Backward needs the value {op} saw, which is gone, so PyTorch raises "
                f"\"one of the variables needed for gradient computation has been modified by an "
                f"inplace operation\" when backward reaches {op}."
            )
            relu = any("relu" in o for o in edit_ops)
            hint = (
                "Write the edit out of place (`y = y + 1` instead of `y += 1` or `y.add_(1)`), "
                "edit a copy (`y = y.clone()` first), or make the edit after backward."
                + (" For `nn.ReLU(inplace=True)` right after an op that saves its output "
                   "(sigmoid, tanh, exp, ...), use `inplace=False`." if relu else "")
            )
        found.append((float(e.pass_index or 0), Diagnostic(
            code="saved-tensor-modified",
            severity=ERROR,
            title=title,
            message=message,
            hint=hint,
            sources=unique_sources([saved_by, *modified]),
            # the saving node, then the in-place op when it is in this graph: both drawn red
            nodes=[n for n in [data.node, *(m.get("node") for m in edits)] if isinstance(n, str) and n],
            pass_index=e.pass_index,
        )))
    # the error without an early event (a node gradscope could not read before backward)
    for _, e, error in events(trace, BackwardError):
        message = error.message
        p = failed_pass(trace, e)
        if not modified_inplace_error(message) or (p is not None and p.index in explained_passes):
            continue
        found.append((float(p.index) if p else event_time(e), Diagnostic(
            code="saved-tensor-modified",
            severity=ERROR,
            title="A tensor saved for backward was modified in place",
            message=(
                f"The backward at {where(e.source)} failed: {without_hint(message)}. An op saved one of "
                f"its tensors for backward, and an in-place edit changed it before backward ran."
            ),
            hint=(
                "Find the edit with `torch.autograd.set_detect_anomaly(True)` (it names the forward op), then "
                "write it out of place (`y = y + 1`), or edit a copy (`y.clone()`)."
            ),
            sources=unique_sources([e.source]),
            nodes=[],
            pass_index=p.index if p else None,
        )))
    return found


def _what_saved(attr: str, names: list) -> str:
    """`self` -> "its first input", `result` -> "its own output" (with the tensor's name when known)."""
    name = next((n for n in names if n), None)
    if attr.startswith("result"):
        return "its own output"
    label = {"self": "its first input", "other": "its second input"}.get(attr, f"its input `{attr}`")
    return f"{label} `{name}`" if name else label
