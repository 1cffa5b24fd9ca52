"""Run a user's script or module as `__main__`, exactly as `python SCRIPT ARGS` /
`python -m MODULE ARGS` would, and report how it ended instead of letting it end us.

The script gets its own `sys.argv`, `sys.path[0]` (its folder; the working folder for
`-m`) and a fresh `__main__` module (so `if __name__ == "__main__":` and pickling of
classes defined in the script work). All three are restored afterwards. Whatever the
script raises (an exception, KeyboardInterrupt, SystemExit) is caught and turned into
the exit code and traceback Python itself would have given.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .signals import EXIT_TERMINATED, Terminated


class ScriptError(Exception):
    """The script cannot be started (missing, a folder, unreadable). One line for the user."""


@dataclass
class Outcome:
    """How a script ended: its exit code and, if it raised, the traceback Python would print."""

    exit_code: int = 0
    traceback: str = ""  # empty when the script ended normally or by sys.exit(int)
    interrupted: bool = False  # KeyboardInterrupt or SIGTERM


@dataclass
class Target:
    """A script (`path`) or a module (`module`) to run, with its arguments."""

    argv: list[str]  # sys.argv for the script: [path or module file, *args]
    code: types.CodeType | None = None  # compiled script; None for a module
    module: str | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        """`train` for train.py or `-m pkg.train`: names the default output folder."""
        return self.module or (self.path.stem if self.path else "script")


def script_target(path: str | os.PathLike[str], args: Sequence[str]) -> Target:
    """Read and compile a script. Raises ScriptError for a missing or unreadable file and
    SyntaxError (as Python reports it) for a script that does not compile."""
    p = Path(path)
    if not p.exists():
        raise ScriptError(f"gradscope: can't open file '{path}': No such file or directory")
    if p.is_dir():
        raise ScriptError(f"gradscope: '{path}' is a directory, not a Python script")
    try:
        source = p.read_bytes()
    except OSError as exc:
        raise ScriptError(f"gradscope: can't open file '{path}': {exc.strerror}") from None
    # compile() reads the encoding cookie from bytes, like Python does for a script.
    # Python names a script's frames by its absolute path (3.9+), symlinks unresolved.
    code = compile(source, os.path.abspath(p), "exec", dont_inherit=True)
    return Target(argv=[str(path), *args], code=code, path=Path(os.path.abspath(p)))


def module_target(module: str, args: Sequence[str]) -> Target:
    """A module to run like `python -m module`. Raises ScriptError when it cannot be found."""
    try:
        spec = runpy._get_module_details(module)[1]  # the same lookup `python -m` does
    except ImportError as exc:
        raise ScriptError(f"gradscope: {exc}") from None
    except Exception as exc:  # a package __init__ that fails on import, for one
        raise ScriptError(f"gradscope: error while finding module {module!r}: {type(exc).__name__}: {exc}") from None
    return Target(argv=[spec.origin or module, *args], module=module)


def run(target: Target) -> Outcome:
    """Run `target` as `__main__` and return how it ended; never raises for the script's sake."""
    saved = sys.argv[:], sys.path[:], sys.modules.get("__main__")
    sys.argv = list(target.argv)
    sys.path[0:1] = [os.getcwd() if target.module else str(Path(target.path).resolve().parent)]
    try:
        return _run_caught(target)
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
        if saved[2] is not None:
            sys.modules["__main__"] = saved[2]


def _run_caught(target: Target) -> Outcome:
    try:
        if target.module:
            runpy.run_module(target.module, run_name="__main__", alter_sys=True)
        else:
            _exec_main(target)
    except SystemExit as exc:
        return _system_exit(exc)
    except KeyboardInterrupt as exc:
        return Outcome(130, format_user_traceback(exc), interrupted=True)
    except Terminated:  # Python prints nothing when SIGTERM ends it
        return Outcome(EXIT_TERMINATED, interrupted=True)
    except BaseException as exc:  # the script's own error: report it like Python does
        return Outcome(1, format_user_traceback(exc))
    return Outcome(0)


def _exec_main(target: Target) -> None:
    main = types.ModuleType("__main__")
    main.__file__ = str(target.path)
    main.__builtins__ = __builtins__
    main.__loader__ = None  # type: ignore[assignment]
    main.__spec__ = None
    sys.modules["__main__"] = main
    exec(target.code, main.__dict__)


def _system_exit(exc: SystemExit) -> Outcome:
    """sys.exit(None) -> 0, sys.exit(n) -> n, sys.exit("message") -> message on stderr and 1."""
    code = exc.code
    if code is None:
        return Outcome(0)
    if isinstance(code, int):
        return Outcome(code)
    return Outcome(1, f"{code}\n")


def _is_ours(filename: str) -> bool:
    """A frame of gradscope's own code (not its shipped examples) or of runpy."""
    if filename in _RUNPY:
        return True
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE) and not path.startswith(_EXAMPLES)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_EXAMPLES = _PACKAGE + "examples" + os.sep
_RUNPY = {runpy.__file__, runpy.run_module.__code__.co_filename}  # "<frozen runpy>" on 3.11+


def format_user_traceback(exc: BaseException) -> str:
    """The traceback Python would print for `exc`, without gradscope's and runpy's frames
    (the runner at the top, capture's wrappers in the middle), chained exceptions included."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen: set[int] = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list([f for f in t.stack if not _is_ours(f.filename)])
        stack += [c for c in (t.__cause__, t.__context__) if c is not None]
        stack += list(getattr(t, "exceptions", None) or [])  # ExceptionGroup members
    return "".join(te.format())
