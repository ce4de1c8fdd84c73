"""The live dashboard of `looptools profile` and `looptools dashboard` (rich).

Data flows one way: the stream reader feeds :class:`DashboardState` (plain
data, no rich), and the panels — small classes rendered by rich — read a
consistent :class:`View` of it each time they are drawn.  The panels sit once in
a :class:`Dashboard` layout, which ``rich.live.Live(get_renderable=...)``
redraws four times a second.  Imported only by the command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from looptools._units import fmt_ms as fmt_ms  # the one duration formatter, re-exported
from looptools._units import plural
from looptools.live.stream import message_problem
from looptools.report.model import model_of

__all__ = ["Dashboard", "DashboardState", "View", "affinity_line", "clip_left", "clip_right",
           "fmt_ms", "handoff_line", "place", "short_path", "sparkline", "stall_text",
           "thread_groups", "where", "worker_line", "worker_stall_now_line"]

#: Seconds without any message before the header says the app stopped talking.
SILENT_AFTER = 1.0


# -- the model: no rich below this line until the panels ---------------------------------
def short_path(path: str | None, cwd: str | None = None) -> str:
    """``path`` relative to the app's working directory when inside it, else its last two parts."""
    if not path:
        return "?"
    if cwd and os.path.isabs(path):
        try:
            relative = os.path.relpath(path, cwd)
        except ValueError:
            relative = path
        if not relative.startswith(".."):
            return relative
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else path


def clip_left(text: str, width: int) -> str:
    """Cut from the left: the end of a path or qualified name is what tells it apart."""
    if width <= 0:
        return ""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def where(frame: dict[str, Any] | None, cwd: str | None = None,
          width: int | None = None) -> str:
    """``render_preview (app/preview.py:88)``, shortened to fit ``width`` if given.

    Shortening drops the folders first, then the class of a method, and only then
    cuts from the left, so the line number always stays.
    """
    if not frame:
        return "?"
    line = frame.get("line")
    number = line if line is not None else "?"
    function = str(frame.get("function") or "?")
    path = short_path(str(frame.get("file") or "?"), cwd)
    base = os.path.basename(path)
    forms = [f"{function} ({path}:{number})", f"{function} ({base}:{number})",
             f"{function.rsplit('.', 1)[-1]} ({base}:{number})", f"{base}:{number}"]
    if width is None:
        return forms[0]
    for form in forms:
        if len(form) <= width:
            return form
    return clip_left(forms[-1], width)


def place(frame: dict[str, Any] | None, cwd: str | None = None,
          width: int | None = None) -> str:
    """``app/preview.py:88``, or ``preview.py:88`` (or less) when ``width`` is short."""
    if not frame:
        return "?"
    line = frame.get("line")
    path = short_path(str(frame.get("file") or "?"), cwd)
    full = f"{path}:{line if line is not None else '?'}"
    if width is None or len(full) <= width:
        return full
    return clip_left(f"{os.path.basename(path)}:{line if line is not None else '?'}", width)


def stall_text(elapsed_ms: float, stall: dict[str, Any], cwd: str | None,
               width: int | None = None) -> str:
    """``STALLED 230 ms in render_preview (app/preview.py:88)``, fitted to ``width``."""
    gil = " (GIL held)" if stall.get("gil_held") else ""
    head = f"STALLED {fmt_ms(elapsed_ms)} in "
    room = None if width is None else max(8, width - len(head) - len(gil))
    return f"{head}{where(stall.get('culprit'), cwd, room)}{gil}"


_BARS = " ▁▂▃▄▅▆▇█"
_ASCII_BARS = " .:-=+*#%@"


def sparkline(values: Iterable[float], scale: float, ascii_only: bool = False) -> str:
    """One character per value, on a log scale up to ``scale`` (so a stall and 1 ms both show)."""
    bars = _ASCII_BARS if ascii_only else _BARS
    top = math.log1p(max(scale, 1e-9))
    out = []
    for value in values:
        level = math.log1p(max(0.0, value)) / top if top > 0 else 0.0
        out.append(bars[min(len(bars) - 1, max(0, round(level * (len(bars) - 1))))])
    return "".join(out)


