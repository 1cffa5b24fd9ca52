"""Run a user's script or module as `__main__`, exactly as `python SCRIPT ARGS` /
`python -m MODULE ARGS` / `python DIR_OR_ZIP ARGS` would, and report how it ended
instead of letting it end us.

The script gets its own `sys.argv`, `sys.path[0]` (its folder; the working folder for
`-m`; the folder or zip itself for a `__main__.py` in one), a fresh `__main__` module
with Python's globals (so `if __name__ == "__main__":` and pickling of classes defined
in the script work), and its own `sys.excepthook`, `sys.stdout` and `sys.stderr`. All
of them are restored afterwards. Whatever the script raises (an exception,
KeyboardInterrupt, SystemExit) is caught, shown as Python would show it, and turned into
the exit code Python would have given.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.machinery
import os
import runpy
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .script_end import flush_stdout, format_user_traceback, show_exception, write_stderr
from .signals import EXIT_TERMINATED, Terminated

__all__ = ["Outcome", "ScriptError", "Target", "format_user_traceback", "module_target", "run",
           "script_target"]


class ScriptError(Exception):
    """The script cannot be started (missing, a folder, unreadable). One line for the user."""


@dataclass
class Outcome:
    """How a script ended: its exit code and, if it raised, the traceback Python would print."""

    exit_code: int = 0
    traceback: str = ""  # empty when the script ended normally, by sys.exit(int), or its excepthook showed it
    interrupted: bool = False  # KeyboardInterrupt or SIGTERM
    exception: BaseException | None = None  # what the script raised, if it raised


@dataclass
class Target:
    """A script (`path`), a module (`module`) or a folder or zip with `__main__.py`
    (`path` with `main_dir`) to run, with its arguments."""

    argv: list[str]  # sys.argv for the script: [path or module file, *args]
    code: types.CodeType | None = None  # compiled script; None for a module or folder
    module: str | None = None
    path: Path | None = None
    main_dir: bool = False  # path is a folder or zip holding __main__.py

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
    if p.is_dir() or zipfile.is_zipfile(p):  # run as Python runs it: its __main__.py
        if not _has_main(p):
            raise ScriptError(f"gradscope: can't find '__main__' module in '{path}'")
        return Target(argv=[str(path), *args], path=Path(os.path.abspath(p)), main_dir=True)
    try:
        source = p.read_bytes()
    except OSError as exc:
        raise ScriptError(f"gradscope: can't open file '{path}': {exc.strerror}") from None
    # compile() reads the encoding cookie from bytes, like Python does for a script.
    # Python names a script's frames by its absolute path (3.9+), symlinks unresolved.
    code = compile(source, os.path.abspath(p), "exec", dont_inherit=True)
    return Target(argv=[str(path), *args], code=code, path=Path(os.path.abspath(p)))


def _has_main(p: Path) -> bool:
    if p.is_dir():
        return (p / "__main__.py").is_file() or any(p.glob("__main__.*.pyc"))
    try:
        with zipfile.ZipFile(p) as z:
            return any(n in z.namelist() for n in ("__main__.py", "__main__.pyc"))
    except (OSError, zipfile.BadZipFile):
        return False


def module_target(module: str, args: Sequence[str]) -> Target:
    """A module to run like `python -m module`, found as Python finds it: with the working
    folder first on sys.path (the installed `gradscope` command starts with its own folder
    there). Raises ScriptError when it cannot be found."""
    try:
        with _path0(os.getcwd()):
            spec = runpy._get_module_details(module)[1]  # the same lookup `python -m` does
    except ImportError as exc:
        raise ScriptError(f"gradscope: {exc}") from None
    except Exception as exc:  # a package __init__ that fails on import, for one
        raise ScriptError(f"gradscope: error while finding module {module!r}: {type(exc).__name__}: {exc}") from None
    return Target(argv=[spec.origin or module, *args], module=module)


@contextlib.contextmanager
def _path0(entry: str) -> Iterator[None]:
    saved = sys.path[:]
    sys.path[0:1] = [entry]
    try:
        yield
    finally:
        sys.path[:] = saved


def run(target: Target) -> Outcome:
    """Run `target` as `__main__` and return how it ended; never raises for the script's sake.
    An exception is shown (on the script's stderr, through its excepthook) before returning."""
    saved = sys.argv[:], sys.modules.get("__main__"), sys.excepthook, sys.stdout, sys.stderr
    sys.argv = list(target.argv)
    if target.module:
        first = os.getcwd()
    elif target.main_dir:
        first = str(target.path)
    else:
        first = str(Path(target.path).resolve().parent)
    try:
        with _path0(first):
            outcome, exc = _run_caught(target)
            flush_stdout()
            if exc is not None:
                outcome.exception = exc
                outcome.traceback = show_exception(exc, sys.excepthook, saved[2])
            elif outcome.traceback:  # sys.exit("message")
                write_stderr(outcome.traceback)
            return outcome
    finally:
        sys.argv = saved[0]
        if saved[1] is not None:
            sys.modules["__main__"] = saved[1]
        sys.excepthook = saved[2]
        sys.stdout, sys.stderr = _usable(saved[3], 1), _usable(saved[4], 2)


def _usable(stream, fd: int):
    """`stream` for gradscope's own output after the script, or, when the script closed
    it, a new one on the same file descriptor (left open by the closed one)."""
    if stream is None or not getattr(stream, "closed", False):
        return stream
    return open(fd, "w", encoding=getattr(stream, "encoding", None), errors="backslashreplace",
                closefd=False, buffering=1)


def _run_caught(target: Target) -> tuple[Outcome, BaseException | None]:
    """Run the target; its outcome, and the exception to show (None when there is none)."""
    try:
        if target.module:
            runpy.run_module(target.module, run_name="__main__", alter_sys=True, init_globals=_main_globals())
        elif target.main_dir:
            _run_main_dir()
        else:
            _exec_main(target)
    except SystemExit as exc:
        return _system_exit(exc), None
    except KeyboardInterrupt as exc:
        return Outcome(130, interrupted=True), exc
    except Terminated:  # Python prints nothing when SIGTERM ends it
        return Outcome(EXIT_TERMINATED, interrupted=True), None
    except BaseException as exc:  # the script's own error: show it like Python does
        return Outcome(1), exc
    return Outcome(0), None


def _main_globals() -> dict:
    """What Python's own `__main__` holds before any code runs, beyond name, file and spec."""
    return {"__builtins__": builtins, "__annotations__": {}}


def _exec_main(target: Target) -> None:
    """Run a script's code in a fresh `__main__` with the globals Python gives a script."""
    main = types.ModuleType("__main__")
    main.__file__ = str(target.path)
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", str(target.path))
    main.__cached__ = None  # type: ignore[attr-defined]
    main.__spec__ = None
    main.__dict__.update(_main_globals())
    sys.modules["__main__"] = main
    exec(target.code, main.__dict__)


def _run_main_dir() -> None:
    """Run the `__main__` module of the folder or zip now first on sys.path, as Python
    does for `python DIR` (argv[0] stays as given)."""
    saved_main = sys.modules.pop("__main__", None)
    try:  # Python's own lookup for this case; __main__ must be out of sys.modules for it
        _, spec, code = runpy._get_module_details("__main__")
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    runpy._run_code(code, main.__dict__, _main_globals(), "__main__", spec)


def _system_exit(exc: SystemExit) -> Outcome:
    """sys.exit(None) -> 0, sys.exit(n) -> n, sys.exit("message") -> message on stderr and 1."""
    code = exc.code
    if code is None:
        return Outcome(0)
    if isinstance(code, int):
        return Outcome(code)
    return Outcome(1, f"{code}\n")
