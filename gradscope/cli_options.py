"""How the `gradscope` command reads its options: checked before the script runs, and every
usage error (an unknown option, a bad value, a missing argument) told in one line on
stderr with exit 2, never click's usage block or a traceback."""

from __future__ import annotations

import math
import sys
from typing import Any, NoReturn, Sequence

import click

EXIT_USAGE = 2
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 86_400.0  # a day: more is a typo, and overflows the timers it is handed to


class Seconds(click.ParamType):
    """A finite number of seconds between MIN_TIMEOUT and MAX_TIMEOUT (`nan`, `inf` and
    1e300 are refused here, not when a graph is laid out after the whole run)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
            self.fail(f"{value} is not between {MIN_TIMEOUT:g} and {MAX_TIMEOUT:g} seconds", param, ctx)
        return seconds


def known_codes(ctx: click.Context, param: click.Parameter, codes: Sequence[str]) -> Sequence[str]:
    """The `--ignore` callback: each code must be one a diagnostic rule can give."""
    from .diagnostics import CODES, CROSS_RANK_CODES

    for code in codes:
        if code not in CODES + CROSS_RANK_CODES:
            raise click.BadParameter(f"no diagnostic has the code {code!r}; "
                                     f"the codes are {', '.join(CODES + CROSS_RANK_CODES)}",
                                     ctx, param)
    return codes


def usage_exit(exc: click.UsageError) -> NoReturn:
    """`gradscope trace: No such option '--bogus'; see 'gradscope trace --help'`, exit 2."""
    ctx = exc.ctx
    command = ctx.command_path if ctx is not None else "gradscope"
    if ctx is not None and isinstance(ctx.command, click.Group) and ctx.invoked_subcommand:
        command += f" {ctx.invoked_subcommand}"  # a subcommand's parser blames the group: name the command
    message = " ".join(exc.format_message().split()).rstrip(".")  # "Did you mean" joins the line
    click.echo(f"{command}: {message}; see '{command} --help'", err=True)
    sys.exit(EXIT_USAGE)


# click 8.2+ raises this for a bare `gradscope`, to show the help (older click just shows it)
_SHOW_HELP = tuple(filter(None, [getattr(click.exceptions, "NoArgsIsHelpError", None)]))


class OneLineUsageGroup(click.Group):
    """A click group whose usage errors, its own and its commands', are one line (usage_exit)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if isinstance(exc, _SHOW_HELP):
                raise
            usage_exit(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if exc.ctx is None:  # click leaves it out of "Option '-o' requires an argument"
                exc.ctx = ctx
            usage_exit(exc)