@dataclasses.dataclass
class View:
    """Everything the panels show, copied out of :class:`DashboardState` under its lock."""

    app: str = "?"
    pid: int | None = None
    cwd: str | None = None
    loop_kind: str = "?"
    uptime_s: float | None = None
    threshold_ms: float | None = None
    state: str = "waiting"  # waiting | ok | stalled | silent | ended
    state_text: str = "waiting for the app to connect"
    busy_fraction: float | None = None
    lag: dict[str, Any] | None = None
    lag_recent: list[float] = dataclasses.field(default_factory=list)
    slow_callbacks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stalls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stall_now: dict[str, Any] | None = None
    stall_now_ms: float | None = None
    stall_count: int = 0
    stall_max_ms: float = 0.0
    tasks: dict[str, Any] | None = None
    leaked: int | None = None
    blocking: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: other threads: the worker-loop rows that stalled, most stalled first, and the
    #: worker loops stalled now (elapsed counted on, like the main loop's stall)
    worker_threads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    worker_stalled_now: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    worker_loops: int = 0
    #: hand-off sites, worst p99 first, and how many sites there are in all
    handoffs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    handoff_sites: int = 0
    #: thread-affinity violations (first ones first), and how many sites in all
    affinity: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    affinity_sites: int = 0
    dropped: int = 0
    bad_lines: int = 0
    other_processes: int = 0


