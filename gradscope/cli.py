"""The `gradscope` command: trace a script, re-render a saved trace, run the showcases.

Exit codes: the traced script's own (0, 1 for an exception, 130 for Ctrl-C, n for
sys.exit(n)); 2 for bad input to gradscope (one line on stderr, never a gradscope
traceback); 3 with --strict when the script succeeded but diagnostics were found; 130
or 143 when Ctrl-C or SIGTERM stops the drawing. A graph not drawn is only a note.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from . import __version__, distributed, runner
from .cli_options import OneLineUsageGroup, Seconds, known_codes
from .cli_outputs import BadInput, check_writable, output_folder_env, pictures_saved, report_layout_errors, write
from .model import Trace, TraceFormatError, load
from .render import EXTENSIONS, LayoutError, render
from .render.drawing import DEFAULT_BUDGET
from .render.layout import DEFAULT_TIMEOUT
from .render.outdir import Written
from .render.text import summary
from .signals import exit_code_of, signals_deferred, sigterm_raises

EXIT_BAD_INPUT = 2
EXIT_STRICT = 3
OUT_ROOT = Path("gradscope-out")
# passes a run holds in memory for its report's pictures (about twice this while it runs);
# trace.json gets every pass from the stream, the charts over time every pass's numbers.
# A run this short (the showcases: logistic regression takes 141 steps) holds them all.
HOLD_PASSES = 200

EPILOG = """\b
Examples:
  gradscope trace train.py --epochs 1     trace a script (its options go after it)
  gradscope trace -o out -m pkg.train     trace a module, write to out/
  gradscope demo                          list the showcases
  gradscope demo backward                 trace the lesson y = (x + w)(w + 1)
  gradscope render out/trace.json -o g.svg --pass 0
