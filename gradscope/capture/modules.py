"""Which nn.Module is running, and the names of its parameters.

Global module hooks (removed when the trace ends) keep a stack of running modules. The
outermost module that runs gives qualified names to its submodules (`features`,
`encoder.layers.0`) and to its parameters (`features.weight`), computed once per module.
"""

from __future__ import annotations

import torch
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)

from .idtable import IdTable
from .modulecalls import CallLog, outermost_parent
from .names import leaf_names_changed
from .recorder import compile_flags, dynamo_compiling


class ModuleTracker:
    """Tracks the module path of the code running now, while installed."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        # the qualified path of the innermost running submodule (None outside modules and
        # in a top module): an attribute, not a property, because every op reads it
        self.current: str | None = None
        # module -> its qualified path under the outermost module that ran it
        self._paths = IdTable()  # module -> qualified path (looked up on every module call)
        self.parameter_names: IdTable = IdTable()
        # how many modules the root that named a module / parameter had (bigger wins)
        self._root_size = IdTable()
        self._param_root_size: IdTable = IdTable()
        self._handles: list = []
        # modules whose forward ran since the checks last looked (id -> module), in call order
        self.ran: dict[int, torch.nn.Module] = {}
        self.calls = CallLog(self.parameter_names)  # every module call: its path, class and enclosing call
        self.call = 0  # the id of the innermost running call (0: none); every op reads it
        self._call_stack: list[int] = []

    def install(self) -> None:
        self._handles = [
            register_module_forward_pre_hook(self._enter),
            register_module_forward_hook(self._exit, always_call=True),
        ]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._stack.clear()
        self.current = None
        self.ran.clear()
        self._call_stack.clear()
        self.call = 0

    def _enter(self, module: torch.nn.Module, args) -> None:
        if dynamo_compiling() or compile_flags._is_compiling_flag:
            return None
        path = self._paths.get(module)
        if path is None:
            if self._stack:
                path = type(module).__name__.lower()  # a module not registered under its parent
            else:
                path = self._adopt(module)
        self._stack.append(path)
        self.current = path or None
        self.ran[id(module)] = module
        self._call_stack.append(self.call)
        self.call = self.calls.enter(module, path, self.call)
        return None

    def _exit(self, module: torch.nn.Module, args, output) -> None:
        if dynamo_compiling() or compile_flags._is_compiling_flag:
            return None
        stack = self._stack
        if stack:
            stack.pop()
            self.current = stack[-1] or None if stack else None
        if self._call_stack:
            self.call = self._call_stack.pop()
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
