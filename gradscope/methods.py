"""The model's methods that reach other layers: saving and loading (traceio), drawing
(render), and diagnosing what a killed run left behind (diagnostics).

The model (model.py) is plain data and imports no other part of gradscope; these methods
are attached to its classes here, in the top layer, when the `gradscope` package is
imported (its `__init__` does it first, so any import of `gradscope.model` has them). Each
imports what it needs when called: loading or drawing a trace never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import model
from .model import Graph, Pass, Trace


def graph_repr_svg(self: Graph) -> str:
    from .render.notebook import graph_svg

    return graph_svg(self)


def graph_render(self: Graph, path: str | Path, depth: int | str | None = "auto", expand: tuple[str, ...] = (),
                 fold: bool = True, **options: Any) -> Path:
    """Draw this graph to `path` (`.svg`, `.png`, `.dot`); options as `Trace.render`."""
    from .render.graph import render_graph

    return render_graph(self, path, depth=depth, expand=tuple(expand), fold=fold, **options)


def pass_repr_html(self: Pass) -> str:
    from .render.notebook import pass_html

    return pass_html(self)


def trace_to_dict(self: Trace) -> dict[str, Any]:
    """This trace as plain data in the current file format (version 2)."""
    from .traceio import to_dict

    return to_dict(self)


def trace_save(self: Trace, path: str | Path) -> Path:
    """Write this trace as versioned, standard JSON and return the path."""
    from .traceio import save

    return save(self, path)


def trace_from_dict(cls: type[Trace], data: Any) -> Trace:
    """A trace from plain data of any file format version (every field checked)."""
    from .traceio import from_dict

    return from_dict(data)


def trace_render(self: Trace, path: str | Path, pass_index: int = -1, depth: int | str | None = "auto",
                 expand: tuple[str, ...] = (), fold: bool = True, **options: Any) -> Path:
    """Render one pass (`.svg`, `.png`, `.dot`) or the whole trace (`.html`), chosen by extension.

    `depth`: draw module calls deeper than this as one box each ("auto": the deepest
    that keeps the picture to 150 boxes, small graphs in full; None: every node);
    `expand`: module paths to open whatever the depth; `fold`: draw consecutive calls of
    same-structure modules (a transformer's blocks) once, marked ×N."""
    from .render import render

    return render(self, path, pass_index=pass_index, depth=depth, expand=tuple(expand), fold=fold, **options)


def trace_repr_html(self: Trace) -> str:
    from .render.html import trace_to_html

    return trace_to_html(self, standalone=False)


def load(path: str | Path) -> Trace:
    """Read a trace written by `Trace.save` (or `gradscope trace`), or what a killed run
    left behind; raises TraceFormatError (one line) for anything else."""
    from .diagnostics import diagnose
    from .traceio import load as load_file

    return load_file(path, diagnose=diagnose)


def attach() -> None:
    """Give the model classes their methods (idempotent)."""
    for cls, name, function in (
        (Graph, "_repr_svg_", graph_repr_svg),
        (Graph, "render", graph_render),
        (Pass, "_repr_html_", pass_repr_html),
        (Trace, "to_dict", trace_to_dict),
        (Trace, "save", trace_save),
        (Trace, "from_dict", classmethod(trace_from_dict)),
        (Trace, "render", trace_render),
        (Trace, "_repr_html_", trace_repr_html),
    ):
        if not isinstance(function, classmethod):
            function.__name__ = name
            function.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, function)
    model.load = load  # (so that `from gradscope.model import load` keeps working)


attach()
