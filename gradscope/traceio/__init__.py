"""Reading and writing trace files (trace.json).

`save` writes format version 2 (`v2`: each graph structure once, each pass as its
numbers) as standard JSON; `load` reads versions 1 and 2 and a stream that a killed run
left behind (`stream`), checking every field (`decode`), so a bad or crafted file gives
one `TraceFormatError` line, never a traceback or a broken report.
"""

from __future__ import annotations

import contextlib
import gc
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from ..model import FORMAT, Trace, TraceFormatError
from . import v2, v2_read
from .decode import Malformed, check_trace, decode, malformed
from .jsonio import dumps, write_atomically
from .keep import HELD_KEY

VERSION = v2.VERSION
HEADER = {"format": FORMAT, "version": VERSION}

__all__ = ["save", "load", "to_dict", "from_dict", "dumps", "VERSION"]


def to_dict(trace: Trace) -> dict[str, Any]:
    """The trace as version-2 plain data (JSON types; floats may be non-finite)."""
    return v2.to_dict(trace, HEADER)


def save(trace: Trace, path: str | Path) -> Path:
    """Write `trace` to `path` as standard JSON, replacing any file there in one step."""
    from .stream import assembled  # (a trace streamed as it ran: its passes are written already)

    path = Path(path)
    text = assembled(trace, HEADER)
    if text is None:
        data = to_dict(trace)
        if HELD_KEY in data["meta"]:  # a held run whose stream failed: the file is the sample
            meta = data["meta"] = dict(data["meta"])
            del meta[HELD_KEY]  # (it says the file has every pass)
            meta["sampling"] = (f"only the {len(trace.passes):,} passes held in memory were saved, of the run's "
                                f"{trace.passes[-1].index + 1 if trace.passes else 0:,}: its stream could not be "
                                f"read back")
        text = dumps(data)
    write_atomically(path, text)
    return path


def from_dict(data: Any) -> Trace:
    """A trace from plain data of any version this gradscope reads."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TraceFormatError("not a gradscope trace (no 'format': 'gradscope-trace' field)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TraceFormatError("gradscope trace has no valid 'version' field")
    if version > VERSION:
        raise TraceFormatError(
            f"trace format version {version} is newer than this gradscope reads ({VERSION}); upgrade gradscope"
        )
    try:
        if version == 1:
            trace = decode(Trace, {k: v for k, v in data.items() if k not in ("format", "version")})
        else:
            trace = v2_read.from_dict(data)
        check_trace(trace)
        return trace
    except Malformed as exc:
        raise malformed(exc) from None
    except RecursionError:
        raise TraceFormatError("gradscope trace is malformed: nested too deeply") from None


def load(path: str | Path, diagnose: Callable[[Trace], list] | None = None) -> Trace:
    """Read a trace file: a saved trace.json, or the stream a killed run left behind
    (whose diagnostics were never written: `diagnose` finds them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceFormatError(f"{path}: is a directory, not a trace file") from None
    except UnicodeDecodeError:
        raise TraceFormatError(f"{path}: not a gradscope trace (not text)") from None
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with _collector_paused():
        return _parse(path, text, diagnose)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading a trace makes millions of objects and no garbage: the cyclic collector, let
    run, would walk the whole process's heap (a training run's) again and again meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(path: Path, text: str, diagnose: Callable[[Trace], list] | None) -> Trace:
    from .stream import STREAM_KEY, read_stream

    try:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            first = _first_line(text)
            if isinstance(first, dict) and first.get(STREAM_KEY) is True:
                return read_stream(text, diagnose)
            raise TraceFormatError(f"not a gradscope trace (invalid JSON: {exc.msg} at line {exc.lineno})") from None
        except (RecursionError, ValueError):  # nesting past the parser's limit; integers of 4,300+ digits
            raise TraceFormatError("not a gradscope trace (JSON nested too deeply or numbers too long)") from None
        if isinstance(data, dict) and data.get(STREAM_KEY) is True:
            return read_stream(text, diagnose)  # a stream holding only its header
        return from_dict(data)
    except TraceFormatError as exc:
        raise TraceFormatError(f"{path}: {exc}") from None


def _first_line(text: str) -> Any:
    try:
        return json.loads(text.split("\n", 1)[0])
    except (ValueError, RecursionError):
        return None
