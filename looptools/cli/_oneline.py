"""Usage errors in one line, on every command (click's own span four: Usage, Try, a
blank line, Error), naming the command: ``looptools report: No such option '--bogus'.
(see 'looptools report --help')``, exit status 2."""

from __future__ import annotations

from typing import Any

import click

EXIT_USAGE = 2


def _usage_error(name: str, exc: click.UsageError) -> click.exceptions.Exit:
    where = f"looptools {name}" if name else "looptools"
    click.echo(f"{where}: {exc.format_message()} (see '{where} --help')", err=True)
    return click.exceptions.Exit(EXIT_USAGE)


class OneLineCommand(click.Command):
    """A command whose usage errors are one line."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _usage_error(info_name or self.name or "", exc) from None


class OneLineGroup(click.Group):
    """The ``looptools`` group: its own usage errors (an unknown command or option) are
    one line too."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _usage_error("", exc) from None

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _usage_error("", exc) from None
