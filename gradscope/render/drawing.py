"""Draw many graphs within one time budget, in parallel child processes.

After a script ends, its distinct graphs are laid out here. The budget bounds the whole
drawing (a program whose graph changes every step can have hundreds of graphs, and an
unrolled RNN one that never lays out): graphs are started in the order given (the
caller puts the most useful first) on as many children as there are cores, and what the
budget does not reach is reported as not drawn, never waited for. Each child is in its
own process group, killed on every way out: done, out of time, Ctrl-C, SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Sequence

from ..signals import signals_held
from .layout import LayoutError, check_layout, start_layout, stop_layout, timeout_error

DEFAULT_BUDGET = 60.0
_POLL_S = 0.02


Key = tuple[str, int]  # what a job draws: ("pass", its index) or ("event", its index)


@dataclass
class Job:
    """One graph to draw: its DOT source and the SVG file it goes to."""

    key: Key
    source: str
    svg_path: Path


@dataclass
class Drawing:
    """What a drawing round gave: the SVG text (or the LayoutError) of each graph drawn,
    the keys the budget did not reach, and the signal exception that stopped it, if any."""

    svgs: dict[Key, str | LayoutError] = field(default_factory=dict)
    not_drawn: list[Key] = field(default_factory=list)
    stopped_by: BaseException | None = None


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    stderr: IO[bytes]
    dot_path: Path
    out_path: Path
    deadline: float  # its own timeout, or the budget's end, whichever comes first
    by_timeout: bool  # the deadline is the per-graph timeout (not the budget's end)


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def draw_all(jobs: Sequence[Job], budget: float = DEFAULT_BUDGET, timeout: float | None = None,
             workers: int | None = None, meanwhile: Callable[[], object] | None = None) -> Drawing:
    """Lay out `jobs` in order, `workers` at a time, all within `budget` seconds; each graph
    also within `timeout` seconds (then its DOT is kept beside its SVG and its entry is the
    LayoutError). KeyboardInterrupt and other BaseExceptions (the SIGTERM exception) stop
    the drawing at once; they are returned in `stopped_by`, not raised. Writes each SVG.
    `meanwhile()` is called once the first layouts run: the caller's work that needs no
    picture, done while Graphviz works (its errors are the caller's to find again)."""
    drawing = Drawing()
    workers = workers or available_cores()
    end = time.monotonic() + budget
    waiting = list(jobs)
    running: list[_Running] = []
    with tempfile.TemporaryDirectory(prefix="gradscope-draw-") as tmp:
        try:
            while waiting or running:
                now = time.monotonic()
                while waiting and len(running) < workers and now < end:
                    with signals_held():  # (a Ctrl-C as a child starts: after it is noted down)
                        running.append(_start(waiting[0], Path(tmp), now, end, timeout))
                        waiting.pop(0)
                for r in list(running):
                    if r.proc.poll() is not None:
                        running.remove(r)
                        drawing.svgs[r.job.key] = _finish(r)
                    elif now >= r.deadline:
                        running.remove(r)
                        stop_layout(r.proc)
                        r.stderr.close()
                        if r.by_timeout:
                            drawing.svgs[r.job.key] = timeout_error(timeout or budget, r.dot_path,
                                                                    r.job.svg_path.with_suffix(".dot"))
                        else:
                            drawing.not_drawn.append(r.job.key)
                if now >= end:  # the budget is spent: what did not start is not drawn
                    drawing.not_drawn += [j.key for j in waiting]
                    waiting = []
                if running and meanwhile is not None:
                    task, meanwhile = meanwhile, None
                    with contextlib.suppress(Exception):
                        task()
                elif running:
                    time.sleep(_POLL_S)
        except BaseException as exc:  # Ctrl-C or SIGTERM: stop at once, report what is done
            drawing.stopped_by = exc
            drawing.not_drawn += [r.job.key for r in running] + [j.key for j in waiting]
        finally:
            for r in running:
                stop_layout(r.proc)
                r.stderr.close()
    order = {j.key: n for n, j in enumerate(jobs)}
    drawing.not_drawn.sort(key=order.__getitem__)
    return drawing


def _start(job: Job, tmp: Path, now: float, end: float, timeout: float | None) -> _Running:
    stem = tmp / f"graph-{id(job):x}"
    dot_path, out_path = stem.with_suffix(".dot"), stem.with_suffix(".svg")
    dot_path.write_text(job.source, encoding="utf-8")
    stderr = open(stem.with_suffix(".err"), "w+b")
    by_timeout = timeout is not None and now + timeout < end
    deadline = now + timeout if timeout is not None and by_timeout else end
    return _Running(job, start_layout(dot_path, [out_path], stderr), stderr, dot_path, out_path,
                    deadline, by_timeout)


def _finish(r: _Running) -> str | LayoutError:
    """The SVG of a child that ended (written to its file), or the LayoutError it gave."""
    stop_layout(r.proc)  # reaps it, and anything it left in its group
    r.stderr.seek(0)
    err = r.stderr.read()
    r.stderr.close()
    try:
        check_layout(r.proc.returncode, err, r.dot_path, r.job.svg_path.with_suffix(".dot"))
    except LayoutError as exc:
        return exc
    svg = r.out_path.read_text(encoding="utf-8")
    r.job.svg_path.write_text(svg, encoding="utf-8")
    return svg
