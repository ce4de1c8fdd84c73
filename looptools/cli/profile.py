"""``looptools profile``: run an app with monitoring on, watch it live, write its reports.

The app runs as a child process in its own process group with ``LOOPTOOLS=1``;
its monitor streams to a Unix socket in a private folder (mode 0700) that this
command reads to feed the live dashboard, and writes its JSON report there at
exit.  This command then adds the sampler's profile, writes the reports the user
asked for and exits with the app's status.  Exit statuses (docs/profile.md):

* the app's own status; 128+N when a signal N killed it (like a shell);
* 0 when ``--duration`` stopped the app and it ended from that SIGINT/SIGTERM;
* 2 bad usage: no app, a script or module that does not exist, a sampler that
  is not installed;
* 3 the app exited 0 but a requested output could not be written;
* 4 the app exited 0 but nothing was monitored (no event loop ran, or the app's
  Python did not load looptools);
* 126/127 the command is not executable / not found.

Every problem is one line on stderr; whatever was recorded is still written.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click

from looptools._safewrite import names_a_folder, why, write_fallback, write_file
from looptools.cli import FiniteFloat
from looptools.cli._oneline import EXIT_USAGE, OneLineCommand
from looptools.inapp.writer import empty_report, stall_line, summary_lines
from looptools.report.load import ReportError, display_path, load_report, validate_report
from looptools.settings import _optional_path

__all__ = ["profile"]

EXIT_OUTPUT = 3
EXIT_NOTHING_MONITORED = 4
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

_PYTHON = re.compile(r"^python[0-9.]*(\.exe)?$")
# Python options that take a separate value (so the value is not the script).
_PY_OPTION_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}


class _Fail(Exception):
    """A problem that ends the command: one ``looptools profile: ...`` line and a status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class _Command(OneLineCommand):
    """Every error is one line: usage errors (OneLineCommand) and ours."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _Fail as exc:
            click.echo(f"looptools profile: {exc.message}", err=True)
            raise click.exceptions.Exit(exc.code) from None


def _say(line: str) -> None:
    click.echo(f"looptools: {line}", err=True)


# -- what to run ------------------------------------------------------------------------------
def _python_script(args: list[str]) -> str | None:
    """The script a ``python [options] script ...`` command line runs, if any."""
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("-c", "-m", "-"):
            return None
        if arg in _PY_OPTION_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def resolve_command(command: tuple[str, ...], module: str | None) -> list[str]:
    """The child's argv from ``app.py args``, ``-m module args`` or ``-- program args``.

    Raises :class:`_Fail` (exit 2, 126 or 127) for something that cannot run.
    """
    if module is not None:
        top = module.split(".", 1)[0]
        if not top or not re.fullmatch(r"[\w.]+", module):
            raise _Fail(f"-m {module}: not a module name")
        found = None
        with contextlib.suppress(ImportError, ValueError):
            sys.path.insert(0, os.getcwd())
            try:
                found = importlib.util.find_spec(top)
            finally:
                sys.path.pop(0)
        if found is None:
            raise _Fail(f"-m {module}: no module named {top!r} (from {os.getcwd()})")
        return [sys.executable, "-m", module, *command]
    if not command:
        raise _Fail("give the app to run: 'looptools profile app.py', "
                    "'looptools profile -m package.module' or 'looptools profile -- python app.py'")
    first, rest = command[0], list(command[1:])
    if first.startswith("-") and first != "-":
        raise _Fail(f"no such option: {first} (see 'looptools profile --help'); "
                    "put the app's own options after its name")
    if first.endswith((".py", ".pyw")):
        if not os.path.isfile(first):
            raise _Fail(f"{first}: no such file")
        return [sys.executable, first, *rest]
    program = first if os.sep in first else shutil.which(first)
    if program is None or not os.path.exists(program):
        raise _Fail(f"{first}: command not found", EXIT_NOT_FOUND)
    if os.path.isdir(program) or not os.access(program, os.X_OK):
        if os.path.isfile(program) and not os.path.isdir(program):
            return [sys.executable, first, *rest]  # a script without the .py ending
        raise _Fail(f"{first}: not executable", EXIT_NOT_EXECUTABLE)
    if _PYTHON.match(os.path.basename(first)):
        script = _python_script(rest)
        if script is not None and not os.path.exists(script):
            raise _Fail(f"{script}: no such file")
    return [first, *rest]


# -- running it --------------------------------------------------------------------------------
def _alive(pid: int | None) -> bool:
    """True for a running process (a zombie waiting to be reaped is not running)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


