"""Lay out DOT into SVG/PNG in a child process that is killed after a timeout.

Graphviz's layout cannot be interrupted from Python, and a big graph can take minutes
(measured: 2,000 nodes ≈ 1 s, 10,000 ≈ 60 s), so it never runs in our process. The
engine is the one bundled in the pygraphviz wheel; a `dot` on PATH is the alternative.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import IO, Sequence

from ..signals import signals_held

DEFAULT_TIMEOUT = 60.0
FORMATS = ("svg", "png")
_WORKER = Path(__file__).with_name("_layout_worker.py")


class GraphvizWarning(UserWarning):
    """Graphviz reported an error but still drew something (a label it could not parse)."""


class LayoutError(RuntimeError):
    """Layout failed or took too long. The message is one line for the user;
    `dot_path` is where the DOT source was left."""

    def __init__(self, message: str, dot_path: Path | None = None):
        super().__init__(message)
        self.dot_path = dot_path


def engine_command() -> list[str]:
    """The command that lays out `IN.dot` into output files given after it."""
    if importlib.util.find_spec("pygraphviz") is not None:
        # -I: ignore PYTHON* variables and the user's site; -S is not used because
        # pygraphviz lives in site-packages.
        return [sys.executable, "-I", str(_WORKER)]
    dot = shutil.which("dot")
    if dot is None:
        raise LayoutError("gradscope: no Graphviz found; install pygraphviz (pip install pygraphviz) "
                          "or put Graphviz's `dot` on PATH")
    return [dot]


def _dot_args(cmd: list[str], dot_path: Path, outputs: Sequence[Path]) -> list[str]:
    if cmd[0] == sys.executable:
        return [*cmd, str(dot_path), *map(str, outputs)]
    args = [*cmd]
    for out in outputs:
        args += [f"-T{out.suffix[1:]}", "-o", str(out)]
    return [*args, str(dot_path)]


def start_layout(dot_path: Path, outputs: Sequence[Path], stderr: IO[bytes]) -> subprocess.Popen:
    """Start laying out `dot_path` into `outputs` in a child process of its own process
    group (so `stop_layout` can kill it and anything it started), stderr to `stderr`."""
    for out in outputs:
        if out.suffix[1:] not in FORMATS:
            raise ValueError(f"cannot lay out to {out.name}: formats are {', '.join(FORMATS)}")
    env = dict(os.environ, GRADSCOPE_PARENT_PID=str(os.getpid()))  # the worker dies with us
    return subprocess.Popen(_dot_args(engine_command(), dot_path, outputs), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, env=env)


def stop_layout(proc: subprocess.Popen) -> None:
    """Kill a layout child's whole process group (a no-op when it has ended) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def check_layout(returncode: int, stderr: bytes, dot_path: Path, keep_as: Path | None = None) -> None:
    """Turn a finished layout's exit code and stderr into a LayoutError (failure) or a
    GraphvizWarning (a picture drawn despite errors)."""
    err = stderr.decode(errors="replace").strip().splitlines()
    if returncode == 0:
        problems = [line for line in err if line.startswith("Error")]
        if problems:  # a bad label still gives a picture; say so instead of hiding it
            warnings.warn(GraphvizWarning(f"Graphviz: {' / '.join(problems[:3])}"), stacklevel=3)
        return
    last = err[-1] if err else f"exit code {returncode}"
    kept = keep_dot(dot_path, keep_as)
    raise LayoutError(f"gradscope: Graphviz could not lay out {kept}: {last}", kept)


def timeout_error(timeout: float, dot_path: Path, keep_as: Path | None = None) -> LayoutError:
    """The error for a graph whose layout ran past `timeout` (its DOT kept)."""
    kept = keep_dot(dot_path, keep_as)
    return LayoutError(
        f"gradscope: graph layout did not finish in {timeout:g} s (graph too large); "
        f"the DOT is at {kept}; raise the limit with --timeout SECONDS (Python: timeout=SECONDS)",
        kept,
    )


def layout_file(dot_path: Path, outputs: Sequence[Path], timeout: float = DEFAULT_TIMEOUT,
                keep_as: Path | None = None) -> None:
    """Lay out the DOT file at `dot_path` and write each of `outputs` (format by suffix).

    Raises LayoutError (one line: what happened, where the DOT is, how to raise the
    timeout) when Graphviz fails or runs longer than `timeout` seconds. With `keep_as`,
    the DOT is copied there on failure and the message names that copy.
    """
    with tempfile.TemporaryFile() as stderr:
        proc = None
        try:
            with signals_held():  # (a Ctrl-C as the child starts: once `proc` is set)
                proc = start_layout(dot_path, outputs, stderr)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise timeout_error(timeout, dot_path, keep_as) from None
        finally:  # also on Ctrl-C: no layout child outlives us
            if proc is not None:
                stop_layout(proc)
        stderr.seek(0)
        check_layout(proc.returncode, stderr.read(), dot_path, keep_as)


def keep_dot(dot_path: Path, keep_as: Path | None) -> Path:
    if keep_as is None or keep_as == dot_path:
        return dot_path
    shutil.copyfile(dot_path, keep_as)
    return keep_as


def layout(source: str, fmt: str = "svg", timeout: float = DEFAULT_TIMEOUT, dot_path: Path | None = None) -> bytes:
    """Lay out DOT `source` and return the `fmt` output's bytes.

    Nothing is left behind on success. When layout fails, the DOT is saved to `dot_path`
    (or a kept temporary file) and the LayoutError names it.
    """
    with tempfile.TemporaryDirectory(prefix="gradscope-") as tmp:
        work = Path(tmp) / "graph.dot"
        work.write_text(source, encoding="utf-8")
        out = Path(tmp) / f"graph.{fmt}"
        if dot_path is None:  # a name only; the file is made when layout fails
            dot_path = Path(tempfile.gettempdir()) / f"gradscope-{uuid.uuid4().hex[:12]}.dot"
        layout_file(work, [out], timeout, keep_as=dot_path)
        return out.read_bytes()
