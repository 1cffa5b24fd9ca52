"""Renderers: the model in, pictures and reports out. Nothing here imports torch.

`render(trace, path)` picks the output by the file's extension: `.svg`, `.png` or
`.dot` for one pass's graph, `.html` for the report of the whole trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model import Trace
from .html import trace_to_html
from .layout import DEFAULT_TIMEOUT, LayoutError, layout
from .select import event_dot, pass_dot

EXTENSIONS = (".svg", ".png", ".dot", ".html")

__all__ = ["render", "LayoutError", "EXTENSIONS"]


def render(trace: Trace, path: str | Path, pass_index: int = -1, **options: Any) -> Path:
    """Write one pass's graph (`.svg`, `.png`, `.dot`) or the trace's report (`.html`) to `path`.

    `pass_index` picks the pass by position (negative counts from the end); a trace with no
    pass draws the graph its last error kept (`leaf_inplace`: the graph when `w.add_(1)` was
    refused). Options:
    `timeout` (seconds for layout, default 60); `depth` ("auto", a number, or None for
    every node), `expand` (module paths to open) and `fold` (draw repeated blocks once)
    choose which module calls are drawn as boxes (see collapse.py). Raises ValueError for an unknown
    extension or a pass that does not exist, and LayoutError when layout runs out of time
    (the DOT is then left beside `path`).
    """
    path = Path(path)
    timeout = float(options.pop("timeout", DEFAULT_TIMEOUT))
    view = {k: options.pop(k) for k in ("depth", "expand", "fold") if k in options}
    if options:
        raise TypeError(f"render() got unknown options: {', '.join(sorted(options))}")
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"cannot render to {path.name!r}: use one of {', '.join(EXTENSIONS)}")
    if ext == ".html":
        path.write_text(trace_to_html(trace, timeout=timeout), encoding="utf-8")
        return path
    if trace.passes:
        try:
            p = trace.passes[pass_index]
        except IndexError:
            raise ValueError(f"no pass {pass_index}: the trace has {len(trace.passes)} "
                             f"(0 to {len(trace.passes) - 1})") from None
        source = pass_dot(trace, p, **view)
    else:  # no backward ran, but an error kept the graph as it stood (a leaf edited in place)
        events = [i for i, e in enumerate(trace.events) if e.graph is not None]
        if not events:
            raise ValueError("the trace has no backward pass and no graph to draw")
        source = event_dot(trace, events[-1])
    if ext == ".dot":
        path.write_text(source, encoding="utf-8")
    else:
        path.write_bytes(layout(source, ext[1:], timeout=timeout, dot_path=path.with_suffix(".dot")))
    return path
