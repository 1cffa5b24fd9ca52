"""SIGTERM turned into an exception while gradscope runs a script and draws its graphs,
so that what was captured is still written (then exit 143, as a shell reports a process
ended by SIGTERM). Ctrl-C needs nothing: Python raises KeyboardInterrupt already."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that `except Exception`
    in the user's code (or ours) does not swallow it."""


_owner_pid = 0  # the process that installed the handler


def _raise_terminated(signum: int, frame: object) -> None:
    if os.getpid() != _owner_pid:  # a child the script forked (a worker pool): die as Python would
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While active, SIGTERM raises Terminated in the main thread. A handler already set
    (SIG_IGN under nohup, or an embedding program's own) is left alone; the previous
    handler is put back on exit, whatever the script installed in between."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    global _owner_pid
    _owner_pid = os.getpid()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few statements that must not be cut in two (a
    child started and noted down: a Ctrl-C in between would leave a child nobody stops):
    one that arrives meanwhile is noted, and raised again as they end, to the handler
    there was. (Not by blocking it: with torch's threads in the process, the kernel hands
    a signal to a thread that does not block it, and Python acts on it all the same.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    held = [s for s, handler in saved.items() if handler not in (signal.SIG_IGN, None)]
    for s in held:
        signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, saved[s])
        for signum in arrived:
            signal.raise_signal(signum)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while the last outputs are written after a stop: a second
    Ctrl-C must not leave a run without its report. Handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def exit_code_of(exc: BaseException | None) -> int | None:
    """The exit code a stop by `exc` calls for, or None when nothing stopped us."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, Terminated):
        return EXIT_TERMINATED
    return None