"""


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn BadInput, trace-format and layout errors into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BadInput, runner.ScriptError, LayoutError) as exc:
            _fail(str(exc))
        except TraceFormatError as exc:
            _fail(f"gradscope: {exc}")

    return wrapper


@click.group(cls=OneLineUsageGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="gradscope", message="%(prog)s %(version)s")
def cli() -> None:
    """gradscope: see how PyTorch autograd gets its numbers.

    Traces every backward pass of a script and writes the computation graph with the
    gradient and local derivative on every edge, an HTML report and diagnostics.
    """


class OutputPath(click.Path):
    """A path for -o: an empty one is an error (it would silently mean the working folder)."""

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path; name a folder, e.g. -o out", param, ctx)
        return super().convert(value, param, ctx)


# -- options shared by `trace` and `demo` ----------------------------------------------
def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-o", "--output", "output", type=OutputPath(), metavar="DIR",
                     help="Output folder [default: gradscope-out/<script name>/]."),
        click.option("--timeout", type=Seconds(), default=DEFAULT_TIMEOUT, show_default=True,
                     metavar="SECONDS", help="Time allowed to lay out each graph."),
        click.option("--layout-budget", "layout_budget", type=Seconds(), default=DEFAULT_BUDGET,
                     show_default=True, metavar="SECONDS",
                     help="Time allowed to draw all graphs after the script; the rest can be drawn later."),
        click.option("--strict", is_flag=True, help="Exit 3 if the script succeeded but a warning or error was found."),
        click.option("--ignore", "ignore", multiple=True, metavar="CODE", callback=known_codes,
                     help="Drop diagnostics with this code (repeatable)."),
        click.option("--max-passes", "max_passes", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Keep at most about N passes of a long run (first, last, every k-th, diagnosed)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# `trace`: gradscope's options before SCRIPT, everything after it is the script's.
_PASS_THROUGH = {"allow_interspersed_args": False}
# `demo`: the showcases are ours and none has an option of gradscope's name, so gradscope's
# options are taken after NAME too (`gradscope demo backward -o out`); others go to the demo.
_DEMO_ARGS = {"ignore_unknown_options": True, "allow_interspersed_args": True}


@cli.command(context_settings=_PASS_THROUGH, short_help="Trace a script or module (-m) like python runs it.",
             epilog="\b\nExamples:\n  gradscope trace train.py --lr 0.1\n"
             "  gradscope trace --strict -o out -m mypkg.train")
@click.option("-m", "as_module", is_flag=True, help="SCRIPT is a module name, run like `python -m`.")
@_run_options
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_one_line_errors
def trace(as_module: bool, script: str, args: tuple[str, ...], **options: Any) -> None:
    """Run SCRIPT (with its ARGS) like `python SCRIPT ARGS` and record every backward.

    Options go before SCRIPT; everything after SCRIPT is passed to it. Writes
    trace.json, report.html and one SVG per distinct graph to the output folder, and
    exits with the script's own exit code.
    """
    try:
        target = runner.module_target(script, args) if as_module else runner.script_target(script, args)
    except SyntaxError as exc:  # shown as Python shows it, and exit 1 like Python
        click.echo("".join(traceback.format_exception_only(type(exc), exc)), err=True, nl=False)
        sys.exit(1)
    _trace_and_write(target, **options)


@cli.command(context_settings=_DEMO_ARGS, short_help="List the showcases, or trace one.")
@_run_options
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_one_line_errors
def demo(name: str | None, args: tuple[str, ...], **options: Any) -> None:
    """List the showcases, or trace showcase NAME like `gradscope trace` does.

    gradscope's options may come before or after NAME; other arguments go to the showcase.

    \b
    Examples:
      gradscope demo                list them
      gradscope demo backward       y = (x + w)(w + 1): w.grad = 2 + 3 = 5
      gradscope demo logistic_regression -o out --max-iterations 50
    """
    examples = list_examples()
    if name is None:
        width = max((len(n) for n in examples), default=0)
        for ex_name, (_, description) in examples.items():
            click.echo(f"  {ex_name:<{width}}  {description}")
        click.echo("no showcases found" if not examples else "trace one: gradscope demo NAME [ARGS]", err=True)
        return
    if name.startswith("-"):  # an option click passed through: not one of gradscope's
        raise click.NoSuchOption(name)
    if name not in examples:
        raise BadInput(f"gradscope: no showcase named {name!r}; choose one of: {', '.join(examples) or 'none'}")
    _trace_and_write(runner.script_target(examples[name][0], args), **options)


def list_examples() -> dict[str, tuple[Path, str]]:
    """The showcases of `gradscope.examples`: name -> (file, first line of its docstring).

    The docstring is read by parsing, not importing, so listing runs none of them.
    """
    from . import examples

    found = {}
    for path in sorted(Path(examples.__file__).parent.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (SyntaxError, UnicodeDecodeError, OSError):
            doc = ""
        found[path.stem] = (path, doc.strip().splitlines()[0] if doc.strip() else "")
    return found


@cli.command("render", short_help="Re-render a saved trace.json.")
@click.argument("trace_file", metavar="TRACE", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=OutputPath(), metavar="OUT",
              help="A file (.svg .png .dot .html) or a folder [default: the trace's folder].")
@click.option("--pass", "pass_index", type=int, default=None, metavar="N",
              help="The pass to draw [default: the last for a file; each distinct graph for a folder].")
@click.option("--timeout", type=Seconds(), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Time allowed to lay out each graph.")
@click.option("--depth", default="auto", show_default=True, metavar="N|auto|full",
              help="Draw module calls deeper than N as one box each; 'full' draws every node.")
@click.option("--expand", multiple=True, metavar="PATH",
              help="Open this module (e.g. encoder.layers.3) whatever the depth; repeatable.")
@click.option("--no-fold", is_flag=True, help="Draw repeated blocks one by one, not once marked ×N.")
@_one_line_errors
def render_command(trace_file: Path, output: Path | None, pass_index: int | None, timeout: float,
                   depth: str, expand: tuple[str, ...], no_fold: bool) -> None:
    """Re-render a saved TRACE (trace.json) to a file or an output folder.

    \b
    Examples:
      gradscope render gradscope-out/train/trace.json
      gradscope render trace.json -o pass0.png --pass 0
      gradscope render trace.json -o g.svg --depth 1 --expand blocks.3 --no-fold
    """
    view = {"depth": _depth_option(depth), "expand": expand, "fold": not no_fold}
    saved = load(trace_file)
    out = output if output is not None else trace_file.parent
    if pass_index is not None and not any(p.index == pass_index for p in saved.passes):
        raise BadInput(f"gradscope: no pass {pass_index} in {trace_file} ({len(saved.passes)} passes)")
    if out.suffix.lower() in EXTENSIONS:
        position = -1 if pass_index is None else [p.index for p in saved.passes].index(pass_index)
        try:
            path = render(saved, out, pass_index=position, timeout=timeout, **view)
        except ValueError as exc:
            raise BadInput(f"gradscope: {exc}") from None
        except OSError as exc:
            raise BadInput(f"gradscope: cannot write {out}: {exc.strerror or exc}") from None
        click.echo(f"gradscope: wrote {path}", err=True)
        return
    if out.suffix:
        raise BadInput(f"gradscope: cannot render to {out.name!r}: use one of {', '.join(EXTENSIONS)} or a folder")
    check_writable(out)
    with sigterm_raises():
        written = write(saved, out, timeout, extra=[pass_index] if pass_index is not None else [],
                         trace_path=trace_file, view=view)
    with signals_deferred():
        click.echo(summary(saved, written.files, trace_file.name), err=True)
        report_layout_errors(written)
    stopped = exit_code_of(written.stopped_by)
    if stopped is not None or written.errors:
        sys.exit(stopped or EXIT_BAD_INPUT)


@cli.command("stats", short_help="Per-parameter gradient norms over a saved trace's passes.")
@click.argument("trace_file", metavar="TRACE", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_one_line_errors
def stats_command(trace_file: Path, as_json: bool) -> None:
    """Print, per parameter of TRACE (trace.json), its gradient norm over the passes
    (first, last, min, max), NaN/Inf passes and a verdict, worst first."""
    from .render.stats import stats_json, stats_table
    from .traceio import dumps

    saved = load(trace_file)
    click.echo(dumps(stats_json(saved)) if as_json else stats_table(saved))


# -- the work behind `trace` and `demo` ------------------------------------------------
def _trace_and_write(target: runner.Target, output: Path | None, timeout: float, strict: bool,
                     ignore: Sequence[str], layout_budget: float = DEFAULT_BUDGET,
                     max_passes: int | None = None) -> None:
    root = (output if output is not None else OUT_ROOT / target.name).absolute()
    ranks = distributed.rank_and_world()  # under torchrun: each rank its own folder
    out_dir = distributed.rank_folder(root, ranks[0]) if ranks else root
    check_writable(out_dir)  # before the script runs: a long training run must not be wasted

    from .api import trace as gradscope_trace  # imports torch: only when tracing

    started, pid = time.time(), os.getpid()
    with sigterm_raises(), _startup_objects_frozen(until_exit=_process_ends()):
        with gradscope_trace(stream=out_dir / "trace.json", keep=max_passes, _yields=True,
                             _hold=HOLD_PASSES) as recorder, \
                output_folder_env(out_dir):
            outcome = runner.run(target)
            if outcome.exception is not None:
                recorder._script_failed(outcome.exception)
        if os.getpid() != pid:  # a child the script forked came back here: the parent writes
            sys.exit(outcome.exit_code)

        result = recorder.trace
        if ranks is None and (ranks := distributed.rank_and_world()):  # a group the script set up
            out_dir = distributed.rank_folder(root, ranks[0])
        missing = _across_ranks(result, root, ranks)
        result.diagnostics = [d for d in result.diagnostics if d.code not in set(ignore)]
        result.meta.update(script=target.module or str(target.path), argv=target.argv[1:],
                           exit_code=outcome.exit_code)
        json_path = out_dir / "trace.json"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)  # the script may have removed it
            result.save(json_path)
        except OSError as exc:
            raise BadInput(f"gradscope: cannot write {json_path}: {exc.strerror or exc}") from None
        written = write(result, out_dir, timeout, pictures=pictures_saved(out_dir, since=started),
                         budget=layout_budget, trace_path=json_path)
        if ranks and ranks[0] == 0:
            written.files.insert(0, distributed.write_index(root, ranks[1], result.diagnostics, missing))
    with signals_deferred():
        click.echo(summary(result, [json_path, *written.files], target.name), err=True)
        report_layout_errors(written)
    sys.exit(_exit_code(outcome.exit_code, result, written, strict))


@contextlib.contextmanager
def _startup_objects_frozen(until_exit: bool) -> Any:
    """The objects of this process before the script runs (torch's and gradscope's, some
    170,000) left out of the cyclic collector's full passes while the script and its trace
    run (`gc.freeze`, as servers do before forking): a traced run keeps its passes, and each
    full collection they set off would walk all of torch again. The script's own objects are
    collected as ever. All are unfrozen at the end, unless `until_exit` (the process ends
    with the command): then the interpreter's last collections at exit skip torch's objects
    (the traced transformer's exit took 1.2 s, now 0.6 s; a plain run's 1.0 s), and the
    script's objects are finalized as in a plain run. (Not in `gradscope.trace()`: the
    collector's view of objects made before the block is the user's there.)"""
    freeze = gc.isenabled() and gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze and not until_exit:
            gc.unfreeze()


def _process_ends() -> bool:
    """Does this process end with the command (`gradscope ...`, `python -m gradscope.cli`),
    not a caller's `main(argv)` that goes on?"""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().obj is _PROCESS_COMMAND)


