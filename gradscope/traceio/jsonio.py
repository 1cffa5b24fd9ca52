"""Trace data <-> standard JSON text, and files written whole or not at all.

Standard JSON has no NaN or Infinity, yet gradients are exactly where they turn up. A
non-finite float is written as the string "NaN", "Infinity" or "-Infinity" where the
model holds numbers (summaries, values, Jacobians), and as `{"$float": "NaN"}` inside
free-form data (`meta`, an event's `data`), where a string could be meant as a string.
`decode` turns both back into floats.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .decode import FLOAT_MARK

FREE_FORM_KEYS = ("meta", "data", "saved")  # saved: what a node saved for its backward, by name


def dumps(data: Any) -> str:
    """Compact standard JSON (no bare NaN/Infinity)."""
    try:
        return _ENCODE(data)
    except ValueError:  # a non-finite float somewhere: the walk below costs only then
        return _ENCODE(standard(data))


# (one encoder for every call: `json.dumps` with options makes one per call, a good share
# of a small record's time, and a stream writes a few records a pass)
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def standard(obj: Any, free: bool = False) -> Any:
    """`obj` with every non-finite float replaced by its standard-JSON stand-in."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        word = "NaN" if obj != obj else "Infinity" if obj > 0 else "-Infinity"
        return {FLOAT_MARK: word} if free else word
    if isinstance(obj, dict):
        return {k: standard(v, free or k in FREE_FORM_KEYS) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [standard(v, free) for v in obj]
    return obj


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader (or a crash) sees the old file or the new
    one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # named after the file the caller asked for, not our temporary one
        tmp.unlink(missing_ok=True)
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