class DashboardState:
    """What the stream said about one app; fed by the reader thread with :meth:`apply`.

    The first connection that says hello is the app; later ones (child processes
    that inherited the environment) are only counted.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.hello: dict[str, Any] | None = None
        self.connection: int | None = None
        self.other_connections: set[int] = set()
        self.snapshot: dict[str, Any] = {}
        self.t = 0.0
        self.received: float | None = None
        self.stall_now: dict[str, Any] | None = None
        self.stall_seen: float = 0.0
        self.stalls: dict[float, dict[str, Any]] = {}
        self.events: deque[tuple[float, str, dict[str, Any]]] = deque(maxlen=200)
        self.dropped = 0
        self.bad_lines = 0
        #: messages given to apply() that were not usable (see apply)
        self.rejected = 0
        self.ended = False
        self.exit: dict[str, Any] | None = None
        self.report: dict[str, Any] | None = None
        self.final_note: str | None = None

    # -- input (reader thread) ----------------------------------------------------------
    def apply(self, message: dict[str, Any], connection: int = 0) -> None:
        """Take one decoded wire message (see docs/dashboard.md).

        A message that is not one its readers can use (:func:`looptools.live.stream.
        message_problem`: another version, a field of the wrong type) is counted in
        ``rejected`` and otherwise ignored; the stream's decoder drops those already.
        """
        if message_problem(message) is not None:
            with self.lock:
                self.rejected += 1
            return
        kind = message.get("type")
        with self.lock:
            if self.connection is None:
                if kind != "hello":
                    return
                self.connection = connection
            elif connection != self.connection:
                self.other_connections.add(connection)
                return
            now = self.clock()
            t = message.get("t")
            if isinstance(t, (int, float)):
                self.t = float(t)
            self.received = now
            if isinstance(message.get("dropped"), int):
                self.dropped = message["dropped"]
            data = message.get("data")
            if kind == "hello":
                self.hello = message
                self.ended = False
            elif kind == "snapshot" and isinstance(data, dict):
                self.snapshot = data
                self._set_stall_now(data.get("stall_now"), now)
                for stall in data.get("recent_stalls") or []:
                    self._keep_stall(stall)
            elif kind == "event" and isinstance(data, dict):
                event = str(message.get("kind"))
                self.events.append((self.t, event, data))
                if event == "stall_started":
                    self._set_stall_now(data, now)
                elif event == "stall_ended":
                    self._set_stall_now(None, now)
                    self._keep_stall(data)
                elif event == "stall_dismissed":  # seen live, then under the threshold
                    self._set_stall_now(None, now)
            elif kind == "bye":
                self.ended = True
                self.exit = message.get("exit") if isinstance(message.get("exit"), dict) \
                    else None
                self.stall_now = None

    def _set_stall_now(self, stall: Any, now: float) -> None:
        self.stall_now = stall if isinstance(stall, dict) else None
        self.stall_seen = now

    def _keep_stall(self, stall: Any) -> None:
        if not isinstance(stall, dict) or not isinstance(stall.get("started_at_s"), (int, float)):
            return
        key = round(float(stall["started_at_s"]), 3)
        known = self.stalls.get(key)
        if known is not None and known.get("stack") and not stall.get("stack"):
            # A snapshot's copy (stacks stay out of snapshots) after the stall's own
            # event: keep the stack the event brought.
            stall = {**stall, "stack": known["stack"],
                     "stack_source": known.get("stack_source", stall.get("stack_source"))}
        self.stalls[key] = stall
        if len(self.stalls) > 200:
            for key in sorted(self.stalls)[:50]:
                del self.stalls[key]

    def finish(self, report: dict[str, Any] | None, note: str | None) -> None:
        """After the app exited: its final report (for leaks) and one line saying how it ended."""
        with self.lock:
            self.report = report
            self.final_note = note
            self.ended = True
            self.stall_now = None
            if report:
                for stall in report.get("stalls") or []:
                    self._keep_stall(stall)

    # -- output (render thread) ---------------------------------------------------------
    def view(self) -> View:
        with self.lock:
            return self._view()

    def _view(self) -> View:
        hello = self.hello or {}
        snap = self.snapshot
        now = self.clock()
        since = now - self.received if self.received is not None else 0.0
        argv = hello.get("argv") or []
        view = View(
            app=os.path.basename(str(argv[0])) if argv else "?",
            pid=hello.get("pid"),
            cwd=hello.get("cwd"),
            threshold_ms=hello.get("threshold_ms"),
            dropped=self.dropped,
            bad_lines=self.bad_lines + self.rejected,
            other_processes=len(self.other_connections),
        )
        loop = snap.get("loop") or hello.get("loop") or (self.report or {}).get("loop")
        view.loop_kind = str(loop.get("kind")) if isinstance(loop, dict) else "no loop yet"
        if self.received is not None:
            view.uptime_s = self.t + (since if not self.ended else 0.0)
        dispatcher = snap.get("dispatcher")
        if isinstance(dispatcher, dict):
            view.busy_fraction = dispatcher.get("busy_fraction")
        view.lag = snap.get("lag") if isinstance(snap.get("lag"), dict) else None
        view.lag_recent = [float(pair[1]) for pair in snap.get("lag_recent") or []
                           if isinstance(pair, (list, tuple)) and len(pair) == 2]
        view.slow_callbacks = [r for r in snap.get("slow_callbacks") or [] if isinstance(r, dict)]
        view.blocking = [r for r in snap.get("blocking_calls") or [] if isinstance(r, dict)]
        view.stalls = [self.stalls[k] for k in sorted(self.stalls)]
        summary = snap.get("stall_summary") or {}
        view.stall_count = max(int(summary.get("count", 0) or 0), len(self.stalls))
        view.stall_max_ms = max([float(summary.get("max_ms", 0) or 0)]
                                + [float(s.get("duration_ms", 0) or 0) for s in view.stalls])
        view.tasks = snap.get("tasks") if isinstance(snap.get("tasks"), dict) else None
        report = self.report
        if report:
            _final_figures(view, report)
        _other_threads(view, snap, report, since if not self.ended else None)
        self._state(view, since)
        return view

    def _state(self, view: View, since: float) -> None:
        if self.ended:
            view.state = "ended"
            view.state_text = self.final_note or _exit_text(self.exit)
            return
        if self.received is None:
            return
        stall = self.stall_now
        if stall is not None:
            view.state = "stalled"
            elapsed = float(stall.get("duration_ms", 0) or 0) + since * 1000.0
            view.stall_now, view.stall_now_ms = stall, elapsed
            view.state_text = stall_text(elapsed, stall, view.cwd)
            return
        if since > SILENT_AFTER:
            view.state = "silent"
            view.state_text = (f"NO DATA for {since:.1f} s: the app may be holding the GIL, "
                               "stopped, or gone")
            return
        view.state = "ok"
        view.state_text = "OK"


def _final_figures(view: View, report: dict[str, Any]) -> None:
    """The final screen's figures from the report's model, as every other view of the
    report has them (``looptools.report.model``): stalls, lag, Qt busy, tasks, slow
    callbacks and blocking calls."""
    model = model_of(report)
    view.stall_count = model.stalls.count
    view.stall_max_ms = model.stalls.max_ms
    if model.lag is not None:
        view.lag = {"p50_ms": model.lag.p50_ms, "p99_ms": model.lag.p99_ms,
                    "max_ms": model.lag.max_ms}
    if model.dispatcher is not None:
        view.busy_fraction = model.dispatcher.busy_fraction
    if model.tasks is not None:
        view.leaked = len(model.tasks.leaked)
        view.tasks = {**(view.tasks or {}), "peak_pending": model.tasks.peak,
                      "long_pending": len(model.tasks.long_pending),
                      "unretrieved_exceptions": len(model.tasks.unretrieved)}
        if model.tasks.pending_now is not None:
            view.tasks["pending_now"] = model.tasks.pending_now
    view.slow_callbacks = [dict(row) for row in model.slow_callbacks] or view.slow_callbacks
    view.blocking = [{"call": call.call, "count": call.count, "total_ms": call.total_ms,
                      "sites": [dict(site) for site in call.sites]}
                     for call in model.blocking.calls] or view.blocking


def _rows(value: Any) -> list[dict[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def _other_threads(view: View, snap: dict[str, Any], report: dict[str, Any] | None,
                   since: float | None) -> None:
    """The Threads panel's rows: from the last snapshot (a few rows each), or, once there
    is one, from the final report's model (every row; a section the report lacks, as one
    rebuilt from the stream does, stays the snapshot's).  ``since``: seconds since the
    snapshot while the app runs (a worker stall going on keeps counting), None once it
    ended."""
    workers = _dict(snap.get("worker_loops"))
    loops, threads = _count(workers.get("loops")), _rows(workers.get("threads"))
    handoffs, sites = _rows(snap.get("handoffs")), _count(snap.get("handoff_sites"))
    affinity, affinity_sites = _rows(snap.get("affinity")), _count(snap.get("affinity_sites"))
    now = _rows(workers.get("stalled_now")) if since is not None else []
    if report:
        model = model_of(report)
        if "worker_loops" in report:
            section = model.worker_loops
            loops = section.loops if section is not None else 0
            threads = [dict(row) for row in section.threads] if section is not None else []
        if "handoffs" in report:
            handoffs = [dict(row) for row in model.handoffs.rows]
            sites = len(handoffs)
        if "affinity" in report:
            affinity = [dict(row) for row in model.affinity.violations]
            affinity_sites = len(affinity) + _count(_dict(report["affinity"]).get("dropped"))
    view.worker_loops = loops
    view.worker_threads = sorted(
        (row for row in threads if _count(_dict(row.get("stalls")).get("count"))),
        key=lambda row: -_number(_dict(row.get("stalls")).get("total_ms")))
    view.worker_stalled_now = [{**stall, "duration_ms": _number(stall.get("duration_ms"))
                                + (since or 0.0) * 1000.0} for stall in now]
    view.handoffs = sorted(handoffs, key=lambda row: (-_number(row.get("p99_ms")),
                                                      -_number(row.get("max_ms"))))
    view.handoff_sites = max(sites, len(handoffs))
    view.affinity = affinity
    view.affinity_sites = max(affinity_sites, len(affinity))


def _exit_text(exit_info: dict[str, Any] | None) -> str:
    if not exit_info:
        return "ENDED"
    reason = exit_info.get("reason")
    if reason == "exception":
        return f"ENDED: crashed with {exit_info.get('exception')}"
    if reason == "signal":
        return f"ENDED by {exit_info.get('signal')}"
    if reason == "exit":
        return f"ENDED with status {exit_info.get('code')}"
    return "ENDED normally"


# -- the panels -----------------------------------------------------------------------------
def _rows_for(options: ConsoleOptions, reserved: int = 3) -> int:
    """How many table rows fit: the region's height minus borders and the header row."""
    height = options.height or 10
    return max(0, height - reserved)


