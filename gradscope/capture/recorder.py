"""The forward recorder: a TorchFunctionMode that tags every grad_fn with where it came from.

For each torch function the user's code calls, the mode runs it unchanged and then writes an
`OpInfo` (op name, the user's line, module path, statement id) for the output's grad_fn
into the thread's `NodeTable`. It also notices in-place edits (an argument's `_version`
moved) and leaves that start requiring grad, reported to its `OpListeners`, and hands
calls of `backward`/`autograd.grad` to its interception table. Per op it does as little
Python as it can: the training loop of a small-op model pays for every microsecond here.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch
from torch.overrides import TorchFunctionMode

from ..model import Source
from ._torch import compiling, dynamo_imported, saved_tensor_hooks_active, version_of
from .guard import internal_error
from .opcalls import next_sequence_nr
from .source import assignment_target, source_at, user_frame

if TYPE_CHECKING:
    from .modules import ModuleStack
    from .nodetable import NodeTable

_Tensor = torch.Tensor
_grad_enabled = torch.is_grad_enabled
_weakref = weakref.ref
# (compared by identity on the compiling path: Dynamo folds `is` on constants)
_BACKWARD, _AUTOGRAD_BACKWARD, _GRAD = torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad
_version_of = version_of

BACKWARD_APIS: dict[Callable, str] = {  # the calls that run a backward pass, and their names
    _BACKWARD: "Tensor.backward",
    _AUTOGRAD_BACKWARD: "torch.autograd.backward",
    _GRAD: "torch.autograd.grad",
}


class OpInfo:
    """What gradscope knows of the forward op behind one grad_fn (kept in the thread's
    `NodeTable`)."""

    __slots__ = ("cls", "tensor", "op", "source", "module", "stmt", "seq", "inputs", "saved_hooks", "output",
                 "mark", "prev_mark", "key", "first", "call")

    def __init__(self, cls, tensor, op, source, module, stmt, seq, inputs, saved_hooks, output,
                 first=None, call=0):
        self.cls: type = cls  # the grad_fn's class: a check on the table's key
        self.tensor = tensor  # weak reference to the op's output
        self.op: str = op
        self.source = source
        self.module: str | None = module
        self.stmt: int = stmt  # ops of one execution of one statement share this
        self.seq: int = seq  # order of creation within the trace
        # (weakref to argument tensor, its _version when the op ran) for tensor arguments
        self.inputs: tuple = inputs
        # saved-tensor hooks were active (checkpoint, save_on_cpu): never call or unpack this node
        self.saved_hooks: bool = saved_hooks
        # (shape, dtype, device) of the node's first output, read from the tensor as it is made
        # (cheaper than the node's `_input_metadata` in every pass); None when not known
        self.output: tuple | None = output
        self.mark: tuple | None = None  # (pass index, retain_graph) of the last pass through it
        self.prev_mark: tuple | None = None  # ... and of the one before
        self.key = 0  # the node's key in the NodeTable (set when added)
        # the lowest sequence number the op call may have given an internal node (see opcalls.py)
        self.first: int | None = first
        self.call: int = call  # the module call it ran in (ModuleTracker's call id; 0: none)


def op_name(func: Callable) -> str:
    """`torch.add` -> "add"; `Tensor.__mul__` -> "mul"; `Tensor.add_` -> "add_"."""
    try:
        return _op_names[func]
    except (KeyError, TypeError):  # TypeError: an unhashable callable
        pass
    name = _op_name(func)
    try:
        _op_names[func] = name
    except TypeError:
        pass
    return name


_op_names: dict = {}


def _op_name(func: Callable) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith(("r", "i")) and name[1:] in _BINARY:
            name = name[1:] + ("_" if name[0] == "i" else "")
    return name


_BINARY = {"add", "sub", "mul", "truediv", "floordiv", "matmul", "pow", "mod", "and", "or", "xor"}


class OpListeners(NamedTuple):
    """What the recorder reports besides ops (the tracer wires these to the checks)."""

    on_new_leaf: Callable[[torch.Tensor], None]  # a leaf that requires grad was made
    on_inplace: Callable[[str, torch.Tensor, int], None]  # (op, tensor, its version before)
    on_op_error: Callable[[str, list, RuntimeError], None]  # (op, tensor arguments, error)
    on_no_grad_output: Callable[[Callable, list], None]  # (func, tensor arguments): left autograd


class RecordingMode(TorchFunctionMode):
    """Sees every torch function call inside a trace and records it in `nodes`."""

    def __init__(self, nodes: NodeTable, intercepted: dict, recent_outputs, modules: ModuleStack,
                 listeners: OpListeners) -> None:
        """Made in the thread it records: its notes and running modules are that thread's.

        `intercepted`: {torch function: handler(func, args, kwargs)}, calls handed over
        instead of recorded (backward, `.grad` reads); `recent_outputs`: a deque that gets
        a weak reference to each op's output."""
        super().__init__()
        self._intercepted = intercepted
        self._recent = recent_outputs
        self._nodes = nodes  # (sequence numbers of autograd nodes are counted per thread)
        self._modules = modules
        # (bound methods, held here: the per-op path reads each with one attribute load)
        self._on_new_leaf, self._on_inplace, self._on_op_error, self._on_no_grad_output = listeners
        # Inside optimizer.step() the recorder steps aside (see steps.py)
        self.in_optimizer_step = False
        self.stepped_aside = False  # ... off the mode stack for the step
        self._seq = 0
        self._stmt = 0
        self._last_stmt_key: tuple = ()
        # where the next call's nodes start (see opcalls.py), counted again after each
        # backward (a create_graph backward makes nodes in this thread)
        self._next_first: int | None = next_sequence_nr()
        self._backward_apis = frozenset(BACKWARD_APIS)

    def back_on_stack(self) -> None:
        """The recorder was off the mode stack for a while (steady.py): the nodes its next
        op call makes start at the sequence number autograd has reached since."""
        self._next_first = next_sequence_nr()

    @property
    def op_count(self) -> int:
        """Ops recorded so far in this thread (orders in-place edits against nodes' ops)."""
        return self._seq

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if compiling():  # Dynamo (and export) must see straight through us
            if (func is _BACKWARD or func is _AUTOGRAD_BACKWARD or func is _GRAD) and _compiled_backward:
                # ... but backward breaks Dynamo's graph (it never traces it): record it there
                return _compiled_backward[0](self, func, args, kwargs or {})
            return func(*args, **(kwargs or {}))
        if kwargs is None:
            kwargs = {}
        if self.in_optimizer_step and not _grad_enabled():  # (an LBFGS closure enables grad)
            return func(*args, **kwargs)
        special = self._intercepted.get(func)
        if special is not None:
            if func in self._backward_apis:
                try:
                    return special(func, args, kwargs)
                finally:
                    self._next_first = next_sequence_nr()
            return special(func, args, kwargs)

        try:
            tensors = _tensor_args(args, kwargs)
            try:
                versions = list(map(_version_of, tensors))
            except RuntimeError:  # an inference tensor (inference_mode) has no version counter
                tensors = [t for t in tensors if not t.is_inference()]
                versions = list(map(_version_of, tensors))
        except Exception:  # (guard.py: the op runs as without gradscope, unrecorded)
            internal_error("reading an op's arguments")
            return func(*args, **kwargs)
        try:
            out = func(*args, **kwargs)
        except RuntimeError as exc:
            self._on_op_error(op_name(func), tensors, exc)
            raise

        try:
            if versions and list(map(_version_of, tensors)) != versions:
                for t, v in zip(tensors, versions):
                    if _version_of(t) != v:
                        self._on_inplace(op_name(func), t, v)
            if isinstance(out, _Tensor):
                if out.requires_grad:
                    self._tag(out, func, tensors, versions)
                elif tensors:  # left autograd (detach, no_grad): the checks may need the line
                    self._on_no_grad_output(func, tensors)
            elif isinstance(out, (tuple, list)):
                # every output's node was made by this one call, whichever autograd made last
                # (nn.GRU's `h` before its `out`): each gets the call's lower bound (opcalls.py)
                first = after = self._next_first
                for o in out:
                    if isinstance(o, _Tensor) and o.requires_grad:
                        self._next_first = first
                        self._tag(o, func, tensors, versions)
                        if after is None or (self._next_first is not None and self._next_first > after):
                            after = self._next_first
                self._next_first = after
        except Exception:  # (guard.py: the user's result is returned; its notes are dropped)
            internal_error("recording an op")
        return out

    def _tag(self, out: torch.Tensor, func, tensors, versions) -> None:
        try:
            grad_fn = out.grad_fn
        except RuntimeError:  # a view made under no_grad whose base was then edited in place
            return
        if grad_fn is None:  # a leaf that requires grad: created here, or requires_grad_()
            self._on_new_leaf(out)
            return
        nodes = self._nodes
        key = nodes.key_if_new(grad_fn)
        if key is None:  # an op that returned an existing tensor (e.g. contiguous())
            return
        try:  # what the node's `_input_metadata[0]` says, read here at a fraction of its cost
            output = (out.shape, out.dtype, out.device) if out.output_nr == 0 else None
        except RuntimeError:  # tensors without a plain shape (nested)
            output = None
        source, stmt = self._where(user_frame(2))
        self._seq += 1
        out_ref = _weakref(out)
        first, self._next_first = self._next_first, key + 1
        here = self._modules  # this thread's running modules
        nodes.put(key, OpInfo(
            type(grad_fn),
            out_ref,
            op_name(func),
            source,
            here.current,
            stmt,
            self._seq,
            tuple(zip(map(_weakref, tensors), versions)),
            saved_tensor_hooks_active(),
            output,
            first,
            here.call,
        ))
        self._recent.append(out_ref)

    def _where(self, frame) -> tuple[Source | None, int]:
        """The op's line, and an id shared by the ops of one execution of one statement.

        A statement runs again when its line changes or the bytecode offset goes back
        (a loop came round): `h = torch.tanh(W @ h)` in a loop gives one id per iteration.
        """
        if frame is None:
            return None, 0
        line = frame.f_lineno  # (computed from the bytecode offset: read once)
        key = (id(frame), line)
        lasti = frame.f_lasti
        last = self._last_stmt_key
        if not last or last[0] != key or lasti < last[1]:
            self._stmt += 1
        self._last_stmt_key = (key, lasti)
        return source_at(frame.f_code, line), self._stmt


