"""Command line and small helpers shared by the bundled sample applications.

Every sample app accepts the same options::

    --problem NAME      repeatable, or a comma-separated list (default: none)
    --stall-ms N        size of each injected stall in milliseconds (default 200)
    --problem-at S      seconds after start of the first injection (default 0.5)
    --repeat N          number of injections (default 1)
    --every S           seconds between injections (default 0.5)
    --duration S        quit cleanly after S seconds, 0 = run until interrupted (default 3.0)
    --end-with HOW      how the process ends once the app has quit: normal (exit status 0),
                        raise (an unhandled exception), exit5 (sys.exit(5)), osexit3
                        (os._exit(3)); or sigint/sigterm: ignore --duration, print
                        "<app>: ready" on stderr once the scripted work and every injection
                        are done, and run until that signal comes (for exit-status tests)

An app asked to quit after S seconds first lets its scripted work and every scheduled
injection finish (a graceful drain), so its one-line summary on stdout depends only on the
flags, never on timing. SIGINT quits at once (exit status 0, summary still printed); with
``--end-with sigint`` it comes after "ready", so that summary is the full, deterministic one
too. stdout only ever carries the one summary line; "ready" and diagnostics go to stderr.

Nothing in here blocks an event loop and nothing in here is a culprit: the injected
problems live in the apps themselves, each culprit line marked with a trailing
CULPRIT comment naming the problem. This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

#: Every problem name the sample apps know about, in documentation order.
PROBLEMS: tuple[str, ...] = (
    "none",
    "blocking-slot",
    "blocking-coro",
    "cpu-parse",
    "sync-io",
    "gil-call",
    "leaked-task",
    "unretrieved-exception",
    "widget-from-worker",
)

#: How a sample app's process may end (``--end-with``).
ENDINGS: tuple[str, ...] = ("normal", "raise", "exit5", "osexit3", "sigint", "sigterm")
#: Endings that wait for a signal after announcing "ready".
SIGNAL_ENDINGS: frozenset[str] = frozenset({"sigint", "sigterm"})

#: Exit status for command-line errors (same as argparse).
USAGE_ERROR = 2


@dataclass(frozen=True)
class AppConfig:
    """Parsed command line of a sample app."""

    app: str
    problems: frozenset[str]
    stall_ms: float
    problem_at: float
    repeat: int
    every: float
    duration: float
    end_with: str = "normal"

    @property
    def stall(self) -> float:
        """Size of one injected stall, in seconds."""
        return self.stall_ms / 1000.0

    @property
    def healthy(self) -> bool:
        return not self.problems

    def has(self, problem: str) -> bool:
        return problem in self.problems

    def injection_times(self) -> list[float]:
        """Seconds after start-up at which each injection happens."""
        if self.healthy:
            return []
        return [self.problem_at + k * self.every for k in range(self.repeat)]


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser(app: str, description: str, supported: Collection[str]) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=app, description=description)
    parser.add_argument(
        "--problem",
        action="append",
        default=[],
        metavar="NAME",
        help="inject a problem; repeatable or comma-separated. "
        f"Supported here: {', '.join(p for p in PROBLEMS if p in supported)}",
    )
    parser.add_argument("--stall-ms", type=_positive_float, default=200.0, metavar="N",
                        help="size of each injected stall in ms (default 200)")
    parser.add_argument("--problem-at", type=_non_negative_float, default=0.5, metavar="S",
                        help="seconds after start of the first injection (default 0.5)")
    parser.add_argument("--repeat", type=_positive_int, default=1, metavar="N",
                        help="number of injections (default 1)")
    parser.add_argument("--every", type=_positive_float, default=0.5, metavar="S",
                        help="seconds between injections (default 0.5)")
    parser.add_argument("--duration", type=_non_negative_float, default=3.0, metavar="S",
                        help="quit cleanly after S seconds, once scripted work and injections "
                        "have finished; 0 = run until interrupted (default 3.0)")
    parser.add_argument("--end-with", choices=ENDINGS, default="normal", metavar="HOW",
                        help="how the process ends: " + ", ".join(ENDINGS) + " (default normal)")
    return parser


def parse_args(
    app: str,
    description: str,
    supported: Collection[str],
    argv: Sequence[str] | None = None,
    *,
    unsupported_reasons: Mapping[str, str] | None = None,
) -> AppConfig:
    """Parse the common command line; exit 2 with one line on stderr on any error."""
    parser = build_parser(app, description, supported)
    ns = parser.parse_args(argv)
    names: list[str] = []
    for raw in ns.problem:
        names.extend(part.strip() for part in raw.split(",") if part.strip())
    problems: set[str] = set()
    for name in names:
        if name not in PROBLEMS:
            parser.error(f"unknown problem {name!r} (known: {', '.join(PROBLEMS)})")
        if name != "none" and name not in supported:
            reason = (unsupported_reasons or {}).get(name, "not implemented in this app")
            parser.error(f"problem {name!r} is not supported by {app}: {reason}")
        if name != "none":
            problems.add(name)
    return AppConfig(
        app=app,
        problems=frozenset(problems),
        stall_ms=ns.stall_ms,
        problem_at=ns.problem_at,
        repeat=ns.repeat,
        every=ns.every,
        # Waiting for a signal: run until it comes.
        duration=0.0 if ns.end_with in SIGNAL_ENDINGS else ns.duration,
        end_with=ns.end_with,
    )


def warn(cfg: AppConfig, message: str) -> None:
    """Diagnostics go to stderr; stdout is reserved for the one summary line."""
    print(f"{cfg.app}: {message}", file=sys.stderr, flush=True)


def announce_ready(cfg: AppConfig) -> None:
    """Say "ready" on stderr when the process waits for a signal to end (``--end-with``).

    Call it once the app's scripted work and every injection are done, from inside the
    running loop (after the app's SIGINT handler is installed): whoever sends the signal
    then gets the full summary, whenever the signal lands.
    """
    if cfg.end_with in SIGNAL_ENDINGS:
        warn(cfg, "ready")


def end_as_asked(cfg: AppConfig) -> int:
    """End the process as ``--end-with`` asks; returns the exit status otherwise."""
    if cfg.end_with == "raise":
        raise RuntimeError(f"{cfg.app} ends by an exception (--end-with raise)")
    if cfg.end_with == "exit5":
        sys.exit(5)
    if cfg.end_with == "osexit3":
        sys.stdout.flush()
        os._exit(3)
    return 0


async def wait_for_quit(cfg: AppConfig, quit_requested: asyncio.Event,
                        work_done: asyncio.Event, work: str) -> None:
    """Return when the app should shut down.

    With ``--duration S``: after S seconds, once ``work_done`` is set (the graceful drain that
    keeps the summary deterministic; gives up after 30 s more), or as soon as
    ``quit_requested`` is set (SIGINT). With ``--duration 0``: only on ``quit_requested``.
    With ``--end-with sigint|sigterm``: announces "ready" once ``work_done`` is set, then
    waits for ``quit_requested`` (or the signal that ends the process).
    Works on any asyncio-compatible loop (asyncio, qasync, QtAsyncio).
    """
    quit_task = asyncio.ensure_future(quit_requested.wait())
    try:
        if cfg.end_with in SIGNAL_ENDINGS:
            done_task = asyncio.ensure_future(work_done.wait())
            await asyncio.wait({quit_task, done_task}, return_when=asyncio.FIRST_COMPLETED)
            done_task.cancel()
            if work_done.is_set():
                announce_ready(cfg)
        if cfg.duration > 0:
            await asyncio.wait({quit_task}, timeout=cfg.duration)
            if not quit_task.done():
                done_task = asyncio.ensure_future(work_done.wait())
                await asyncio.wait({quit_task, done_task}, timeout=30.0,
                                   return_when=asyncio.FIRST_COMPLETED)
                done_task.cancel()
                if not work_done.is_set() and not quit_task.done():
                    warn(cfg, f"gave up waiting for {work} to finish")
        else:
            await quit_task
    finally:
        quit_task.cancel()
