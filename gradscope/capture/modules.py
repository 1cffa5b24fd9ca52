"""Which nn.Module is running, and the names of its parameters.

Global module hooks (removed when the trace ends) keep a stack of running modules. The
outermost module that runs gives qualified names to its submodules (`features`,
`encoder.layers.0`) and to its parameters (`features.weight`), computed once per module.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)

from ._torch import compiling, global_module_hook_keys, swap_has_any_global_hook
from .idtable import IdTable
from .modulecalls import CallLog, outermost_parent
from .names import leaf_names_changed


class ModuleStack:
    """The modules running in one thread: the recorder of that thread reads `current`."""

    __slots__ = ("stack", "current", "ran", "call", "call_stack")

    def __init__(self) -> None:
        self.stack: list[str] = []
        # the qualified path of the innermost running submodule (None outside modules and
        # in a top module): an attribute, not a property, because every op reads it
        self.current: str | None = None
        # modules whose forward ran since the checks last looked (id -> module), in call order
        self.ran: dict[int, torch.nn.Module] = {}
        self.call = 0  # the id of the innermost running call (0: none); every op reads it
        self.call_stack: list[int] = []


class ModuleTracker:
    """Tracks the module path of the code running now, while installed."""

    def __init__(self) -> None:
        self._threads = threading.local()  # each thread's ModuleStack (two models in two threads)
        # module -> its qualified path under the outermost module that ran it
        self._paths = IdTable()  # module -> qualified path (looked up on every module call)
        self.parameter_names: IdTable = IdTable()
        # how many modules the root that named a module / parameter had (bigger wins)
        self._root_size = IdTable()
        self._param_root_size: IdTable = IdTable()
        self._handles: list = []
        self._has_global_hook: Callable[[], bool] | None = None  # torch's check, while replaced by `_users_global_hook`
        # called at the next module call when set (the tracer, after an optimizer step raised)
        self.on_enter: Callable[[], None] | None = None
        self.calls = CallLog(self.parameter_names)  # every module call: its path, class and enclosing call
        self.log_calls = True  # (off while the recorder is off the stack: steady.py)
        self.paused = False  # hooks taken off while steady passes run (`pause`)

    def here(self) -> ModuleStack:
        """The running modules of the calling thread."""
        try:
            return self._threads.modules
        except AttributeError:
            here = self._threads.modules = ModuleStack()
            return here

    @property
    def current(self) -> str | None:
        return self.here().current

    @property
    def ran(self) -> dict[int, torch.nn.Module]:
        return self.here().ran

    def install(self) -> None:
        self.paused = False
        if self._handles:  # (installed already)
            return
        self._handles = [
            register_module_forward_pre_hook(self._enter),
            register_module_forward_hook(self._exit, always_call=True),
        ]
        # torch.compile(module) warns when it sees global module hooks: not about gradscope's
        if self._has_global_hook is None:
            self._has_global_hook = swap_has_any_global_hook(self._users_global_hook)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._has_global_hook is not None:
            swap_has_any_global_hook(self._has_global_hook)
            self._has_global_hook = None
        here = self.here()
        here.stack.clear()
        here.current = None
        here.ran.clear()
        here.call_stack.clear()
        here.call = 0

    def pause(self) -> None:
        """Take the global hooks off while steady passes run (steady.py): with any global
        module hook, torch calls every module through its hooks' path, about 10 µs a call
        (a transformer's forward: ~1 ms of its ~13), and no recorder needs module paths
        meanwhile. What is lost until `resume()`: which modules ran (the no-gradient check
        of a light pass looks at them on the recorder's passes only) and `on_enter`."""
        if self._handles:
            self.remove()
            self.paused = True

    def resume(self) -> None:
        """Put back the hooks `pause()` took off."""
        if self.paused:
            self.install()

    def _users_global_hook(self) -> bool:
        """torch's `_has_any_global_hook()`, blind to gradscope's own hooks."""
        ours = {h.id for h in self._handles}
        return any(key not in ours for key in global_module_hook_keys())

    def _enter(self, module: torch.nn.Module, args) -> None:
        if compiling():
            return None
        if self.on_enter is not None:
            self.on_enter()
            if not self._handles:  # (it paused the hooks: this call's exit hook will not run)
                return None
        here = self.here()
        path = self._paths.get(module)
        if path is None:
            if here.stack:
                path = type(module).__name__.lower()  # a module not registered under its parent
            else:
                path = self._adopt(module)
        here.stack.append(path)
        here.current = path or None
        here.ran[id(module)] = module
        here.call_stack.append(here.call)
        # (steady passes: no op is tagged with its call, so none is logged: steady.py)
        here.call = self.calls.enter(module, path, here.call) if self.log_calls else 0
        return None

    def _exit(self, module: torch.nn.Module, args, output) -> None:
        if compiling():
            return None
        here = self.here()
        stack = here.stack
        if stack:
            stack.pop()
            here.current = stack[-1] or None if stack else None
        if here.call_stack:
            here.call = here.call_stack.pop()
        return None

    def _adopt(self, module: torch.nn.Module) -> str:
        """Name every submodule and parameter of the outermost module holding a module that
        runs at the top level, and return the running module's path.

        `model.blocks[3](x)` names from `model` (`blocks.3.attn.weight`). The largest module
        wins: after `model[1](h)` then `model(x)`, model[1]'s weight is `1.weight`, not
        `weight`. A name, once given by a module, is kept (the first of shared parameters'
        names).
        """
        root = outermost_parent(module)
        if root is not module:
            self._name_from(root)
            return self._paths.get(module) or ""
        self._name_from(module)
        return ""

    def _name_from(self, root: torch.nn.Module) -> None:
        leaf_names_changed()
        size = sum(1 for _ in root.modules())
        for name, sub in root.named_modules(remove_duplicate=False):
            if self._root_size.get(sub, 0) < size:
                self._paths[sub] = name
                self._root_size[sub] = size
        named: set[int] = set()
        for name, param in root.named_parameters(remove_duplicate=False):
            if id(param) in named:
                continue
            named.add(id(param))
            if param not in self.parameter_names or self._param_root_size.get(param, 0) < size:
                self.parameter_names[param] = name
                self._param_root_size[param] = size