def _status(code: int | None) -> int | None:
    """A shell-style exit status: 128+N for death by signal N."""
    if code is None:
        return None
    return 128 - code if code < 0 else code


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Run:
    """One profiled run of the app: child process, stream, escalation, outputs."""

    def __init__(self, argv: list[str], *, threshold_ms: float | None, duration: float | None,
                 grace: float, dashboard: bool, sampler: str,
                 thread_checks: bool = False) -> None:
        self.argv = argv
        self.threshold_ms = threshold_ms
        self.thread_checks = thread_checks
        self.duration = duration
        self.grace = grace
        self.show_dashboard = dashboard
        self.sampler = sampler
        self.folder = Path(tempfile.mkdtemp(prefix="looptools-"))  # mode 0700
        self.socket_path = self._socket_path()
        self.child_report = self.folder / "report.json"
        self.speedscope = self.folder / "profile.speedscope.json"
        self.status_file = self.folder / "status.json"
        self.yappi_prefix = self.folder / "yappi"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ended = 0.0
        self.stage = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        self.stage_at = 0.0
        self.stopped_by: str | None = None  # "duration" | "interrupt" | "terminate"
        self.killed_with: int | None = None
        self.pending_lines: list[str] = []
        self._lines_lock = threading.Lock()
        self.progress_told = 0
        self._pumps: list[threading.Thread] = []
        from looptools.live.dashboard import DashboardState

        self.state = DashboardState()
        self.server: Any = None

    def _socket_path(self) -> Path:
        path = self.folder / "stream.sock"
        if len(os.fsencode(path)) < 100:
            return path
        # AF_UNIX paths are short (108 bytes); a long TMPDIR gets a second private folder.
        self.short_folder = Path(tempfile.mkdtemp(prefix="lt-", dir="/tmp"))
        return self.short_folder / "s.sock"

    # -- messages ---------------------------------------------------------------------
    def say(self, line: str) -> None:
        """A line for the user: printed now, or above the live dashboard."""
        with self._lines_lock:
            self.pending_lines.append(f"looptools: {line}")
        if not self.show_dashboard:
            self.flush_lines(None)

    #: Without the dashboard, stalls are told as they end, up to this many.
    MAX_PROGRESS_LINES = 50

    def _apply_and_tell(self, message: dict[str, Any], connection: int = 0) -> None:
        """The dashboard's model, plus (no dashboard: a CI log, a pipe) one line per stall
        as it ends, so that a long run is not silent until the app exits."""
        self.state.apply(message, connection)
        if message.get("type") != "event" or message.get("kind") != "stall_ended" \
                or connection != self.state.connection:
            return
        data = message.get("data")
        if not isinstance(data, dict):
            return
        self.progress_told += 1
        if self.progress_told <= self.MAX_PROGRESS_LINES:
            self.say(stall_line(data))
        elif self.progress_told == self.MAX_PROGRESS_LINES + 1:
            self.say(f"more than {self.MAX_PROGRESS_LINES} stalls: the rest are in the report")

    def flush_lines(self, console: Any) -> None:
        with self._lines_lock:
            lines, self.pending_lines = self.pending_lines, []
        for line in lines:
            if console is None:
                click.echo(line, err=True)
            else:
                from rich.text import Text

                console.print(Text(line, style="yellow"))

    # -- start ------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "LOOPTOOLS": "1",
            "LOOPTOOLS_REPORT": str(self.child_report),
            "LOOPTOOLS_STREAM": str(self.socket_path),
            "LOOPTOOLS_SUMMARY": "0",  # this command prints the summary, with the real paths
            "LOOPTOOLS_LISTEN": "0",
        })
        if self.threshold_ms is not None:
            env["LOOPTOOLS_THRESHOLD_MS"] = f"{self.threshold_ms:g}"
        if self.thread_checks:  # else the user's LOOPTOOLS_THREAD_CHECKS, if any, is passed on
            env["LOOPTOOLS_THREAD_CHECKS"] = "1"
        env.pop("LOOPTOOLS_YAPPI", None)
        if self.sampler == "yappi":
            env["LOOPTOOLS_YAPPI"] = str(self.yappi_prefix)
        return env

    def command(self) -> list[str]:
        if self.sampler != "py-spy":
            return self.argv
        from looptools.profilers import find_py_spy, py_spy_command

        py_spy = find_py_spy()
        assert py_spy is not None  # checked before the run
        return py_spy_command(py_spy, self.argv, self.speedscope, self.status_file)

    def start(self) -> None:
        from looptools.live.stream import StreamServer

        on_message = self.state.apply if self.show_dashboard else self._apply_and_tell
        self.server = StreamServer(self.socket_path, on_message).start()
        pipe = subprocess.PIPE if self.show_dashboard else None
        stdin = subprocess.DEVNULL if sys.stdin is None or _isatty(sys.stdin) else None
        if self.show_dashboard:
            # Piped output is block-buffered in Python; unbuffered keeps it in step.
            env = {**self.environment(), "PYTHONUNBUFFERED": "1"}
        else:
            env = self.environment()
        try:
            self.proc = subprocess.Popen(
                self.command(), env=env, stdin=stdin, stdout=pipe, stderr=pipe,
                **_new_process_group())
        except FileNotFoundError:
            raise _Fail(f"{self.argv[0]}: command not found", EXIT_NOT_FOUND) from None
        except PermissionError:
            raise _Fail(f"{self.argv[0]}: not executable", EXIT_NOT_EXECUTABLE) from None
        except OSError as exc:
            raise _Fail(f"cannot start {self.argv[0]}: {exc.strerror or exc}",
                        EXIT_NOT_EXECUTABLE) from None
        self.started = time.monotonic()
        if self.show_dashboard:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            for stream in (self.proc.stdout, self.proc.stderr):
                pump = threading.Thread(target=self._pump, args=(stream,), daemon=True,
                                        name="looptools-output")
                pump.start()
                self._pumps.append(pump)

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lines_lock:
                self.pending_lines.append(line)
        stream.close()

    # -- stopping -----------------------------------------------------------------------
    def signal_app(self, signum: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def request_stop(self, why: str) -> None:
        """First request: SIGINT; later ones escalate now instead of after the grace period."""
        if self.stopped_by is None:
            self.stopped_by = why
        self.escalate(force=True)

    def escalate(self, force: bool = False, why: str | None = None) -> None:
        """Send the next of SIGINT, SIGTERM, SIGKILL: now if ``force``, else after the grace."""
        now = time.monotonic()
        if not force and (self.stage == 0 or now - self.stage_at < self.grace):
            return
        if self.stage >= 3:
            return
        waited = now - self.stage_at
        self.stage += 1
        self.stage_at = now
        signum = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[self.stage - 1]
        if why is not None:
            self.say(why)
        elif self.stage == 2:
            self.say(f"the app is still running {waited:.1f} s after SIGINT; sending SIGTERM")
        elif self.stage == 3:
            self.say(f"the app is still running {waited:.1f} s after SIGTERM; sending SIGKILL "
                     "(its own report is lost; writing what the stream recorded)")
        self.killed_with = signum
        self.signal_app(signum)

    def tick(self) -> None:
        """Called every 50 ms while the app runs: --duration and the grace periods."""
        if self.server is not None:
            self.state.bad_lines = self.server.bad_lines
        if self.duration is not None and self.stage == 0 and \
                time.monotonic() - self.started >= self.duration:
            self.stopped_by = "duration"
            self.escalate(force=True)
        else:
            self.escalate()

    def app_done(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is None:
            return False
        if self.sampler != "py-spy":
            return True
        from looptools.profilers import read_status

        status = read_status(self.status_file)
        if status is None:
            # py-spy failed before starting the shim, or the shim is about to write.
            return time.monotonic() - self.started > 2.0 or self.stage >= 3
        if "returncode" in status:
            return True
        if self.stage >= 3 and time.monotonic() - self.stage_at > 2.0:
            return True
        return not (_alive(status.get("shim")) or _alive(status.get("pid")))

    def wait(self, live: Any = None) -> None:
        while not self.app_done():
            self.tick()
            if live is not None:
                self.flush_lines(live.console)
            time.sleep(0.05)
        self.ended = time.monotonic()
        for pump in self._pumps:
            pump.join(1.0)
        if live is not None:
            self.flush_lines(live.console)
        if self.server is not None:
            self.server.drain()
            self.state.bad_lines = self.server.bad_lines

    def app_returncode(self) -> int | None:
        """The app's own exit status, shell style (the shim knows it under py-spy)."""
        assert self.proc is not None
        if self.sampler == "py-spy":
            from looptools.profilers import read_status

            status = read_status(self.status_file) or {}
            if isinstance(status.get("returncode"), int):
                return _status(status["returncode"])
            if self.killed_with is not None and status.get("pid"):
                return 128 + int(self.killed_with)
            return _status(self.proc.returncode)
        return _status(self.proc.returncode)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.proc is not None and self.proc.poll() is None:
            self.signal_app(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2.0)
        shutil.rmtree(self.folder, ignore_errors=True)
        short = getattr(self, "short_folder", None)
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _new_process_group() -> dict[str, Any]:
    """The app in a process group of its own, and (Linux) sent SIGTERM if we die.

    Killed with SIGKILL, this command cannot stop the app it started, which once ran
    on for 205 s with nobody watching; ``PR_SET_PDEATHSIG`` (kept across ``exec``)
    has the kernel send the app SIGTERM when we are gone, as Ctrl-C on a terminal
    would have.  With ``--sampler py-spy`` our child is py-spy: it dies of it, and
    the shim between it and the app passes the same on (see looptools.profilers)."""
    die_with_us = _die_with_parent(signal.SIGTERM)
    if sys.version_info >= (3, 11):
        extra: dict[str, Any] = {"process_group": 0}
        if die_with_us is not None:
            extra["preexec_fn"] = die_with_us
        return extra

    def both() -> None:  # pragma: no cover - Python 3.10
        os.setpgrp()
        if die_with_us is not None:
            die_with_us()

    return {"preexec_fn": both}  # pragma: no cover - Python 3.10


def _die_with_parent(signum: int) -> Any:
    """A ``preexec_fn`` asking the kernel to send the child ``signum`` when we exit."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # we were gone before it took effect
            os.kill(os.getpid(), signum)

    return preexec


@contextlib.contextmanager
def _forward_signals(run: _Run) -> Iterator[None]:
    """Ctrl-C (SIGINT) asks the app to stop, then escalates; SIGTERM/SIGHUP terminate it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        run.request_stop("interrupt")

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        run.stopped_by = run.stopped_by or "terminate"
        if run.stage < 2:
            run.stage = 1  # straight to SIGTERM
            run.escalate(force=True, why=f"got {_signal_name(signum)}; sending SIGTERM to the app")
        else:
            run.escalate(force=True)

    previous: dict[int, Any] = {}
    handlers: tuple[tuple[int, Any], ...] = (
        (signal.SIGINT, on_interrupt), (signal.SIGTERM, on_terminate),
        (signal.SIGHUP, on_terminate))
    for signum, handler in handlers:
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, handler)


# -- after the run -----------------------------------------------------------------------------
def report_from_stream(run: _Run, exit_info: dict[str, Any]) -> dict[str, Any]:
    """A schema-valid report from what the stream delivered, when the app wrote none."""
    state = run.state
    report = empty_report()
    with state.lock:
        hello = dict(state.hello or {})
        snap = dict(state.snapshot)
        stalls = [dict(state.stalls[k]) for k in sorted(state.stalls)]
    loop = snap.get("loop") or hello.get("loop")
    if isinstance(loop, dict) and loop.get("kind"):
        report["loop"].update({k: loop.get(k, report["loop"].get(k)) for k in report["loop"]})
        report["loop"]["kind"] = loop["kind"]
    now = datetime.datetime.now(datetime.timezone.utc)
    started_at = hello.get("started_at") or (
        now - datetime.timedelta(seconds=run.ended - run.started)).isoformat()
    report["meta"].update({
        "pid": hello.get("pid") or (run.proc.pid if run.proc else 0),
        "argv": [str(a) for a in hello.get("argv") or run.argv],
        "cwd": hello.get("cwd") or os.getcwd(),
        "started_at": started_at,
        "ended_at": now.isoformat(),
        "duration_s": round(max(state.t, run.ended - run.started), 3),
        "threshold_ms": hello.get("threshold_ms") or run.threshold_ms or 50.0,
        "detectors": [],
        "exit": exit_info,
        "partial": "rebuilt by looptools profile from the live stream: "
                   "the app did not write its own report",
    })
    for stall in stalls:
        stall.setdefault("stack", [])
        for key in ("culprit", "callback", "task"):
            stall.setdefault(key, None)
        stall.setdefault("gil_held", False)
        if stall.get("source") not in ("callback", "task", "qt", "loop"):
            stall["source"] = "loop"
    report["stalls"] = stalls
    summary = snap.get("stall_summary") or {}
    report["stall_summary"] = {
        "count": max(int(summary.get("count", 0) or 0), len(stalls)),
        "total_ms": float(summary.get("total_ms", 0) or
                          sum(float(s.get("duration_ms", 0)) for s in stalls)),
        "max_ms": float(summary.get("max_ms", 0) or
                        max([0.0] + [float(s.get("duration_ms", 0)) for s in stalls])),
        "dropped": 0,
    }
    report["slow_callbacks"] = [r for r in snap.get("slow_callbacks") or []
                                if isinstance(r, dict)]
    lag = snap.get("lag")
    report["lag"] = lag if isinstance(lag, dict) else None
    dispatcher = snap.get("dispatcher")
    report["dispatcher"] = dispatcher if isinstance(dispatcher, dict) else None
    tasks = snap.get("tasks")
    if isinstance(tasks, dict):
        report["tasks"] = {"peak_pending": int(tasks.get("peak_pending", 0) or 0),
                           "pending_now": int(tasks.get("pending_now", 0) or 0),
                           "long_pending": [], "pending_at_exit": [],
                           "unretrieved_exceptions": []}
    report["blocking_calls"] = [r for r in snap.get("blocking_calls") or []
                                if isinstance(r, dict)]
    return _schema_valid(report)


#: Sections of a rebuilt report made of entries: a bad entry is dropped, not the section.
_ENTRIES = frozenset({"stalls", "slow_callbacks", "blocking_calls"})


def _schema_valid(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with what the report schema rejects dropped or reset to an empty value.

    The stream's decoder checks the fields readers use, not every field the schema
    requires (a snapshot's slow callback without ``p50_ms``, a loop kind of a newer
    looptools): so that the rebuilt report is always one ``looptools report``,
    ``check`` and the renderers read, each problem the schema finds is removed, worst
    case down to the empty report with this run's ``meta``.
    """
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    empty = empty_report()
    empty["meta"].update({"started_at": now, "ended_at": now, "duration_s": 0.0,
                          "threshold_ms": 50.0, "detectors": [],
                          "exit": {"reason": "stopped", "signal": None, "exception": None}})
    for _ in range(1000):
        try:
            validate_report(report, "rebuilt from the stream")
            return report
        except ReportError as exc:
            path = exc.path or ()
        top = path[0] if path else None
        section = report.get(top) if isinstance(top, str) else None
        key = path[1] if len(path) > 1 else None
        if top in _ENTRIES and isinstance(section, list) and isinstance(key, int) \
                and key < len(section):
            del section[key]  # one bad stall, slow callback or blocking call
        elif top == "loop" and key == "kind" and isinstance(section, dict) \
                and section.get("kind") not in ("unknown", "none"):
            section["kind"] = "unknown"  # a loop ran: of a kind this looptools does not know
        elif top in ("loop", "meta") and isinstance(section, dict) and isinstance(key, str) \
                and key in section and section[key] != empty[top].get(key, section[key]):
            section[key] = empty[top][key]
        elif top in ("loop", "meta") and isinstance(section, dict) and key in section \
                and key not in empty[top]:
            del section[key]  # an optional field
        elif isinstance(top, str) and top in empty and section != empty[top]:
            report[top] = copy.deepcopy(empty[top])
        else:
            break
    # Not expected: the empty report.
    empty["meta"]["partial"] = "rebuilt by looptools profile: the live stream was unusable"
    return empty


def _sibling(path: Path, suffix: str) -> Path:
    name = path.name[:-5] if path.name.endswith(".json") else path.name
    return path.with_name(name + suffix)


class _Outputs:
    def __init__(self, report: str, html: str | None, trace: str | None,
                 markdown: str | None, speedscope: str | None = None) -> None:
        # "none" (or off, 0, false, empty) means no such file, as LOOPTOOLS_REPORT=none does.
        chosen = _optional_path(report)
        self.report: Path | None = Path(chosen) if chosen is not None else None
        #: Where the sampler's files go: beside the JSON report, or the default's name.
        self.base = self.report or Path("looptools-report.json")
        self.rendered = [(flag, name, Path(path)) for flag, name, given in (
            ("--html", "html", html), ("--trace", "trace", trace),
            ("--markdown", "md", markdown), ("--speedscope", "speedscope", speedscope))
            if (path := _optional_path(given)) is not None]
        #: Each output as given (``Path`` drops the slash that makes ``out/`` a folder's).
        self.given = {flag: given for flag, given in (
            ("--report", chosen), ("--html", html), ("--trace", trace),
            ("--markdown", markdown), ("--speedscope", speedscope)) if given is not None}
        self.written: list[str] = []
        self.failed = 0
        self.say = _say
        #: The final report and the name --check calls it by (where it was written).
        self.final: dict[str, Any] | None = None
        self.final_name = "the report"

    def unwritable(self) -> str | None:
        """Before the app runs: the first requested output whose folder cannot take
        it (missing, not a folder, the path a folder), as one line; None if all can.
        (Checked again as each is written: a folder can go while the app runs.)"""
        wanted = ([("--report", self.report)] if self.report is not None else []) \
            + [(flag, path) for flag, _name, path in self.rendered]
        for flag, path in wanted:
            if path.is_dir():
                return f"{flag} {display_path(path)}: is a directory"
            if names_a_folder(self.given.get(flag, "")):
                return f"{flag} {self.given[flag]}: names a folder (it ends with /); " \
                    "give a file name"
            folder = path.parent if str(path.parent) else Path(".")
            if not folder.exists():
                return f"{flag} {display_path(path)}: directory {folder} does not exist"
            if not folder.is_dir():
                return f"{flag} {display_path(path)}: {folder} is not a directory"
            if not os.access(folder, os.W_OK | os.X_OK) and not os.access(path, os.W_OK):
                return f"{flag} {display_path(path)}: permission denied ({folder})"
        return None

    def _fail(self, flag: str, path: Path, reason: str) -> None:
        self.failed += 1
        self.say(f"cannot write {flag} {display_path(path)}: {reason}")

    def copy_artifacts(self, run: _Run, report: dict[str, Any]) -> None:
        """The sampler's files go next to the JSON report; the report points at them."""
        profile = report.get("profile")
        if not isinstance(profile, dict):
            return
        moves: list[tuple[str, Path, Path]] = []
        if profile.get("sampler") == "py-spy":
            moves.append(("speedscope", run.speedscope, _sibling(self.base,
                                                                 ".speedscope.json")))
        listed = profile.get("files")
        files: dict[str, Any] = listed if isinstance(listed, dict) else {}
        for kind in ("pstat", "callgrind"):
            source = Path(str(files.get(kind, "")))
            if profile.get("sampler") == "yappi" and source.is_file():
                moves.append((kind, source, _sibling(self.base, f".yappi.{kind}")))
        saved: dict[str, str] = {}
        for kind, source, target in moves:
            try:
                if kind == "speedscope":
                    _save_py_spy_profile(run, source, target)
                else:
                    shutil.copyfile(source, target)
            except OSError as exc:
                self._fail(f"the {kind} file", target, why(exc, target))
                continue
            saved[kind] = str(target)
            self.written.append(display_path(target))
        profile["files"] = saved

    def _write_json(self, report: dict[str, Any], target: Path) -> None:
        text = json.dumps(report, indent=1, default=str) + "\n"
        try:
            write_file(target, text)
            self.written.insert(0, display_path(target))
            self.final_name = display_path(target)
        except OSError as exc:
            # Nothing recorded is lost: the JSON goes where the monitor's own fallback goes.
            pid = (report.get("meta") or {}).get("pid") or os.getpid()
            reason = why(exc, target)
            try:
                fallback = write_fallback(text, int(pid))
            except OSError as again:
                self._fail("--report", target,
                           f"{reason}; nor to the temp folder: {again.strerror or again}")
            else:
                self._fail("--report", target,
                           f"{reason}; wrote it to {display_path(fallback)} instead")
                self.written.insert(0, display_path(fallback))
                self.final_name = display_path(fallback)

    def write(self, report: dict[str, Any]) -> None:
        self.final = report
        if self.report is not None:
            self._write_json(report, self.report)
        from looptools.report.render import get_renderer

        for flag, name, path in self.rendered:
            try:
                text = get_renderer(name).render(report)
            except Exception as exc:  # a renderer bug must not lose the other outputs
                self._fail(flag, path, f"rendering failed: {type(exc).__name__}: {exc}")
                continue
            try:
                write_file(path, text)
            except OSError as exc:
                self._fail(flag, path, why(exc, path))
                continue
            self.written.append(display_path(path))


def _save_py_spy_profile(run: _Run, source: Path, target: Path) -> None:
    """py-spy's speedscope file, made to open on the app's main thread (not the shim's)."""
    from looptools.profilers import open_on_main_thread, read_status

    status = read_status(run.status_file) or {}
    app = status.get("pid")
    shim = status.get("shim")
    try:
        text = open_on_main_thread(source, app if isinstance(app, int) else None,
                                   {shim} if isinstance(shim, int) else set())
    except ValueError:
        shutil.copyfile(source, target)  # not ours to judge: saved as py-spy wrote it
        return
    write_file(target, text)


def _sampler_profile(run: _Run, report: dict[str, Any], say: Any) -> None:
    if run.sampler == "py-spy":
        from looptools.profilers import read_status, speedscope_summary

        if not run.speedscope.is_file():
            say("py-spy wrote no profile (see its messages above); the report has none")
            return
        status = read_status(run.status_file) or {}
        skip = {int(status["shim"])} if isinstance(status.get("shim"), int) else set()
        try:
            report["profile"] = speedscope_summary(run.speedscope, skip_pids=skip)
        except ValueError as exc:
            say(f"cannot read py-spy's profile: {exc}")
    elif run.sampler == "yappi" and not isinstance(report.get("profile"), dict):
        say("yappi wrote no profile (did the app load looptools and exit normally?)")


def _exit_info(run: _Run, status: int | None) -> dict[str, Any]:
    if status is not None and status > 128:
        return {"reason": "signal", "signal": _signal_name(status - 128), "exception": None}
    if status and not run.stopped_by:
        return {"reason": "exit", "signal": None, "exception": None, "code": status}
    return {"reason": "stopped" if run.stopped_by else "normal", "signal": None,
            "exception": None}


def _true_exit(exit_block: dict[str, Any], status: int | None) -> None:
    """Inside the app, ``sys.exit(5)`` and a crash look like a normal end (the status is
    not known to Python at exit); here it is: a "normal" end is corrected by it."""
    if exit_block.get("reason") != "normal" or not status:
        return
    if status > 128:
        exit_block.update(reason="signal", signal=_signal_name(status - 128))
    else:
        exit_block.update(reason="exit", code=status)


def _finish(run: _Run, outputs: _Outputs) -> tuple[dict[str, Any] | None, int, str]:
    """Load or rebuild the report, add the profile, write outputs; (report, exit, note)."""
    say = outputs.say
    status = run.app_returncode()
    seconds = run.ended - run.started
    report: dict[str, Any] | None
    unusable: str | None = None
    try:
        report = load_report(run.child_report)
        rebuilt = False
    except ReportError as exc:
        report, rebuilt = None, True
        if run.child_report.exists():
            unusable = exc.message
    connected = run.state.hello is not None
    if report is None and connected:
        report = report_from_stream(run, _exit_info(run, status))
    if report is not None:
        exit_block = report["meta"].setdefault("exit", {"reason": "normal"})
        exit_block["returncode"] = status
        _true_exit(exit_block, status)
        _sampler_profile(run, report, say)

    # One line on how the app ended.
    how = f"exited with status {status}" if status is not None else "ended"
    if status is not None and status > 128:
        how = f"was killed by {_signal_name(status - 128)} (status {status})"
    note = f"the app {how} after {seconds:.1f} s"
    if run.stopped_by == "duration":
        note += f" (stopped at --duration {run.duration:g} s)"
    elif run.stopped_by == "interrupt":
        note += " (interrupted)"
    exception = ((report or {}).get("meta", {}).get("exit") or {}).get("exception")
    if exception:
        note += f"; it crashed: {exception}"
    say(note)

    code = status if status is not None else 1
    if run.stopped_by == "duration" and run.stage <= 2 and status in (0, 130, 143):
        code = 0  # stopped as asked: not a failure
    if report is None:
        program = shutil.which(run.argv[0]) or run.argv[0]
        say(f"no report: the app never connected: {program} did not load looptools (is "
            "looptools installed for that Python? 'looptools doctor' run with it tells)")
        outputs.failed += 1
        return None, (code or EXIT_NOTHING_MONITORED), note
    if rebuilt:
        cause = f"the app's report cannot be used ({unusable})" if unusable else \
            "the app did not write its own report (killed?)"
        say(f"{cause}; writing what the live stream recorded")
    if report["loop"]["kind"] == "none":
        say('the app never started an event loop (report loop.kind is "none"), so there '
            "was nothing to monitor: does it run an asyncio or Qt loop on its main thread?")
        if code == 0:
            code = EXIT_NOTHING_MONITORED
    outputs.copy_artifacts(run, report)
    outputs.write(report)
    if outputs.failed and code == 0:
        code = EXIT_OUTPUT
    return report, code, note


# -- the command ---------------------------------------------------------------------------------
@click.command("profile", cls=_Command, context_settings={
    "help_option_names": ["-h", "--help"], "ignore_unknown_options": True,
    "allow_interspersed_args": False})
@click.option("-m", "module", metavar="MODULE", help="Run a module, like python -m.")
@click.option("--report", "report_path", metavar="PATH", default="looptools-report.json",
              show_default=True, help="Where to write the JSON report; 'none' for no file.")
@click.option("--html", metavar="PATH", help="Also write a self-contained HTML report.")
@click.option("--trace", metavar="PATH", help="Also write a Perfetto/Chrome trace.")
@click.option("--markdown", metavar="PATH", help="Also write a Markdown summary.")
@click.option("--speedscope", metavar="PATH",
              help="Also write the stall stacks, weighted by blocked time, for speedscope.app.")
@click.option("--threshold-ms", type=FiniteFloat(min=0, min_open=True), metavar="MS",
              help="Stall and slow-callback threshold [default: the app's LOOPTOOLS_* "
                   "settings, else 50].")
@click.option("--duration", type=FiniteFloat(min=0, min_open=True), metavar="S",
              help="Stop the app after S seconds: SIGINT, then SIGTERM and SIGKILL "
                   "--grace seconds apart.")
@click.option("--grace", type=FiniteFloat(min=0), default=3.0, show_default=True,
              metavar="S", help="Seconds between SIGINT, SIGTERM and SIGKILL when stopping.")
@click.option("--no-dashboard", is_flag=True,
              help="No live dashboard (also when standard output is not a terminal).")
@click.option("--sampler", type=click.Choice(["none", "py-spy", "yappi"]), default="none",
              show_default=True, help="Also profile: py-spy (outside the app, speedscope "
                                      "file) or yappi (inside, wall clock, pstat+callgrind).")
@click.option("--thread-checks", is_flag=True,
              help="Dev mode of the affinity detector: also catch asyncio's non-thread-safe "
                   "calls and QWidget calls made from other threads (costs every call_soon "
                   "of the loop and every call the app's threads make; docs/threads.md).")
@click.option("--check", "check_budget", is_flag=True,
              help="Judge the run against the event-loop budget (as `looptools check`): "
                   "exit 1 when over it.")
@click.option("--budget", "budget_file", metavar="FILE",
              help="Budget TOML for --check (default: [tool.looptools.budget] in the "
                   "nearest pyproject.toml).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[--] APP [ARGS]...")
def profile(module: str | None, report_path: str, html: str | None, trace: str | None,
            markdown: str | None, speedscope: str | None, threshold_ms: float | None,
            duration: float | None, grace: float, no_dashboard: bool, sampler: str,
            thread_checks: bool, check_budget: bool, budget_file: str | None,
            command: tuple[str, ...]) -> None:
    """Run an app with event-loop monitoring on; show a live dashboard; write its reports.

    \b
      looptools profile app.py --its-args
      looptools profile -m package.module --its-args
      looptools profile --duration 30 --html run.html -- python app.py --its-args

    Exits with the app's status (128+N if signal N killed it; 0 when --duration
    stopped it), 2 for bad usage, 3 when an output could not be written, 4 when
    nothing was monitored, 126/127 when the command cannot run.  With --check:
    1 when the app exited 0 but the run is over budget (an app's own failure
    keeps its status).
    """
    budget = _load_check_budget(budget_file) if check_budget or budget_file else None
    argv = resolve_command(command, module)
    if sampler == "py-spy":
        from looptools.profilers import find_py_spy

        if find_py_spy() is None:
            raise _Fail("--sampler py-spy: py-spy is not installed (pip install py-spy)")
    elif sampler == "yappi" and importlib.util.find_spec("yappi") is None:
        raise _Fail("--sampler yappi: yappi is not installed (pip install yappi)")
    outputs = _Outputs(report_path, html, trace, markdown, speedscope)
    problem = outputs.unwritable()
    if problem is not None:  # before the app runs, not after (nothing to lose yet)
        raise _Fail(f"cannot write {problem}")
    if sampler == "py-spy":
        _refuse_py_spy_clash(outputs)
    show = not no_dashboard and _isatty(sys.stdout) and os.environ.get("TERM") != "dumb"
    run = _Run(argv, threshold_ms=threshold_ms, duration=duration, grace=grace,
               dashboard=show, sampler=sampler, thread_checks=thread_checks)
    try:
        with _forward_signals(run):
            run.start()
            if show:
                code = _with_dashboard(run, outputs)
            else:
                run.wait()
                report, code, _ = _finish(run, outputs)
                if report is not None:
                    for line in summary_lines(report, None):
                        click.echo(line, err=True)
                _print_written(outputs)
    finally:
        run.close()
    if budget is not None and code == 0:
        code = _check_verdict(outputs, budget)
    sys.exit(code)


def _refuse_py_spy_clash(outputs: _Outputs) -> None:
    """py-spy's whole-run profile is saved beside the report as ``<report>.speedscope.json``:
    an output of the same name would silently replace it (or be replaced)."""
    py_spy_file = _sibling(outputs.base, ".speedscope.json")
    for flag, _, path in outputs.rendered:
        if os.path.abspath(path) == os.path.abspath(py_spy_file):
            raise _Fail(f"{flag} {path}: --sampler py-spy saves its profile there; "
                        "choose another name")


def _load_check_budget(budget_file: str | None) -> Any:
    # Read the budget before the app starts: a bad budget is a usage error (2).
    from looptools.gate.limits import BudgetError, load_budget

    try:
        return load_budget(Path(budget_file) if budget_file else None)
    except BudgetError as exc:
        raise _Fail(str(exc).removeprefix("looptools: ")) from None


def _check_verdict(outputs: _Outputs, budget: Any) -> int:
    """``looptools check``'s verdict on the report just made: 0 within budget, 1 over."""
    from looptools.cli.check import _print_text, _roots
    from looptools.gate.evaluate import evaluate

    data = outputs.final
    if data is None:
        click.echo("looptools: --check: there is no report to check", err=True)
        return 2
    evaluation = evaluate(data, budget)
    _print_text(evaluation, outputs.final_name, _roots(data), False, None)
    return 0 if evaluation.ok else 1


def _with_dashboard(run: _Run, outputs: _Outputs) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from looptools.live.dashboard import Dashboard

    console = Console()
    board = Dashboard(run.state)
    with Live(get_renderable=lambda: board, console=console, refresh_per_second=4,
              redirect_stdout=False, redirect_stderr=False) as live:
        run.wait(live)
        outputs.say = lambda line: live.console.print(Text(f"looptools: {line}",
                                                           style="yellow"))
        report, code, note = _finish(run, outputs)
        run.state.finish(report, f"ENDED: {note}")
        live.refresh()
    _print_written(outputs)
    return code


def _print_written(outputs: _Outputs) -> None:
    if outputs.written:
        _say("wrote " + ", ".join(outputs.written))