class HeaderPanel:
    """App, pid, loop, uptime, and the state: OK, or STALLED … while a stall goes on."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.state.view()
        up = f"up {view.uptime_s:.1f} s" if view.uptime_s is not None else "starting"
        pid = f"pid {view.pid}" if view.pid is not None else "pid ?"
        title = f"looptools · {view.app} · {pid} · {view.loop_kind} · {up}"
        style = {"ok": "bold green", "stalled": "bold white on red", "silent": "bold yellow",
                 "ended": "bold cyan", "waiting": "dim"}[view.state]
        # Two lines where the region has room (narrow terminals), so the culprit's
        # file:line is not cut off.
        lines = max(1, (options.height or 3) - 2)
        state_text = view.state_text
        stall, elapsed = view.stall_now, view.stall_now_ms
        if stall is not None and elapsed is not None:
            # Shorten the culprit rather than lose its line number at the edge; with two
            # lines, the function goes on the first and file:line on the second.
            width = options.max_width - 4
            culprit = stall.get("culprit")
            if len(state_text) > width and lines > 1 and culprit:
                head = f"STALLED {fmt_ms(elapsed)} in "
                gil = " (GIL held)" if stall.get("gil_held") else ""
                state_text = (head + clip_left(str(culprit.get("function") or "?"),
                                               width - len(head)) + "\n"
                              + place(culprit, view.cwd, width - len(gil)) + gil)
            elif len(state_text) > width:
                state_text = stall_text(elapsed, stall, view.cwd, width)
        text = Text(state_text, style=style, no_wrap=lines == 1, overflow="ellipsis")
        border = "red" if view.state == "stalled" else "blue"
        yield Panel(text, title=Text(title, no_wrap=True, overflow="ellipsis"),
                    title_align="left", border_style=border, height=lines + 2)


class LoopPanel:
    """Event-loop utilisation (Qt dispatcher busy %) and lag p50/p99 with a sparkline."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.state.view()
        width = max(10, options.max_width - 4)
        busy = Text("busy ", style="bold")
        if view.busy_fraction is None:
            busy.append("n/a" if view.loop_kind not in ("qasync", "qtasyncio", "qt")
                        else "-", style="dim")
        else:
            pct = min(100.0, max(0.0, 100.0 * float(view.busy_fraction)))
            bar = max(4, min(20, width - 12))
            filled = round(bar * pct / 100.0)
            busy.append(f"{pct:3.0f}% ", style="red" if pct >= 80 else "green")
            busy.append("█" * filled + "░" * (bar - filled), style="red" if pct >= 80 else "green")
        lag = Text("lag ", style="bold")
        if view.lag:
            lag.append(f"p50 {fmt_ms(view.lag.get('p50_ms'))}  "
                       f"p99 {fmt_ms(view.lag.get('p99_ms'))}")
        else:
            lag.append("-", style="dim")
        spark = Text("max ", style="bold")
        spark.append(f"{fmt_ms(view.lag.get('max_ms')) if view.lag else '-'} ")
        recent = view.lag_recent[-max(1, width - len(spark)):]
        scale = max([view.threshold_ms or 50.0, *recent])
        ascii_only = not console.encoding.lower().startswith("utf")
        spark.append(sparkline(recent, scale, ascii_only), style="magenta")
        for line in (busy, lag, spark):
            line.no_wrap = True
            line.overflow = "ellipsis"
        yield Panel(Group(busy, lag, spark), title="Loop", title_align="left",
                    border_style="blue", height=5)


