"""``looptools dashboard PID|SOCKET`` and ``looptools ps``: watch apps that are already running.

Every app started with ``LOOPTOOLS=1`` (and not under ``looptools profile``)
listens on a private per-user socket, ``<runtime dir>/<pid>.sock``; ``ps`` lists
them and ``dashboard`` shows one live.  Reading never affects the app: it streams
to a bounded buffer and drops what a slow reader cannot take.

Exit statuses: 0 fine (also when the app ends while watched, or on Ctrl-C);
1 the process is not there or not reachable; 2 bad usage.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from looptools.cli import FiniteFloat, live_terminal
from looptools.cli._oneline import EXIT_USAGE, OneLineCommand
from looptools.live.stream import connect, listed_processes, registry_dir, registry_socket

__all__ = ["dashboard", "ps"]

EXIT_UNREACHABLE = 1


def _fail(message: str, code: int = EXIT_UNREACHABLE) -> NoReturn:
    click.echo(f"looptools dashboard: {message}", err=True)
    raise click.exceptions.Exit(code)


def _target_path(target: str) -> Path:
    if target.isdigit():
        path = registry_socket(int(target))
        if not path.exists():
            _fail(f"no monitored process with pid {target} (not running with LOOPTOOLS=1, "
                  f"or under 'looptools profile'?); 'looptools ps' lists them")
        return path
    path = Path(target)
    if not path.exists():
        _fail(f"{target}: no such socket; give a pid from 'looptools ps' or a socket path",
              EXIT_USAGE)
    return path


@click.command("dashboard", cls=OneLineCommand,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", metavar="PID|SOCKET")
@click.option("--once", is_flag=True,
              help="Print one frame after the first snapshot and exit "
                   "(what happens anyway when standard output is not a terminal).")
@click.option("--refresh", type=FiniteFloat(min=4, max=30), default=4.0,
              show_default=True, help="Redraws per second.")
def dashboard(target: str, once: bool, refresh: float) -> None:
    """Watch a running app's event loop live (an app started with LOOPTOOLS=1).

    \b
      looptools ps                 # which processes can be watched
      looptools dashboard 12345    # by pid
      looptools dashboard /run/user/1000/looptools/12345.sock

    Exits 0 when the app ended or on Ctrl-C, 1 when there is no such monitored
    process or it cannot be reached, 2 for bad usage or a socket path that does
    not exist.
    """
    from rich.console import Console

    from looptools.live.dashboard import Dashboard, DashboardState

    path = _target_path(target)
    state = DashboardState()
    try:
        client = connect(path, state.apply)
    except OSError as exc:
        _fail(f"cannot connect to {path}: {exc.strerror or exc} (has the process exited?)")
    console = Console()
    board = Dashboard(state)
    try:
        if once or not live_terminal():  # (FORCE_COLOR makes rich's is_terminal true)
            deadline = time.monotonic() + 3.0
            while not state.snapshot and not client.closed.is_set() \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            state.bad_lines = client.decoder.bad
            if state.hello is None:
                _fail(f"{path} sent nothing looptools understands")
            console.print(Dashboard(state, height=max(20, min(console.height, 40))))
            return
        from rich.live import Live

        with Live(get_renderable=lambda: board, console=console, refresh_per_second=refresh):
            try:
                while not client.closed.is_set():
                    state.bad_lines = client.decoder.bad
                    time.sleep(0.1)
            except KeyboardInterrupt:
                return
            if not state.ended:  # the connection dropped without a goodbye
                state.finish(None, "ENDED: the app closed the connection (exited or killed)")
    finally:
        client.close()


def _age(started_at: Any) -> str:
    try:
        started = datetime.datetime.fromisoformat(str(started_at))
    except ValueError:
        return "?"
    seconds = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@click.command("ps", cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="One JSON object per process.")
def ps(as_json: bool) -> None:
    """List your processes running with LOOPTOOLS=1 that a dashboard can watch.

    Entries of processes that have gone away are removed as they are found.
    """
    found = listed_processes()
    if as_json:
        for entry in found:
            click.echo(json.dumps(entry))
        return
    if not found:
        click.echo(f"no monitored processes (looked in {registry_dir()})", err=True)
        return
    width = max(3, *(len(str(e["pid"])) for e in found))
    click.echo(f"{'PID':>{width}}  {'UP':>5}  COMMAND")
    for entry in found:
        argv = entry.get("argv") or []
        command = " ".join(str(a) for a in argv) or "?"
        if len(command) > 200:
            command = command[:197] + "..."
        click.echo(f"{entry['pid']:>{width}}  {_age(entry.get('started_at')):>5}  {command}")
    if live_terminal():
        click.echo(f"watch one with: looptools dashboard {found[-1]['pid']}", err=True)
