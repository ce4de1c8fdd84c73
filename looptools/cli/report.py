"""``looptools report``: render a saved JSON report as text, Markdown, HTML or a trace."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from looptools.render import (
    BUILTIN_RENDERERS,
    Renderer,
    RendererNotFound,
    TextRenderer,
    get_renderer_class,
    renderer_for_path,
)
from looptools.report_io import ReportError, display_path, load_report

_FORMATS_HELP = "; ".join(f"{r.name}: {r.description}" for r in BUILTIN_RENDERERS)
_EXTENSIONS_HELP = ", ".join(f"{ext} → {r.name}" for r in BUILTIN_RENDERERS for ext in r.extensions)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2, the status click uses for bad usage."""
    click.echo(f"looptools report: error: {message}", err=True)
    sys.exit(2)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, text: str) -> None:
    """Write *text* to *path* via a temporary file in the same directory and ``os.replace``.

    Readers (a browser reloading the HTML, a CI step uploading it) never see a
    half-written file, and a failed write leaves any previous file untouched.
    """
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        # mkstemp creates 0600; give the result the mode a plain open() would.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]},
               epilog=f"Formats: {_FORMATS_HELP}. Inferred from -o: {_EXTENSIONS_HELP}.")
@click.argument("report_path", metavar="REPORT.json", type=str)
@click.option("-f", "--format", "fmt", metavar="FORMAT",
              help="text, md, html, trace or json, or package.module:RendererClass "
                   "[default: from -o's extension, else text]")
@click.option("-o", "--output", metavar="PATH",
              help="Write here (atomically) instead of standard output; '-' is standard output.")
def report(report_path: str, fmt: str | None, output: str | None) -> None:
    """Render a saved looptools REPORT.json for a person, a CI summary, a browser or Perfetto.

    \b
      looptools report run.json                      # text on the terminal
      looptools report run.json -o run.html          # one self-contained HTML file
      looptools report run.json -o run.trace.json    # open in ui.perfetto.dev
      looptools report run.json -f md >> "$GITHUB_STEP_SUMMARY"
    """
    renderer_cls = _choose_renderer(fmt, output)
    try:
        data = load_report(report_path)
    except ReportError as exc:
        _fail(str(exc))
    to_stdout = output is None or output == "-"
    color = (to_stdout and renderer_cls is TextRenderer and sys.stdout.isatty()
             and "NO_COLOR" not in os.environ)
    try:
        text = renderer_cls(color=color).render(data)
    except Exception as exc:  # a plugin renderer's bug: name it, don't dump a traceback
        _fail(f"--format {renderer_cls.name or renderer_cls.__qualname__}: rendering "
              f"{display_path(report_path)} failed: {type(exc).__name__}: {exc}")
    if to_stdout:
        click.echo(text, nl=False)
        return
    assert output is not None
    target = Path(output)
    if target.is_dir():
        _fail(f"-o {output}: is a directory; give a file name")
    try:
        write_atomically(target, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            reason = f"directory {display_path(target.parent)} does not exist"
        _fail(f"-o {output}: cannot write: {reason}")
    click.echo(f"wrote {display_path(target)} ({renderer_cls.name or renderer_cls.__qualname__})",
               err=True)
