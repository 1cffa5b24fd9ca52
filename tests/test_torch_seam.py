"""gradscope's seam to torch's private internals (gradscope/capture/_torch.py): every entry
works on the installed torch, and no other module of gradscope touches torch's privates."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import gradscope
from gradscope.capture import _torch as seam

PACKAGE = Path(gradscope.__file__).parent
SEAM = PACKAGE / "capture" / "_torch.py"


def test_the_installed_torch_is_supported_and_has_every_internal():
    assert seam.torch_version() >= seam.TORCH_FLOOR
    assert seam.missing_entries() == []
    seam.check_supported()  # raises nothing


def test_an_old_or_incomplete_torch_gets_one_clear_line(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.4.1+cpu")
    with pytest.raises(seam.UnsupportedTorchError, match=r"^gradscope needs torch >= 2\.13 to record \(found 2\.4\.1\+cpu\)$"):
        seam.check_supported()
    with pytest.raises(seam.UnsupportedTorchError):
        with gradscope.trace():
            pass
    assert torch._C._len_torch_function_stack() == 0  # nothing left installed
    monkeypatch.undo()
    monkeypatch.setitem(seam._REQUIRED, "torch._C._functions.AccumulateGrad", None)
    with pytest.raises(seam.UnsupportedTorchError, match="it lacks torch._C._functions.AccumulateGrad$"):
        seam.check_supported()
    assert seam._lookup("torch._C", "no_such_internal") is None
    assert seam._lookup("torch.no_such_module", "x") is None


def test_node_entries():
    x = torch.ones(2, 3, requires_grad=True)
    y = (x * 2).sum()
    mul = y.grad_fn.next_functions[0][0]
    assert type(mul).__name__ == "MulBackward0"
    assert seam.sequence_nr(mul) < seam.sequence_nr(y.grad_fn)  # made first, numbered first
    meta = seam.input_metadata(mul)
    assert [(tuple(m.shape), m.dtype, m.device.type) for m in meta] == [((2, 3), torch.float32, "cpu")]
    assert seam.has_input_metadata(mul) and seam.input_metadata(object()) is None
    leaf_node = mul.next_functions[0][0]
    assert isinstance(leaf_node, seam.ACCUMULATE_GRAD) and leaf_node.variable is x
    p = torch.tensor([3.0], requires_grad=True)
    z = p.pow(2)
    assert seam.saved_tensor_attributes(z.grad_fn) == ("_saved_self",)
    assert seam.saved_value_attributes(z.grad_fn) == ["_saved_exponent", "_saved_self"]
    assert z.grad_fn._saved_exponent == 2 and seam.saved_label("_saved_self") == "self"
    assert seam.saved_label("saved_tensors") == "saved_tensors"


def test_custom_function_saved_tensors_are_named_as_torch_unpacks_them():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2 * a * g

    out = Square.apply(torch.ones(2, requires_grad=True))
    assert seam.saved_tensor_attributes(out.grad_fn) == ("saved_tensors",)


def test_tensor_entries():
    t = torch.zeros(3, requires_grad=True)
    before = seam.version_of(t)
    with torch.no_grad():
        t.add_(1)
    assert seam.version_of(t) == before + 1
    view = t[:2]
    assert seam.base_of(view) is t and seam.base_of(t) is None
    assert not seam.has_grad_hooks(t)
    handle = t.register_hook(lambda g: None)
    assert seam.has_grad_hooks(t)
    handle.remove()
    handle = t.register_post_accumulate_grad_hook(lambda p: None)
    assert seam.has_grad_hooks(t)
    handle.remove()


def test_saved_tensor_hooks_entry():
    assert not seam.saved_tensor_hooks_active()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        assert seam.saved_tensor_hooks_active()
    assert not seam.saved_tensor_hooks_active()


def test_compiling_entry_is_false_eagerly_and_true_under_dynamo():
    assert seam.compiling() is False
    seen = []

    def f(x):
        seen.append(seam.compiling())
        return x + 1

    torch._dynamo.reset()
    torch.compile(f, backend="eager")(torch.ones(1))
    assert seen == [True]


def test_mode_stack_and_profiler_entries():
    class Mode(TorchFunctionMode):
        pass

    assert seam.function_mode_depth() == 0 and seam.top_function_mode() is None
    mode = Mode()
    with mode:
        assert seam.function_mode_depth() == 1 and seam.top_function_mode() is mode
        assert seam.current_function_mode() is mode
        popped = seam.pop_function_mode()
        assert popped is mode and seam.function_mode_depth() == 0
        seam.push_function_mode(mode)
        assert seam.top_function_mode() is mode
        with seam.DisableTorchFunction():
            assert not torch._C._is_torch_function_mode_enabled()
    calls = []

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with Counting():
        assert seam.dispatch_mode_depth() == 1
        with seam.disable_dispatch_modes():
            torch.ones(2) + 1
        assert seam.dispatch_mode_depth() == 1
    assert calls == [] and seam.dispatch_mode_depth() == 0
    assert seam.profiler_enabled() is False
    with torch.profiler.profile() as prof:
        assert seam.profiler_enabled() is True
        seam.enable_record_function(False)
        torch.ones(2).add(1)
        seam.enable_record_function(True)
        torch.ones(2).mul(1)
    names = {e.name for e in prof.events()}
    assert "aten::mul" in names and "aten::add" not in names


def test_global_module_hook_entries():
    keys_before = set(seam.global_module_hook_keys())
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert set(seam.global_module_hook_keys()) - keys_before == {handle.id}
        original = seam.swap_has_any_global_hook(lambda: False)
        assert bool(original()) is True and torch.nn.modules.module._has_any_global_hook() is False
        assert seam.swap_has_any_global_hook(original)() is False
        assert torch.nn.modules.module._has_any_global_hook is original
    finally:
        handle.remove()


def test_every_tracer_entry_point_exists_in_this_torch():
    for module, attr in seam.TRACER_ENTRY_POINTS:
        assert seam._lookup(module, attr) is not None, (module, attr)


# -- nothing outside the seam touches torch's privates -------------------------------------

# private attribute names of torch objects (any object: `fn._sequence_nr`, `t._version`)
PRIVATE_ATTRIBUTES = {
    "_sequence_nr", "_input_metadata", "_version", "_base", "_backward_hooks", "_post_accumulate_grad_hooks",
    "_is_compiling_flag", "_has_any_global_hook", "_top_saved_tensors_default_hooks", "_C",
    "_get_current_function_mode", "_pop_torch_function_stack", "_push_on_torch_function_stack",
    "_len_torch_function_stack", "_len_torch_dispatch_stack", "_disable_current_modes", "_profiler_enabled",
    "_enable_record_function", "_functions", "_autograd", "_dynamo", "_saved_tensors",
}
PRIVATE_PREFIXES = ("_raw_saved_", "_saved_", "_global_backward", "_global_forward")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _private(name: str) -> bool:
    return name in PRIVATE_ATTRIBUTES or name.startswith(PRIVATE_PREFIXES)


def private_torch_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and (_private(node.attr) or (
                node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id == "torch")):
            found.append(f"{where} .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if _private(node.value) or node.value.startswith("torch._"):
                found.append(f"{where} {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torch"):
            if any(part.startswith("_") for part in node.module.split(".")) or any(
                    _private(a.name) for a in node.names):
                found.append(f"{where} from {node.module}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("torch") and any(p.startswith("_") for p in a.name.split(".")):
                    found.append(f"{where} import {a.name}")
    return found


def test_no_private_torch_access_outside_the_seam():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) if path != SEAM for use in private_torch_uses(path)]
    assert found == []


def test_the_grep_catches_what_it_should(tmp_path):
    probe = PACKAGE / "capture" / "_seam_probe_tmp.py"
    probe.write_text('"""doc: fn._sequence_nr() is fine here."""\nimport torch\n'
                     'from torch.utils._python_dispatch import _disable_current_modes\n'
                     'a = fn._sequence_nr()\nb = getattr(fn, "_input_metadata", None)\nc = torch._C.Foo\n'
                     'd = t._version\ne = torch._foreach_norm([])\n')
    try:
        found = [u.split(" ", 1)[1] for u in private_torch_uses(probe)]
    finally:
        probe.unlink()
    assert sorted(found) == sorted(["from torch.utils._python_dispatch", ".\u005fsequence_nr", "'_input_metadata'",
                                    "._C", "._version", "._foreach_norm"])


def test_dynamo_imported_entry():
    import sys

    assert seam.dynamo_imported() == ("torch._dynamo" in sys.modules)


def test_foreach_entries_match_their_plain_forms():
    a, b = [torch.randn(5), torch.randn(3, 2)], [torch.randn(5), torch.randn(3, 2)]
    assert [n.item() for n in seam.foreach_norm(a)] == pytest.approx([t.norm().item() for t in a])
    assert all(torch.equal(d, x - y) for d, x, y in zip(seam.foreach_sub(a, b), a, b))
