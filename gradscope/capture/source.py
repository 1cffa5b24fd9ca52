"""Finding the user's line of code behind an op, cheaply.

Every op the recorder sees asks "which line of the user's code ran this?". The answer is
the first frame, walking out from the op, whose file is neither torch nor gradscope.
Frames are walked, never kept, and `f_locals` is never read (that would keep graphs alive).
Each (file, line) becomes one shared `Source`, so the text is read once per line.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import sysconfig
from types import CodeType, FrameType, TracebackType

import torch

from ..model import Source
from ..notebook import notebook_cell

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL_DIRS = (
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
    _PACKAGE_DIR + os.sep,
)
# The showcases ship inside the package but are user code.
_USER_DIRS = (os.path.join(_PACKAGE_DIR, "examples") + os.sep,)
# Installed libraries (site-packages) and the standard library: an op they run is given
# the user's line that called into them, when there is one.
_LIBRARY_DIRS = tuple(sorted({
    os.path.abspath(p) + os.sep
    for p in (sysconfig.get_paths().get(k) for k in ("purelib", "platlib", "stdlib", "platstdlib")) if p
}))

_internal_by_file: dict[str, bool] = {}
_sources: dict[tuple, tuple] = {}  # (id of a code object, line) -> (that code object, its Source)

# `a = ...`, `self.h = ...`, `x: Tensor = ...`, `x += ...`; not `a == b` nor `f(a=1)`.
_ASSIGNMENT = re.compile(
    r"^\s*(?:self\.)?([A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*)\s*"
    r"(?::[^=]+)?(?:\+|-|\*|/|//|@|%|\*\*)?=(?!=)"
)


def _is_internal(filename: str) -> bool:
    internal = _internal_by_file.get(filename)
    if internal is None:
        path = os.path.abspath(filename) if not filename.startswith("<") else filename
        internal = (
            filename.startswith("<frozen")
            or (path.startswith(_INTERNAL_DIRS) and not path.startswith(_USER_DIRS))
        )
        _internal_by_file[filename] = internal
    return internal


# Code objects known to be torch's or gradscope's, and known to be the user's, by id():
# every frame walked, every op, is tested here, and hashing a code object hashes its
# constants. The code objects are kept (in `_codes_kept`), so that their ids stay theirs.
_internal_codes: set[int] = set()
_user_codes: set[int] = set()
_library_codes: set[int] = set()
_codes_kept: list = []


def _is_library(filename: str) -> bool:
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    return path.startswith(_LIBRARY_DIRS)


def user_frame(depth: int = 1) -> FrameType | None:
    """The innermost frame outside torch and gradscope, and outside installed libraries
    when user code called into them; or None."""
    frame: FrameType | None = sys._getframe(depth + 1)
    internal_codes, user_codes = _internal_codes, _user_codes
    library = None  # the innermost library frame, if no user frame is found
    while frame is not None:
        key = id(frame.f_code)
        if key in internal_codes:
            frame = frame.f_back
        elif key in user_codes:
            return frame
        elif key in _library_codes:
            library = library or frame
            frame = frame.f_back
        else:
            code = frame.f_code
            _codes_kept.append(code)
            if _is_internal(code.co_filename):
                internal_codes.add(key)
            elif _is_library(code.co_filename):
                _library_codes.add(key)
            else:
                user_codes.add(key)
    return library


def user_source_of(tb: TracebackType | None) -> Source | None:
    """The line of a traceback's innermost frame outside torch, gradscope and installed
    libraries (else outside torch and gradscope), or None."""
    user = library = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if not _is_internal(code.co_filename):
            if _is_library(code.co_filename):
                library = (code, tb.tb_lineno)
            else:
                user = (code, tb.tb_lineno)
        tb = tb.tb_next
    found = user or library
    return None if found is None else source_at(*found)


def source_of(frame: FrameType | None) -> Source | None:
    """The shared `Source` for a frame's current line."""
    return None if frame is None else source_at(frame.f_code, frame.f_lineno)


def source_at(code: CodeType, line: int) -> Source:
    """The shared `Source` for a line of a code object."""
    key = (id(code), line)
    kept = _sources.get(key)
    if kept is not None and kept[0] is code:
        return kept[1]
    src = Source(
        file=code.co_filename,
        line=line,
        code=linecache.getline(code.co_filename, line).strip(),
        function=code.co_name,
        cell=notebook_cell(code.co_filename),
    )
    _sources[key] = (code, src)  # (the code object kept with it: its id stays its own)
    return src


def user_source(depth: int = 1) -> Source | None:
    """The user's line that is running now."""
    return source_of(user_frame(depth + 1))


def assignment_target(code: str) -> str | None:
    """`a = torch.add(w, x)` -> "a"; `self.h = ...` -> "h"; None when the line assigns nothing."""
    m = _ASSIGNMENT.match(code)
    return m.group(1) if m else None
