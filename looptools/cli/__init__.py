"""The ``looptools`` command line.

Subcommands live in their own modules and are imported only when used, so that
``looptools --version`` and ``looptools --help`` stay fast and a broken optional
dependency of one command cannot break the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from typing import Any

import click

from looptools._version import __version__
from looptools.cli._oneline import OneLineGroup


def colour_wanted(stream: Any = None) -> bool:
    """Colour (and rich layout) for ``stream`` (default stdout): ``NO_COLOR`` (non-empty)
    says no, ``FORCE_COLOR`` (non-empty) says yes (a CI log that renders colour), else a
    terminal that is not ``TERM=dumb``."""
    import os

    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return live_terminal(stream)


def live_terminal(stream: Any = None) -> bool:
    """A real terminal that can be redrawn (the dashboard): never forced by FORCE_COLOR."""
    import os

    stream = sys.stdout if stream is None else stream
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "profile": "looptools.cli.profile:profile",
    "dashboard": "looptools.cli.dashboard:dashboard",
    "ps": "looptools.cli.dashboard:ps",
    "report": "looptools.cli.report:report",
    "check": "looptools.cli.check:check",
    "baseline": "looptools.cli.check:baseline",
    "diff": "looptools.cli.check:diff",
    "doctor": "looptools.cli.doctor:doctor",
}


class FiniteFloat(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` and ``inf``, which pass its
    bounds (every comparison with NaN is false): a usage error, exit status 2."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _available() -> dict[str, str]:
    found = {}
    for name, target in _COMMANDS.items():
        module = target.split(":", 1)[0]
        if importlib.util.find_spec(module) is not None:
            found[name] = target
    return found


class _LazyGroup(OneLineGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_available())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _available().get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":", 1)
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="looptools")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Event-loop health for Qt + asyncio apps: stalls, slow callbacks, lag, tasks."""
    if ctx.invoked_subcommand is None:
        # Bare `looptools`: the help, and success (click's no_args_is_help exits 2).
        click.echo(ctx.get_help())
        ctx.exit(0)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``looptools`` script."""
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="looptools")
