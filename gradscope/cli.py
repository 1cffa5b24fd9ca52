"""The `gradscope` command: trace a script, re-render a saved trace, run the showcases.

Exit codes: the traced script's own (0, 1 for an exception, 130 for Ctrl-C, n for
sys.exit(n)); 2 for bad input to gradscope (one line on stderr, never a gradscope
traceback); 3 with --strict when the script succeeded but diagnostics were found.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from . import __version__, runner
from .model import Trace, TraceFormatError, load
from .render import EXTENSIONS, LayoutError, render
from .render.layout import DEFAULT_TIMEOUT
from .render.outdir import Written, write_outputs
from .render.text import summary

EXIT_BAD_INPUT = 2
EXIT_STRICT = 3
OUT_ROOT = Path("gradscope-out")
OUT_ENV = "GRADSCOPE_OUT"  # the output folder, for the script's own pictures

EPILOG = """\b
Examples:
  gradscope trace train.py --epochs 1     trace a script (its options go after it)
  gradscope trace -o out -m pkg.train     trace a module, write to out/
  gradscope demo                          list the showcases
  gradscope demo backward                 trace the lesson y = (x + w)(w + 1)
  gradscope render out/trace.json -o g.svg --pass 0
"""


class BadInput(Exception):
    """Something wrong with what the user gave gradscope: one line, exit 2."""


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="gradscope", message="%(prog)s %(version)s")
def cli() -> None:
    """gradscope: see how PyTorch autograd gets its numbers.

    Traces every backward pass of a script and writes the computation graph with the
    gradient and local derivative on every edge, an HTML report and diagnostics.
    """


# -- options shared by `trace` and `demo` ----------------------------------------------
def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-o", "--output", "output", type=click.Path(path_type=Path), metavar="DIR",
                     help="Output folder [default: gradscope-out/<script name>/]."),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True,
                     metavar="SECONDS", help="Time allowed to lay out each graph."),
        click.option("--strict", is_flag=True, help="Exit 3 if the script succeeded but a warning or error was found."),
        click.option("--ignore", "ignore", multiple=True, metavar="CODE",
                     help="Drop diagnostics with this code (repeatable)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@cli.command(context_settings=_PASS_THROUGH, short_help="Trace a script or module (-m) like python runs it.", epilog="\b\nExamples:\n  gradscope trace train.py --lr 0.1\n"
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


@cli.command(context_settings=_PASS_THROUGH, short_help="List the showcases, or trace one.")
@_run_options
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_one_line_errors
def demo(name: str | None, args: tuple[str, ...], **options: Any) -> None:
    """List the showcases, or trace showcase NAME like `gradscope trace` does.

    \b
    Examples:
      gradscope demo                list them
      gradscope demo backward       y = (x + w)(w + 1): w.grad = 2 + 3 = 5
    """
    examples = list_examples()
    if name is None:
        width = max((len(n) for n in examples), default=0)
        for ex_name, (_, description) in examples.items():
            click.echo(f"  {ex_name:<{width}}  {description}")
        click.echo("no showcases found" if not examples else "trace one: gradscope demo NAME [ARGS]", err=True)
        return
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
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="OUT",
              help="A file (.svg .png .dot .html) or a folder [default: the trace's folder].")
@click.option("--pass", "pass_index", type=int, default=None, metavar="N",
              help="The pass to draw [default: the last for a file; each distinct graph for a folder].")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Time allowed to lay out each graph.")
@_one_line_errors
def render_command(trace_file: Path, output: Path | None, pass_index: int | None, timeout: float) -> None:
    """Re-render a saved TRACE (trace.json) to a file or an output folder.

    \b
    Examples:
      gradscope render gradscope-out/train/trace.json
      gradscope render trace.json -o pass0.png --pass 0
    """
    saved = load(trace_file)
    out = output if output is not None else trace_file.parent
    if pass_index is not None and not any(p.index == pass_index for p in saved.passes):
        raise BadInput(f"gradscope: no pass {pass_index} in {trace_file} ({len(saved.passes)} passes)")
    if out.suffix.lower() in EXTENSIONS:
        position = -1 if pass_index is None else [p.index for p in saved.passes].index(pass_index)
        try:
            path = render(saved, out, pass_index=position, timeout=timeout)
        except ValueError as exc:
            raise BadInput(f"gradscope: {exc}") from None
        except OSError as exc:
            raise BadInput(f"gradscope: cannot write {out}: {exc.strerror or exc}") from None
        click.echo(f"gradscope: wrote {path}", err=True)
        return
    if out.suffix:
        raise BadInput(f"gradscope: cannot render to {out.name!r}: use one of {', '.join(EXTENSIONS)} or a folder")
    _check_writable(out)
    written = _write(saved, out, timeout, extra=[pass_index] if pass_index is not None else [])
    click.echo(summary(saved, written.files, trace_file.name), err=True)
    _report_layout_errors(written)
    if written.errors:
        sys.exit(EXIT_BAD_INPUT)


# -- the work behind `trace` and `demo` ------------------------------------------------
def _trace_and_write(target: runner.Target, output: Path | None, timeout: float, strict: bool,
                     ignore: Sequence[str]) -> None:
    out_dir = (output if output is not None else OUT_ROOT / target.name).absolute()
    _check_writable(out_dir)  # before the script runs: a long training run must not be wasted

    from .api import trace as gradscope_trace  # imports torch: only when tracing

    started = time.time()
    with gradscope_trace(_yields=True) as recorder, _output_folder_env(out_dir):
        outcome = runner.run(target)
    sys.stdout.flush()
    if outcome.traceback:
        sys.stderr.write(outcome.traceback)
        sys.stderr.flush()

    result = recorder.trace
    result.diagnostics = [d for d in result.diagnostics if d.code not in set(ignore)]
    result.meta.update(script=target.module or str(target.path), argv=target.argv[1:], exit_code=outcome.exit_code)
    json_path = out_dir / "trace.json"
    try:
        result.save(json_path)
    except OSError as exc:
        raise BadInput(f"gradscope: cannot write {json_path}: {exc.strerror or exc}") from None
    written = _write(result, out_dir, timeout, pictures=_pictures_saved(out_dir, since=started))
    click.echo(summary(result, [json_path, *written.files], target.name), err=True)
    _report_layout_errors(written)
    sys.exit(_exit_code(outcome.exit_code, result, written, strict))


def _exit_code(script_code: int, result: Trace, written: Written, strict: bool) -> int:
    """The script's code wins; then a graph that could not be drawn (2); then --strict (3)."""
    if script_code != 0:
        return script_code
    if written.errors:
        return EXIT_BAD_INPUT
    if strict and any(d.severity in ("warning", "error") for d in result.diagnostics):
        return EXIT_STRICT
    return 0


