"""``looptools report``: render a saved JSON report as text, Markdown, HTML, a trace or a
speedscope file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from looptools._jsonsafe import safe_text
from looptools._safewrite import why, write_file
from looptools.cli import colour_wanted
from looptools.cli._oneline import OneLineCommand
from looptools.report.load import ReportError, display_path, load_report
from looptools.report.render import (
    BUILTIN_RENDERERS,
    Renderer,
    RendererNotFound,
    TextRenderer,
    get_renderer_class,
    renderer_for_path,
)
from looptools.report.render._format import oneline

_FORMATS_HELP = "; ".join(f"{r.name}: {r.description}" for r in BUILTIN_RENDERERS)
_EXTENSIONS_HELP = ", ".join(f"{ext} → {r.name}" for r in BUILTIN_RENDERERS for ext in r.extensions)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2, the status click uses for bad usage."""
    click.echo(f"looptools report: {safe_text(oneline(message))}", err=True)
    sys.exit(2)


def _choose_renderer(fmt: str | None, output: str | None) -> type[Renderer]:
    if fmt is not None:
        try:
            return get_renderer_class(fmt)
        except RendererNotFound as exc:
            _fail(f"--format {fmt}: {exc}")
    if output is not None and output != "-":
        found = renderer_for_path(output)
        if found is None:
            _fail(f"-o {output}: cannot tell the format from this file name; "
                  f"pass --format (one of {', '.join(r.name for r in BUILTIN_RENDERERS)})")
        return found
    return TextRenderer


@click.command("report", cls=OneLineCommand,
               context_settings={"help_option_names": ["-h", "--help"]},
               epilog=f"Formats: {_FORMATS_HELP}. Inferred from -o: {_EXTENSIONS_HELP}.")
@click.argument("report_path", metavar="REPORT.json", type=str)
@click.option("-f", "--format", "fmt", metavar="FORMAT",
              help="text, md, html, trace, json or speedscope, or package.module:RendererClass "
                   "[default: from -o's extension, else text]")
@click.option("-o", "--output", metavar="PATH",
              help="Write here (atomically) instead of standard output; '-' is standard output.")
def report(report_path: str, fmt: str | None, output: str | None) -> None:
    """Render a saved looptools REPORT.json for a person, a CI summary, a browser or Perfetto.

    \b
      looptools report run.json                      # text on the terminal
      looptools report run.json -o run.html          # one self-contained HTML file
      looptools report run.json -o run.trace.json    # open in ui.perfetto.dev
      looptools report run.json -o run.speedscope.json  # stall stacks, for speedscope.app
      looptools report run.json -f md >> "$GITHUB_STEP_SUMMARY"
    """
    renderer_cls = _choose_renderer(fmt, output)
    try:
        data = load_report(report_path)
    except ReportError as exc:
        _fail(str(exc))
    to_stdout = output is None or output == "-"
    color = to_stdout and renderer_cls is TextRenderer and colour_wanted()
    try:
        text = renderer_cls(color=color).render(data)
    except Exception as exc:  # a plugin renderer's bug: name it, don't dump a traceback
        _fail(f"--format {renderer_cls.name or renderer_cls.__qualname__}: rendering "
              f"{display_path(report_path)} failed: {type(exc).__name__}: {exc}")
    if to_stdout:
        click.echo(text, nl=False, color=color)  # (click strips colour off a pipe unless told)
        return
    assert output is not None
    target = Path(output)
    try:
        write_file(output, text)  # atomic for a file; a device or FIFO written through
    except OSError as exc:
        _fail(f"-o {output}: cannot write: {why(exc, target)}")
    click.echo(f"wrote {display_path(target)} ({renderer_cls.name or renderer_cls.__qualname__})",
               err=True)
