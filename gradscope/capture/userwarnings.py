"""Warnings raised inside a recorded op are the user's line's, as under `python`.

A warning from torch's C++ code goes to the innermost Python frame; inside a trace that
is the recorder's, which calls the op. Python would then file the warning under
`gradscope.capture.recorder`: `filterwarnings(..., module="__main__")` would stop matching
and the same warning from two lines of the user's would show once. So, while a trace runs,
`warnings._showwarnmsg` (the function CPython calls to show a warning) files a warning
that was filed under gradscope's capture code again, under the user's frame: its module,
line and registry, through the user's filters. What the first filing left in gradscope's
registry (and in the once-registry) is forgotten, so that the next such warning reaches
the user's filters too. Other warnings pass untouched; nothing is added per op.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from .source import user_frame

_CAPTURE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

_installed = 0  # nested traces share one installation
_original_show: Any = None


def install() -> None:
    """Start filing warnings from gradscope's frames under the user's (nests)."""
    global _installed, _original_show
    _installed += 1
    if _installed > 1:
        return
    _original_show = warnings._showwarnmsg  # type: ignore[attr-defined]
    warnings._showwarnmsg = _show  # type: ignore[attr-defined]


def remove() -> None:
    global _installed, _original_show
    if _installed == 0:
        return
    _installed -= 1
    if _installed:
        return
    if warnings._showwarnmsg is _show:  # type: ignore[attr-defined]
        warnings._showwarnmsg = _original_show  # type: ignore[attr-defined]
    _original_show = None


def _show(msg: Any) -> None:
    show = _original_show if _original_show is not None else warnings._showwarnmsg_impl  # type: ignore[attr-defined]
    if not str(msg.filename).startswith(_CAPTURE_DIR):
        return show(msg)
    frame = user_frame(1)
    if frame is None:
        return show(msg)
    _forget_first_filing(msg)
    scope = frame.f_globals
    registry = scope.get("__warningregistry__")
    if not isinstance(registry, dict):
        registry = scope["__warningregistry__"] = {}
    warnings.warn_explicit(
        msg.message, msg.category, frame.f_code.co_filename, frame.f_lineno,
        module=scope.get("__name__", "<string>"), registry=registry, module_globals=scope,
        source=msg.source,
    )
    del frame, scope


def _forget_first_filing(msg: Any) -> None:
    """Undo what the filing under gradscope's module recorded against showing it again."""
    text, category = str(msg.message), msg.category
    module = "gradscope.capture." + os.path.splitext(os.path.basename(msg.filename))[0]
    ours = getattr(sys.modules.get(module), "__warningregistry__", None)
    if isinstance(ours, dict):
        ours.pop((text, category, msg.lineno), None)
        ours.pop((text, category, 0), None)
    if _action(text, category, module, msg.lineno) == "once":
        warnings.onceregistry.pop((text, category), None)  # type: ignore[attr-defined]


def _action(text: str, category: type, module: str, lineno: int) -> str:
    """The action Python's filters chose for the first filing (as `warnings.warn_explicit`)."""
    for action, message, kind, mod, line in warnings.filters:
        if ((message is None or message.match(text)) and issubclass(category, kind)
                and (mod is None or mod.match(module)) and (line == 0 or line == lineno)):
            return action
    return warnings.defaultaction
