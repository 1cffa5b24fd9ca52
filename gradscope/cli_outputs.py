"""The output folder of `gradscope trace`: checked before the script runs, named to the
script while it runs (GRADSCOPE_OUT), written after; one line for what goes wrong."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import click

from .model import Trace
from .render.drawing import DEFAULT_BUDGET
from .render.outdir import Written, write_outputs

OUT_ENV = "GRADSCOPE_OUT"  # the output folder, for the script's own pictures


class BadInput(Exception):
    """Something wrong with what the user gave gradscope: one line, exit 2."""


@contextlib.contextmanager
def output_folder_env(out_dir: Path) -> Iterator[None]:
    """GRADSCOPE_OUT names the output folder while the script runs: pictures it saves there
    appear in the report."""
    previous = os.environ.get(OUT_ENV)
    os.environ[OUT_ENV] = str(out_dir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(OUT_ENV, None)
        else:
            os.environ[OUT_ENV] = previous


def pictures_saved(out_dir: Path, since: float) -> list[Path]:
    """Images in `out_dir` written by this run, other than gradscope's own pictures."""
    found = []
    for path in sorted(out_dir.iterdir() if out_dir.is_dir() else []):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".svg") or path.name.startswith("pass-"):
            continue
        try:
            if path.is_file() and path.stat().st_mtime >= since - 1:
                found.append(path)
        except OSError:
            continue
    return found


def write(result: Trace, out_dir: Path, timeout: float, extra: Sequence[int] = (),
           pictures: Sequence[Path] = (), budget: float = DEFAULT_BUDGET, trace_path: Path | None = None,
           view: dict[str, Any] | None = None) -> Written:
    try:
        return write_outputs(result, out_dir, timeout, extra_passes=extra, pictures=pictures,
                             budget=budget, trace_path=trace_path, view=view)
    except OSError as exc:
        raise BadInput(f"gradscope: cannot write to {out_dir}: {exc.strerror or exc}") from None


def report_layout_errors(written: Written) -> None:
    for exc in written.errors:
        click.echo(str(exc), err=True)
    if written.module_level:
        click.echo(f"gradscope: drawn as its module-level view (the view asked for did not lay out in time): "
                   f"pass {', '.join(map(str, written.module_level))}", err=True)
    if written.not_drawn:
        passes = ", ".join(map(str, written.not_drawn))
        why = "drawing was interrupted" if written.stopped_by else "the layout budget ran out (--layout-budget)"
        click.echo(f"gradscope: {len(written.not_drawn)} graph(s) not drawn, {why}: pass {passes}; "
                   f"the report says how to draw each later (gradscope render TRACE --pass N -o FILE.svg)", err=True)


def check_writable(out_dir: Path) -> None:
    """Create `out_dir` and prove a file can be written there, or fail with one line."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except FileExistsError:
        raise BadInput(f"gradscope: output folder {out_dir} exists and is not a folder") from None
    except OSError as exc:
        raise BadInput(f"gradscope: cannot write to output folder {out_dir}: {exc.strerror or exc}") from None
