"""Which nn.Module is running, and the names of its parameters.

Global module hooks (removed when the trace ends) keep a stack of running modules. The
outermost module that runs gives qualified names to its submodules (`features`,
`encoder.layers.0`) and to its parameters (`features.weight`), computed once per module.
"""

from __future__ import annotations

import weakref

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils.weak import WeakIdKeyDictionary


class ModuleTracker:
    """Tracks the module path of the code running now, while installed."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        # module -> its qualified path under the outermost module that ran it
        self._paths: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.parameter_names: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._handles: list = []
        # modules whose forward ran since the checks last looked (id -> module), in call order
        self.ran: dict[int, torch.nn.Module] = {}

    @property
    def current(self) -> str | None:
        """The qualified path of the innermost running submodule ("" for a top module: None)."""
        return self._stack[-1] or None if self._stack else None

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
        self.ran.clear()

    def _enter(self, module: torch.nn.Module, args) -> None:
        if torch.compiler.is_compiling():
            return None
        path = self._paths.get(module)
        if path is None:
            if self._stack:
                path = type(module).__name__.lower()  # a module not registered under its parent
            else:
                self._adopt(module)
                path = ""
        self._stack.append(path)
        self.ran[id(module)] = module
        return None

    def _exit(self, module: torch.nn.Module, args, output) -> None:
        if torch.compiler.is_compiling():
            return None
        if self._stack:
            self._stack.pop()
        return None

    def _adopt(self, root: torch.nn.Module) -> None:
        """Name every submodule and parameter of a module that runs at the top level."""
        for name, sub in root.named_modules(remove_duplicate=False):
            self._paths.setdefault(sub, name)
        for name, param in root.named_parameters(remove_duplicate=False):
            if param not in self.parameter_names:
                self.parameter_names[param] = name
