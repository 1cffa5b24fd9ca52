"""The one seam between gradscope and torch's private internals.

Every private torch attribute or call gradscope uses is named here and nowhere else
(tests/test_architecture.py greps the package for any other). Public torch APIs (hooks,
modes, `grad_fn`, `next_functions`) are used directly by the capture modules.

Each entry is looked up once, at import. Where torch lacks one, the entry either falls back
to a public equivalent (noted at the entry) or is `None`, and `check_supported()`, called
when a trace starts, raises `UnsupportedTorchError` with one clear line. The floor is the
torch that CI tests (see pyproject.toml and docs/architecture.md); tests/test_torch_seam.py
exercises every entry on the installed torch.
"""

from __future__ import annotations

import importlib
import operator
import sys
from typing import Any, Callable, Iterator

import torch

TORCH_FLOOR = (2, 13)  # the oldest torch CI runs the tests on


class UnsupportedTorchError(RuntimeError):
    """The installed torch lacks an internal gradscope relies on, or is older than the floor."""


def _lookup(module: str, path: str) -> Any:
    """`module.path` (a dotted attribute path), or None where this torch lacks it."""
    head, *rest = module.split(".")
    try:
        owner: Any = importlib.import_module(head)
        for part in rest:  # (`torch._C._functions` is an attribute, not an importable module)
            try:
                owner = getattr(owner, part)
            except AttributeError:
                owner = importlib.import_module(f"{owner.__name__}.{part}")
        for part in path.split("."):
            owner = getattr(owner, part)
        return owner
    except (ImportError, AttributeError):
        return None


def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


# -- autograd nodes -------------------------------------------------------------------------
# Autograd numbers each node it makes (per thread, never reused): gradscope keys its notes
# by this number, since nodes cannot be weak-referenced and their ids are reused.
sequence_nr: Callable[[Any], int] = operator.methodcaller("_sequence_nr")
_INPUT_METADATA = "_input_metadata"  # per forward output of a node: shape, dtype, device


def input_metadata(fn: Any) -> Any:
    """The node's metadata per forward output (`.shape`, `.dtype`, `.device` each), or None."""
    return getattr(fn, _INPUT_METADATA, None)


def has_input_metadata(fn: Any) -> bool:
    return hasattr(fn, _INPUT_METADATA)


# the node class of leaves (a leaf's `grad_fn` is None; its node in the graph is this)
ACCUMULATE_GRAD: type | None = _lookup("torch._C._functions", "AccumulateGrad")

SAVED_PREFIX = "_saved_"  # a node's attribute that unpacks one saved tensor or value
_RAW_SAVED_PREFIX = "_raw_saved_"  # ... its raw (unpacked-on-demand) form: tensors only


def saved_value_attributes(fn: Any) -> list[str]:
    """A node's attributes for what it saved, tensors and plain values (`_saved_self`,
    `_saved_exponent`)."""
    return [a for a in dir(fn) if a.startswith(SAVED_PREFIX)]


def saved_tensor_attributes(fn: Any) -> tuple[str, ...]:
    """The attributes that unpack a node's saved tensors (`_saved_self`, or `saved_tensors`
    for a custom Function), reading any of which raises torch's own error when the tensor
    was modified in place or freed."""
    names = []
    for a in dir(fn):
        if a.startswith(_RAW_SAVED_PREFIX):
            rest = a[len(_RAW_SAVED_PREFIX):]
            plain = SAVED_PREFIX + rest
            names.append("saved_tensors" if rest == "tensors" and not hasattr(fn, plain) else plain)
    return tuple(names)


def saved_label(attr: str) -> str:
    """`_saved_self` -> `self` (the name shown for a saved tensor)."""
    return attr[len(SAVED_PREFIX):] if attr.startswith(SAVED_PREFIX) else attr


# -- tensors --------------------------------------------------------------------------------
# A tensor's version counter moves on every in-place edit (PyTorch's own saved-tensor check).
version_of: Callable[[torch.Tensor], int] = operator.attrgetter("_version")


def base_of(t: torch.Tensor) -> torch.Tensor | None:
    """The tensor `t` is a view of, or None."""
    return t._base


def has_grad_hooks(leaf: torch.Tensor) -> bool:
    """Hooks on the tensor itself that may change what lands in `.grad`."""
    return bool(getattr(leaf, "_backward_hooks", None)) or bool(getattr(leaf, "_post_accumulate_grad_hooks", None))