def _backward_in_compiled_code(mode: RecordingMode, func: Callable, args: tuple, kwargs: dict[str, Any]) -> Any:
    """`loss.backward()` inside a `torch.compile`d function. Dynamo inlines the recorder's
    `__torch_function__` and would fold the call into a plain pass-through, so the backward
    (which Dynamo never traces: it breaks the graph there, with or without gradscope) would
    run unseen. Disabled for Dynamo, this runs eagerly at that same graph break, where the
    recorder is off the mode stack as in any `__torch_function__`, and records the pass."""
    if type(mode) is not RecordingMode:  # a paused or stopped recorder, reached by compiled code
        return func(*args, **kwargs)
    try:
        return mode._intercepted[func](func, args, kwargs)
    finally:
        mode._next_first = next_sequence_nr()


# `_backward_in_compiled_code` as Dynamo must run it (eagerly), once Dynamo is imported:
# gradscope never imports it itself (slow, and it writes an inductor cache folder)
_compiled_backward: list[Callable] = []


def prepare_for_dynamo() -> None:
    """Make the Dynamo-disabled `_backward_in_compiled_code`, when Dynamo is imported (the
    tracer asks at its start and after each `torch.compile` call)."""
    if not _compiled_backward and dynamo_imported():
        _compiled_backward.append(torch.compiler.disable(_backward_in_compiled_code))


def _tensor_args(args: tuple, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """Tensor arguments, one level into lists/tuples (torch.cat's list, `out=`)."""
    found = []
    for a in args:
        if isinstance(a, _Tensor):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(x for x in a if isinstance(x, _Tensor))
    if kwargs:
        for a in kwargs.values():
            if isinstance(a, _Tensor):
                found.append(a)
            elif isinstance(a, (list, tuple)):
                found.extend(x for x in a if isinstance(x, _Tensor))
    return found


def assigned_name(info: OpInfo | None) -> str | None:
    """The assignment target of the line that ran this op, if it assigns one."""
    if info is None or info.source is None:
        return None
    return assignment_target(info.source.code)
