"""How a traced script's end is shown, as Python would show it: its exception goes
through the script's own `sys.excepthook` if it set one, else is printed as Python prints
it without gradscope's and runpy's frames; all of it to the script's own `sys.stderr`
(replaced or closed as the script left it)."""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import types
from typing import Callable, TextIO

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_EXAMPLES = _PACKAGE + "examples" + os.sep
_RUNPY = {runpy.__file__, runpy.run_module.__code__.co_filename}  # "<frozen runpy>" on 3.11+


def _is_ours(filename: str) -> bool:
    """A frame of gradscope's own code (not its shipped examples) or of runpy."""
    if filename in _RUNPY:
        return True
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE) and not path.startswith(_EXAMPLES)


def format_user_traceback(exc: BaseException) -> str:
    """The traceback Python would print for `exc`, without gradscope's and runpy's frames
    (the runner at the top, capture's wrappers in the middle) and torch's dispatch into
    them, chained exceptions included."""
    from .tracebacks import user_frames  # imports torch: only once a script was traced

    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen: set[int] = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(user_frames(t.stack, _is_ours))
        stack += [c for c in (t.__cause__, t.__context__) if c is not None]
        stack += list(getattr(t, "exceptions", None) or [])  # ExceptionGroup members
    return "".join(te.format())


def _user_tb(tb: types.TracebackType | None) -> types.TracebackType | None:
    """`tb` from the script's first frame on, as Python hands it to sys.excepthook."""
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def show_exception(exc: BaseException, hook: Callable[..., object], before: Callable[..., object]) -> str:
    """Show `exc` as Python does at the end of a script: through `hook` (sys.excepthook
    now) when the script set it (it differs from `before`, the hook when the script
    started), else as Python's traceback on sys.stderr. Returns the traceback text (""
    when the script's hook showed it)."""
    if hook is before:
        text = format_user_traceback(exc)
        write_stderr(text)
        return text
    try:
        hook(type(exc), exc, _user_tb(exc.__traceback__))
    except BaseException as hook_error:  # Python's words for a hook that fails
        write_stderr("Error in sys.excepthook:\n" + format_user_traceback(hook_error)
                     + "\nOriginal exception was:\n" + format_user_traceback(exc))
    return ""


def write_stderr(text: str) -> None:
    """Write to the script's sys.stderr; when it is gone (None or closed), say so on the
    process's stderr as Python does ("lost sys.stderr")."""
    stream: TextIO | None = sys.stderr
    try:
        if stream is None:
            raise ValueError("no sys.stderr")
        stream.write(text)
        stream.flush()
    except (ValueError, OSError, AttributeError):
        with open(2, "w", closefd=False) as fd2:
            fd2.write("lost sys.stderr\n")


def flush_stdout() -> None:
    """Flush the script's sys.stdout as Python does at exit; a closed one is no error."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (ValueError, OSError, AttributeError):
        pass