def foreach_norm(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """2-norms of same-device, same-dtype tensors in one fused kernel where torch has one."""
    fused = getattr(torch, "_foreach_norm", None)
    return list(fused(tensors)) if fused is not None else [torch.linalg.vector_norm(t) for t in tensors]


def foreach_sub(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[torch.Tensor]:
    """`a[i] - b[i]` for each pair, fused where torch has it."""
    fused = getattr(torch, "_foreach_sub", None)
    return list(fused(a, b)) if fused is not None else [x - y for x, y in zip(a, b)]


# -- saved-tensor hooks ---------------------------------------------------------------------
_top_saved_hooks = _lookup("torch._C._autograd", "_top_saved_tensors_default_hooks")


def saved_tensor_hooks_active() -> bool:
    """Are saved-tensor pack/unpack hooks (checkpoint, save_on_cpu) active right now?"""
    return _top_saved_hooks(False) is not None


# -- compiling ------------------------------------------------------------------------------
# Dynamo folds `is_dynamo_compiling()` to True while it traces; export sets the module's
# flag. Fallback where torch lacks either: the public `torch.compiler.is_compiling()`.
_dynamo_compiling = getattr(torch.compiler, "is_dynamo_compiling", None)
_HAS_FLAG = hasattr(torch.compiler, "_is_compiling_flag")
if _dynamo_compiling is not None and _HAS_FLAG:
    _compiler = torch.compiler
    _is_dynamo: Callable[[], bool] = _dynamo_compiling

    def compiling() -> bool:
        """Is Dynamo or export tracing the caller? (Asked on every op: two cheap reads.)"""
        return _is_dynamo() or _compiler._is_compiling_flag
else:  # pragma: no cover - older torch
    compiling = torch.compiler.is_compiling


def dynamo_imported() -> bool:
    """Has anything imported Dynamo yet? (gradscope never does: slow, and it writes an
    inductor cache folder.)"""
    return "torch._dynamo" in sys.modules


# -- mode stacks and the profiler -----------------------------------------------------------
current_function_mode: Callable[[], Any] = _lookup("torch.overrides", "_get_current_function_mode")
pop_function_mode: Callable[[], Any] = _lookup("torch._C", "_pop_torch_function_stack")
push_function_mode: Callable[[Any], None] = _lookup("torch._C", "_push_on_torch_function_stack")
function_mode_depth: Callable[[], int] = _lookup("torch._C", "_len_torch_function_stack")
dispatch_mode_depth: Callable[[], int] = _lookup("torch._C", "_len_torch_dispatch_stack")
disable_dispatch_modes: Callable[[], Any] = _lookup("torch.utils._python_dispatch", "_disable_current_modes")
DisableTorchFunction: type = _lookup("torch._C", "DisableTorchFunction")
profiler_enabled: Callable[[], bool] = _lookup("torch._C._autograd", "_profiler_enabled")
enable_record_function: Callable[[bool], None] = _lookup("torch._C._autograd", "_enable_record_function")


def engine_backward() -> Callable[..., Any] | None:
    """The function all of torch's backward APIs call to run the engine (looked up by them
    at call time, so replacing it catches `backward`/`autograd.grad` however they were
    imported), or None in a torch without it."""
    return getattr(torch.autograd, "_engine_run_backward", None)


def set_engine_backward(fn: Callable[..., Any]) -> None:
    """Replace `engine_backward()` (steady.py, for the time the recorder is off)."""
    torch.autograd._engine_run_backward = fn  # type: ignore[attr-defined]


def top_function_mode() -> Any:
    """The mode on top of this thread's torch-function stack, or None."""
    return current_function_mode() if function_mode_depth() else None


# -- global module hooks --------------------------------------------------------------------
_module_mod = torch.nn.modules.module
_GLOBAL_HOOK_TABLES = ("_global_backward_pre_hooks", "_global_backward_hooks", "_global_forward_pre_hooks",
                       "_global_forward_hooks", "_global_forward_hooks_always_called",
                       "_global_forward_hooks_with_kwargs")


def global_module_hook_keys() -> Iterator[Any]:
    """The handle ids of every global module hook installed (anyone's)."""
    for name in _GLOBAL_HOOK_TABLES:
        yield from getattr(_module_mod, name, {})


def swap_has_any_global_hook(check: Callable[[], bool] | None) -> Callable[[], bool] | None:
    """Replace torch's "is any global module hook installed?" check (torch.compile warns when
    it is true); returns the one replaced. None where this torch has no such check."""
    old = getattr(_module_mod, "_has_any_global_hook", None)
    if old is not None and check is not None:
        _module_mod._has_any_global_hook = check
    return old


# -- torch's own tracers (the recorder steps aside while they run) ---------------------------
TRACER_ENTRY_POINTS = (  # (module, attribute); those this torch lacks are skipped
    ("torch._C", "_create_function_from_trace"),
    ("torch._C", "_create_function_from_trace_with_dict"),
    ("torch.jit._trace", "trace_module"),
    ("torch.jit", "trace_module"),
    ("torch.fx._symbolic_trace", "Tracer.trace"),
    ("torch.export._trace", "_export"),
    ("torch.export", "export"),  # (wraps the inner `_export` too when `_trace` was not imported yet)
)
# Modules wrapped only when already imported: importing torch.export._trace imports Dynamo,
# seconds at every trace start for a script that never exports. Until then the public
# `torch.export.export` entry covers the export.
LAZY_TRACER_MODULES = frozenset({"torch.export._trace"})

# The entries without which gradscope cannot record: checked when a trace starts.
_REQUIRED = {
    "torch._C._functions.AccumulateGrad": ACCUMULATE_GRAD,
    "torch._C._autograd._top_saved_tensors_default_hooks": _top_saved_hooks,
    "torch.overrides._get_current_function_mode": current_function_mode,
    "torch._C._pop_torch_function_stack": pop_function_mode,
    "torch._C._push_on_torch_function_stack": push_function_mode,
    "torch._C._len_torch_function_stack": function_mode_depth,
    "torch._C._len_torch_dispatch_stack": dispatch_mode_depth,
    "torch.utils._python_dispatch._disable_current_modes": disable_dispatch_modes,
    "torch._C.DisableTorchFunction": DisableTorchFunction,
    "torch._C._autograd._profiler_enabled": profiler_enabled,
    "torch._C._autograd._enable_record_function": enable_record_function,
}


def missing_entries() -> list[str]:
    """The required internals this torch lacks (none on a supported torch)."""
    return [name for name, value in _REQUIRED.items() if value is None]


def check_supported() -> None:
    """Raise UnsupportedTorchError (one line) unless this torch is one gradscope records on."""
    version = torch_version()
    if version < TORCH_FLOOR:
        raise UnsupportedTorchError(
            f"gradscope needs torch >= {TORCH_FLOOR[0]}.{TORCH_FLOOR[1]} to record (found {torch.__version__})")
    missing = missing_entries()
    if missing:
        raise UnsupportedTorchError(
            f"gradscope cannot record on torch {torch.__version__}: it lacks {', '.join(missing)}")
