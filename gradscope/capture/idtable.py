"""A table from tensors to values by identity, holding the tensors weakly.

What `torch.utils.weak.WeakIdKeyDictionary` does, at a fraction of its cost on the
per-op and per-pass paths (its lookups build a Python weakref object each time): a plain
dict keyed by `id()`, each entry checked against its weakref because ids are reused.
Dead entries are dropped whenever the table doubles.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator


class IdTable:
    """tensor -> value by identity; never keeps a tensor alive."""

    __slots__ = ("_d", "_limit")

    def __init__(self) -> None:
        self._d: dict[int, tuple] = {}
        self._limit = 1024

    def get(self, t: Any, default: Any = None) -> Any:
        e = self._d.get(id(t))
        return e[1] if e is not None and e[0]() is t else default

    def set(self, t: Any, value: Any) -> None:
        k = id(t)
        e = self._d.get(k)
        self._d[k] = (e[0] if e is not None and e[0]() is t else weakref.ref(t), value)
        if len(self._d) > self._limit:
            self._d = {k: e for k, e in self._d.items() if e[0]() is not None}
            self._limit = max(1024, 2 * len(self._d))

    __setitem__ = set

    def __contains__(self, t: Any) -> bool:
        e = self._d.get(id(t))
        return e is not None and e[0]() is t

    def __len__(self) -> int:
        return len(self._d)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(tensor, value) for the tensors still alive."""
        for ref, value in list(self._d.values()):
            t = ref()
            if t is not None:
                yield t, value