def _across_ranks(result: Trace, root: Path, ranks: tuple[int, int] | None) -> list[int]:
    """One rank of several: share its gradients; rank 0 compares them with the others'
    (a diagnostic where DDP's promise of equal gradients is broken). The ranks that did not
    answer in time."""
    if ranks is None:
        return []
    rank, world = ranks
    distributed.share_gradients(result, root, rank)
    if rank != 0:
        return []
    found, missing = distributed.compare_ranks(result, root, world)
    result.diagnostics += found
    return missing


def _exit_code(script_code: int, result: Trace, written: Written, strict: bool) -> int:
    """A stop while drawing (Ctrl-C 130, SIGTERM 143), else the script's code; --strict (3)
    only when the script succeeded. A graph not drawn is a note, never an exit code."""
    stopped = exit_code_of(written.stopped_by)
    if stopped is not None:
        return stopped
    if script_code != 0:
        return script_code
    if strict and any(d.severity in ("warning", "error") for d in result.diagnostics):
        return EXIT_STRICT
    return 0


def _depth_option(text: str) -> int | str | None:
    """`--depth`: "auto", "full" (every node) or a whole number."""
    if text in ("auto", "full"):
        return None if text == "full" else text
    try:
        depth = int(text)
    except ValueError:
        depth = -1
    if depth < 0:
        raise BadInput(f"gradscope: --depth must be a whole number, 'auto' or 'full', not {text!r}")
    return depth


_PROCESS_COMMAND = object()  # click's `obj` when the process is the command (see `_process_ends`)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `gradscope` command (`argv` None: the process's own arguments,
    and the process ends with the command)."""
    if argv is None:
        cli.main(prog_name="gradscope", obj=_PROCESS_COMMAND)
    else:
        cli.main(args=list(argv), prog_name="gradscope")


if __name__ == "__main__":
    main()
