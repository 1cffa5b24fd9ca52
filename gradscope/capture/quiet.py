"""gradscope's own tensor work, hidden from what the user measures.

Statistics of gradients, local Jacobians and the graph walk run aten ops. A user who counts
FLOPs (`FlopCounterMode`), ops (their own `TorchDispatchMode` or `TorchFunctionMode`) or
profiles (`torch.profiler`) must count under `gradscope trace` exactly what they count
under `python`: while gradscope works, their modes are taken off the stack and the
profiler's op recording is off for this thread. When none of them is active (the usual
case) entering costs three C calls.
"""

from __future__ import annotations

from typing import Any, Callable

from ._torch import DisableTorchFunction
from ._torch import disable_dispatch_modes as _disable_current_modes
from ._torch import dispatch_mode_depth as _dispatch_modes
from ._torch import enable_record_function as _record_ops
from ._torch import function_mode_depth as _function_modes
from ._torch import profiler_enabled as _profiling


def user_watching() -> bool:
    """Is a dispatch mode, torch-function mode or the profiler active in this thread?"""
    return bool(_dispatch_modes() or _function_modes() or _profiling())


class unwatched:
    """`with unwatched():` runs gradscope's work unseen by the user's modes and profiler."""

    __slots__ = ("_dispatch", "_function", "_profiler")

    def __enter__(self) -> "unwatched":
        self._dispatch = _disable_current_modes() if _dispatch_modes() else None
        if self._dispatch is not None:
            self._dispatch.__enter__()
        self._function = DisableTorchFunction() if _function_modes() else None
        if self._function is not None:
            self._function.__enter__()
        self._profiler = _profiling()
        if self._profiler:
            _record_ops(False)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._profiler:
            _record_ops(True)
        if self._function is not None:
            self._function.__exit__(*exc)
        if self._dispatch is not None:
            self._dispatch.__exit__(*exc)


def unwatched_hook(hook: Callable) -> Callable:
    """`hook`, run under `unwatched()` (for autograd hooks installed while the user watches)."""

    def quiet_hook(*args: Any) -> Any:
        with unwatched():
            return hook(*args)

    return quiet_hook
