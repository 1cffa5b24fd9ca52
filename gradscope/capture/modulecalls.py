"""Module calls as they happen: each call of an nn.Module gets an id, and the log keeps
its path, class and enclosing call, so a pass can tell the two calls of a module used
twice apart and know which call of `encoder.layers.0` a `linear1` op ran in."""

from __future__ import annotations

import gc
import weakref

import torch

from .idtable import IdTable

# Calls kept at most (a long run that never calls backward forgets the oldest half).
_MAX_CALLS = 1 << 17


class CallLog:
    """call id -> (module path, module class, enclosing call id); 0 is "no call"."""

    def __init__(self, parameter_names: IdTable) -> None:
        self.records: dict[int, tuple[str, type, int]] = {}
        # module path -> the full names of the parameters the module holds (found once)
        self.parameters: dict[str, list[str]] = {}
        self._parameter_names = parameter_names
        self._next = 0

    def enter(self, module: torch.nn.Module, path: str, parent: int) -> int:
        """Log a call of `module` (at `path`) inside call `parent`; return its id.
        (Runs on every module call: kept to a few operations.)"""
        call = self._next = self._next + 1
        self.records[call] = (path, type(module), parent)
        if path not in self.parameters:
            self._first_call(module, path)
        if not call & (_MAX_CALLS - 1):  # now and then, forget the oldest calls
            self.records = {k: v for k, v in self.records.items() if k > call - _MAX_CALLS // 2}
        return call

    def _first_call(self, module: torch.nn.Module, path: str) -> None:
        names = self._parameter_names
        self.parameters[path] = [n for n in (names.get(p) for p in module.parameters()) if n]


# module -> its outermost parent (a weak reference); asking the garbage collector who
# refers to a module scans every object (~0.1 s), so each module is asked about once
_outermost: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def outermost_parent(module: torch.nn.Module) -> torch.nn.Module:
    """The largest module that holds `module` as a (nested) submodule, or `module` itself.

    Found by who refers to it (a parent's `_modules` dict), once per module that runs at the
    top level: `model.blocks[3](x)` then names parameters `blocks.3.…`, as `model(x)` would.
    """
    try:
        known = _outermost.get(module)
    except TypeError:  # (a module that cannot be weakly referenced)
        known = None
    root = known() if known is not None else None
    if root is None:
        root = _search_outermost(module)
        try:
            _outermost[module] = weakref.ref(root)
        except TypeError:
            pass
    return root


def _search_outermost(module: torch.nn.Module) -> torch.nn.Module:
    seen = {id(module)}
    while True:
        parent = _parent(module)
        if parent is None or id(parent) in seen:
            return module
        seen.add(id(parent))
        module = parent


def _parent(module: torch.nn.Module) -> torch.nn.Module | None:
    holders = [d for d in gc.get_referrers(module) if type(d) is dict]  # a parent's `_modules`
    if not holders:
        return None
    # The parent refers to its `_modules` from its instance dict (a dict object, or the
    # object itself where Python keeps the dict inline).
    for owner in gc.get_referrers(*holders):
        if isinstance(owner, torch.nn.Module) and any(owner.__dict__.get("_modules") is d for d in holders):
            return owner
        if type(owner) is dict and any(owner.get("_modules") is d for d in holders):
            for parent in gc.get_referrers(owner):
                if isinstance(parent, torch.nn.Module) and parent.__dict__ is owner:
                    return parent
    return None