class TasksPanel:
    """Tasks pending now and at peak, long-pending, leaked at exit; stall count; drops."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich__(self) -> Panel:
        view = self.state.view()
        tasks = view.tasks or {}
        leaked = "-" if view.leaked is None else str(view.leaked)
        first = Text.assemble(
            ("tasks ", "bold"), f"{tasks.get('pending_now', '-')} "
            f"(peak {tasks.get('peak_pending', '-')})  long {tasks.get('long_pending', '-')}"
            "  leaked ", (leaked, "red" if view.leaked else ""))
        second = Text.assemble(
            ("stalls ", "bold"), (f"{view.stall_count}", "red" if view.stall_count else ""),
            f" (max {fmt_ms(view.stall_max_ms) if view.stall_count else '-'})"
            f"  lost exc {tasks.get('unretrieved_exceptions', 0)}")
        third = Text.assemble(("stream ", "bold"),
                              (f"dropped {view.dropped}", "yellow" if view.dropped else ""),
                              f"  bad lines {view.bad_lines}")
        if view.other_processes:
            third.append(f" · +{view.other_processes} other process(es)", style="dim")
        for line in (first, second, third):
            line.no_wrap = True
            line.overflow = "ellipsis"
        return Panel(Group(first, second, third), title="Tasks & stream", title_align="left",
                     border_style="blue", height=5)


def _table(narrow: bool) -> Table:
    return Table(box=None, expand=True, pad_edge=False, show_edge=False,
                 padding=(0, 1), header_style="bold dim")


class StallsPanel:
    """Recent stalls: when, how long, the culprit function and file:line."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.state.view()
        narrow = options.max_width < 60
        table = _table(narrow)
        table.add_column("at", justify="right", no_wrap=True, width=5 if narrow else 7)
        table.add_column("took", justify="right", no_wrap=True, width=7 if narrow else 8)
        table.add_column("culprit", no_wrap=True, overflow="ellipsis", ratio=1)
        if not narrow:
            table.add_column("where", no_wrap=True, overflow="ellipsis", ratio=1)
        room = _rows_for(options)
        current = [view.stall_now] if view.stall_now else []
        rows = (current + list(reversed(view.stalls)))[:room]
        # Column budgets (borders, padding and the two fixed columns taken off), so that
        # names and paths are cut from the left and line numbers stay visible.
        flexible = max(8, options.max_width - 4 - (5 + 7 + 4 if narrow else 7 + 8 + 6))
        for stall in rows:
            culprit = stall.get("culprit") or {}
            gil = " GIL" if stall.get("gil_held") else ""
            name = str(culprit.get("function") or stall.get("callback") or "?")
            now = stall is view.stall_now
            cells: list[Any] = [Text("now", style="bold red") if now
                                else f"{float(stall.get('started_at_s', 0)):.1f}s",
                                fmt_ms(view.stall_now_ms if now else stall.get("duration_ms"))]
            if narrow:
                text = where(culprit, view.cwd, flexible - len(gil)) if culprit else name
                cells.append(Text(text + gil, style="red"))
            else:
                cells.append(Text(clip_left(name, flexible // 2), style="red"))
                cells.append(place(culprit, view.cwd, flexible - flexible // 2 - len(gil))
                             + gil)
            table.add_row(*cells)
        if not rows:
            table.add_row("", "", Text("no stalls", style="dim"), *([""] if not narrow else []))
        yield Panel(table, title=f"Recent stalls ({view.stall_count})", title_align="left",
                    border_style="red" if view.stall_count else "blue",
                    height=options.height)


class SlowCallbacksPanel:
    """Slow callbacks by total time: name, count, total, max, p99, location."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.state.view()
        narrow = options.max_width < 60
        table = _table(narrow)
        table.add_column("callback", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("n", justify="right", no_wrap=True)
        table.add_column("total", justify="right", no_wrap=True)
        if not narrow:
            table.add_column("max", justify="right", no_wrap=True)
            table.add_column("p99", justify="right", no_wrap=True)
            table.add_column("location", no_wrap=True, overflow="ellipsis", ratio=1)
        for row in view.slow_callbacks[: _rows_for(options)]:
            cells = [str(row.get("name", "?")), str(row.get("count", "")),
                     fmt_ms(row.get("total_ms"))]
            if not narrow:
                location = str(row.get("location") or "")
                file, _, line = location.rpartition(":")
                frame = {"file": file, "line": line} if file else None
                budget = max(8, (options.max_width - 34) // 2)  # minus 4 fixed columns
                shown = place(frame, view.cwd, budget) if frame else location
                cells += [fmt_ms(row.get("max_ms")), fmt_ms(row.get("p99_ms")), shown]
            table.add_row(*cells)
        if not view.slow_callbacks:
            table.add_row(Text("none over the threshold", style="dim"), "", "",
                          *(["", "", ""] if not narrow else []))
        yield Panel(table, title="Slow callbacks", title_align="left", border_style="blue",
                    height=options.height)


class BlockingPanel:
    """Blocking calls made on the loop thread, by call and first call site."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.state.view()
        narrow = options.max_width < 60
        table = _table(narrow)
        table.add_column("call", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("n", justify="right", no_wrap=True)
        table.add_column("site", no_wrap=True, overflow="ellipsis", ratio=2)
        budget = max(8, (options.max_width - 4 - 6) * 2 // 3 - 2)
        for row in view.blocking[: _rows_for(options)]:
            sites = row.get("sites") or []
            site = where(sites[0], view.cwd, budget) if sites else "?"
            table.add_row(str(row.get("call", "?")), str(row.get("count", "")), site)
        if not view.blocking:
            table.add_row(Text("none", style="dim"), "", "")
        yield Panel(table, title="Blocking calls", title_align="left", border_style="blue",
                    height=options.height)


def _fit(before: str, frame: Callable[[int], str], after: str, extras: Iterable[str],
         width: int, floor: int = 14) -> str:
    """``before`` + ``frame(room)`` + ``after`` + the ``extras`` that fit, in order (the
    last ones are left out first); ``frame`` gets the room that is left, at least
    ``floor`` (what still overflows is cut at the end when drawn)."""
    kept = list(extras)
    while kept and width - len(before + after + "".join(kept)) < floor:
        kept.pop()
    room = max(floor, width - len(before + after + "".join(kept)))
    return before + frame(room) + after + "".join(kept)


def _frame_or(frame: Any, fallback: Any, cwd: str | None) -> Callable[[int], str]:
    """``where(frame)`` fitted to a width, or ``fallback`` (a callback's name) cut to it."""
    if isinstance(frame, dict):
        return lambda room: where(frame, cwd, room)
    return lambda room: clip_left(str(fallback or "?"), room)


def _culprit_or(frame: Any, fallback: Any, cwd: str | None) -> Callable[[int], str]:
    """Like :func:`_frame_or`, but where there is no room for the function and its
    ``file:line`` both, the function alone: it is what names a stall."""
    if not isinstance(frame, dict):
        return _frame_or(frame, fallback, cwd)

    def text(room: int) -> str:
        full = where(frame, cwd, room)
        if " (" in full:
            return full
        return clip_left(str(frame.get("function") or "?").rsplit(".", 1)[-1], room)
    return text


def _wanted(frame: Any, width: int) -> int:
    """The room ``where`` needs to keep a frame's function, ``fn (file.py:12)``, up to
    half the line: a line gives up its extras before that."""
    if not isinstance(frame, dict):
        return 14
    function = str(frame.get("function") or "?").rsplit(".", 1)[-1]
    file = os.path.basename(str(frame.get("file") or "?"))
    return min(max(14, width // 2), len(f"{function} ({file}:{frame.get('line')})"))


def clip_right(text: str, width: int) -> str:
    """Cut at the end: the start of a thread's name is what tells it apart."""
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def _thread_kind(name: Any, kinds: Iterable[Any], width: int) -> str:
    """``device-poller (asyncio)``; the thread's name alone in a narrow panel."""
    thread = clip_right(str(name or "?"), max(8, width // 4))
    return f"{thread} ({'/'.join(str(k) for k in kinds) or '?'})" if width >= 50 else thread


def worker_stall_now_line(stall: dict[str, Any], cwd: str | None, width: int) -> str:
    """``device-poller (asyncio) STALLED 1.20 s in read_device (app.py:35)``."""
    head = (f"{_thread_kind(stall.get('thread'), [stall.get('loop_kind') or '?'], width)} "
            f"STALLED {fmt_ms(_number(stall.get('duration_ms')))} in ")
    return _fit(head, _culprit_or(stall.get("culprit"), stall.get("callback"), cwd), "", (),
                width)


def worker_line(row: dict[str, Any], cwd: str | None, width: int) -> str:
    """``device-poller (asyncio) 1 stall, max 300 ms in read_device (app.py:35)``."""
    stalls, kinds, worst = (_dict(row.get(key)) for key in ("stalls", "kinds", "worst"))
    head = (f"{_thread_kind(row.get('thread'), kinds, width)} "
            f"{plural(_count(stalls.get('count')), 'stall')}, "
            f"max {fmt_ms(_number(stalls.get('max_ms')))} in ")
    return _fit(head, _culprit_or(worst.get("culprit"), worst.get("callback"), cwd), "", (),
                width)


def handoff_line(row: dict[str, Any], cwd: str | None, width: int) -> str:
    """``audio (app.py:57) ×214  p99 272 ms  max 292 ms  held by build_index  [audio]``:
    the posting site, how many, how long they waited, the culprit of the stall that held
    the loop through the longest wait, and the posting thread."""
    held = row.get("worst_during_stall_in")
    extras = []
    if isinstance(held, dict):
        extras.append(f"  held by {clip_left(str(held.get('function') or '?'), 32)}")
    if row.get("thread"):
        extras.append(f"  [{clip_right(str(row['thread']), 24)}]")
    after = (f" ×{_count(row.get('count'))} " if width >= 50 else "") + \
        f" p99 {fmt_ms(_number(row.get('p99_ms')))}  max {fmt_ms(_number(row.get('max_ms')))}"
    site = row.get("site")
    return _fit("", _frame_or(site, "?", cwd), after, extras, width, _wanted(site, width))


def affinity_line(row: dict[str, Any], cwd: str | None, width: int) -> str:
    """``hotkey (app.py:69) QObject::startTimer from hotkey, owner MainThread, on QLabel
    'status' ×3``: the call site, the call, the calling and owning threads, the object."""
    def name(thread: Any) -> str | None:
        return str(thread.get("name") or thread.get("ident") or "?") \
            if isinstance(thread, dict) else None

    extras = []
    calling, owner = name(row.get("calling_thread")), name(row.get("owner_thread"))
    if calling:
        extras.append(f" from {clip_right(calling, 24)}")
    if owner:
        extras.append(f", owner {clip_right(owner, 24)}")
    obj = row.get("object")
    if isinstance(obj, dict) and obj.get("class"):
        label = str(obj["class"]) + (f" {obj['object_name']!r}" if obj.get("object_name")
                                     else "")
        extras.append(f", on {clip_left(label, 32)}")
    if _count(row.get("count")) > 1:
        extras.append(f" ×{row['count']}")
    after = f" {clip_left(str(row.get('call') or '?'), 32)}"
    site = row.get("site")
    return _fit("", _frame_or(site, "?", cwd), after, extras, width, _wanted(site, width))


def thread_groups(view: View) -> list[tuple[str, list[tuple[dict[str, Any], str]]]]:
    """The Threads panel's groups that have rows, in order: (label, [(row, kind)])."""
    groups: list[tuple[str, list[tuple[dict[str, Any], str]]]] = [
        ("worker", [(s, "now") for s in view.worker_stalled_now]
         + [(r, "worker") for r in view.worker_threads]),
        ("hand-off", [(r, "handoff") for r in view.handoffs]),
        ("affinity", [(r, "affinity") for r in view.affinity]),
    ]
    return [(label, rows) for label, rows in groups if rows]


def _share(sizes: list[int], room: int) -> list[int]:
    """Lines per group: one each in order while there is room, then round-robin."""
    shown = [0] * len(sizes)
    while room > 0:
        given = False
        for i, size in enumerate(sizes):
            if room > 0 and shown[i] < size:
                shown[i] += 1
                room -= 1
                given = True
        if not given:
            break
    return shown


class ThreadsPanel:
    """Other threads: worker-thread loops that stalled (and one stalled now), the slowest
    hand-off sites, thread-affinity violations.  Hidden when there is none of these."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.state.view()
        groups = thread_groups(view)
        width = max(10, options.max_width - 4)
        labelled = width >= 86  # a label column where it does not cost the culprits
        label_width = 9 if labelled else 0
        text_width = width - label_width
        shown = _share([len(rows) for _, rows in groups], (options.height or 5) - 2)
        lines: list[Text] = []
        threshold = view.threshold_ms or 50.0
        for (label, rows), count in zip(groups, shown, strict=True):
            for index, (row, kind) in enumerate(rows[:count]):
                style = ""
                if kind == "now":
                    text, style = worker_stall_now_line(row, view.cwd, text_width), "bold red"
                elif kind == "worker":
                    text = worker_line(row, view.cwd, text_width)
                elif kind == "handoff":
                    text = handoff_line(row, view.cwd, text_width)
                    style = "yellow" if _number(row.get("max_ms")) >= threshold else ""
                else:
                    text = affinity_line(row, view.cwd, text_width)
                line = Text(no_wrap=True, overflow="ellipsis")
                if labelled:
                    line.append((label if index == 0 else "").ljust(label_width), style="bold")
                line.append(text, style=style)
                lines.append(line)
        parts = [plural(view.worker_loops, "worker loop") if view.worker_loops else "",
                 plural(view.handoff_sites, "hand-off site") if view.handoff_sites else "",
                 plural(view.affinity_sites, "affinity site") if view.affinity_sites else ""]
        title = " · ".join(["Threads", *filter(None, parts)])
        border = "red" if view.worker_stalled_now else \
            "yellow" if view.worker_threads or view.affinity else "blue"
        yield Panel(Group(*lines), title=Text(title, no_wrap=True, overflow="ellipsis"),
                    title_align="left", border_style=border, height=options.height)


class Dashboard:
    """The whole screen: the panels placed once in a layout that fits the terminal.

    80×24 shows everything; narrower terminals stack the panels and drop columns;
    shorter ones drop the lower tables first.  The Threads panel (other threads) is
    there only when it has something to show, at the bottom: the main loop's panels
    stay where they are, and it takes its rows after the stalls' (see ``_fit``).
    """

    def __init__(self, state: DashboardState, height: int | None = None) -> None:
        self.state = state
        self.height = height
        self.header = HeaderPanel(state)
        self.loop = LoopPanel(state)
        self.tasks = TasksPanel(state)
        self.stalls = StallsPanel(state)
        self.slow = SlowCallbacksPanel(state)
        self.blocking = BlockingPanel(state)
        self.threads = ThreadsPanel(state)
        self.wide = Layout(name="root")
        self.wide.split_column(
            Layout(self.header, name="header", size=3),
            Layout(name="vitals", size=5),
            Layout(self.stalls, name="stalls"),
            Layout(self.slow, name="slow"),
            Layout(self.blocking, name="blocking"),
            Layout(self.threads, name="threads"),
        )
        self.wide["vitals"].split_row(Layout(self.loop, name="loop"),
                                      Layout(self.tasks, name="tasks"))
        self.narrow = Layout(name="root")
        self.narrow.split_column(
            Layout(self.header, name="header", size=4),
            Layout(self.loop, name="loop", size=5),
            Layout(self.tasks, name="tasks", size=5),
            Layout(self.stalls, name="stalls"),
            Layout(self.slow, name="slow"),
            Layout(self.blocking, name="blocking"),
            Layout(self.threads, name="threads"),
        )

    def _fit(self, layout: Layout, room: int) -> None:
        """Give the tables the rows they need, stalls first; hide what does not fit."""
        view = self.state.view()
        groups = [len(rows) for _, rows in thread_groups(view)]
        # (panel, rows it needs, rows it must have to be shown): the Threads panel one
        # line per group (three at most) before the main loop's lesser tables, then more.
        needs = [("stalls", 3 + max(1, len(view.stalls) + (view.stall_now is not None)), 4),
                 ("threads", 2 + sum(groups), 2 + len(groups) if groups else 0),
                 ("slow", 3 + max(1, len(view.slow_callbacks)), 4),
                 ("blocking", 3 + max(1, len(view.blocking)), 4)]
        sizes = {name: 0 for name, _, _ in needs}
        # Each table gets one row while there is room, in priority order; then the
        # rows they still want, in the same order; what is left goes to the stalls.
        for name, _, least in needs:
            if least and room >= least:
                sizes[name] = least
                room -= least
            elif name == "threads" and least and room >= 3 and sizes["stalls"]:
                sizes[name] = room  # fewer groups than it has, rather than none
                room = 0
        for name, need, _ in needs:
            if sizes[name] and need > sizes[name]:
                extra = min(room, need - sizes[name])
                sizes[name] += extra
                room -= extra
        if room and sizes["stalls"]:
            sizes["stalls"] += room
        for name, size in sizes.items():
            layout[name].visible = size > 0
            layout[name].size = size or None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = max(8, self.height or ((options.height or console.height) - 1))
        wide = options.max_width >= 70
        layout = self.wide if wide else self.narrow
        fixed = 3 + 5 if wide else 4 + 5
        if not wide:
            # Stacked: the tasks panel goes first when the tables would not fit.
            show_tasks = height - fixed - 5 >= 8
            layout["tasks"].visible = show_tasks
            fixed += 5 if show_tasks else 0
        self._fit(layout, height - fixed)
        yield from layout.__rich_console__(console, options.update(height=height))