@contextlib.contextmanager
def _output_folder_env(out_dir: Path):
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


def _pictures_saved(out_dir: Path, since: float) -> list[Path]:
    """Images in `out_dir` written by this run, other than gradscope's own pictures."""
    found = []
    for path in sorted(out_dir.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".svg") or path.name.startswith("pass-"):
            continue
        try:
            if path.is_file() and path.stat().st_mtime >= since - 1:
                found.append(path)
        except OSError:
            continue
    return found


def _write(result: Trace, out_dir: Path, timeout: float, extra: Sequence[int] = (),
           pictures: Sequence[Path] = ()) -> Written:
    try:
        return write_outputs(result, out_dir, timeout, extra_passes=extra, pictures=pictures)
    except OSError as exc:
        raise BadInput(f"gradscope: cannot write to {out_dir}: {exc.strerror or exc}") from None


def _report_layout_errors(written: Written) -> None:
    for exc in written.errors:
        click.echo(str(exc), err=True)


def _check_writable(out_dir: Path) -> None:
    """Create `out_dir` and prove a file can be written there, or fail with one line."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except FileExistsError:
        raise BadInput(f"gradscope: output folder {out_dir} exists and is not a folder") from None
    except OSError as exc:
        raise BadInput(f"gradscope: cannot write to output folder {out_dir}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `gradscope` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="gradscope")


if __name__ == "__main__":
    main()
