"""The monitor: attaches to a loop, runs the detectors, writes the report.

Data flows one way: the loop plugin's hooks and the heartbeat feed detectors on
the loop thread; the watchdog thread feeds the stall detector; reports and
snapshots are built from the detectors off the hot path.
"""

from __future__ import annotations

import _thread
import asyncio
import atexit
import contextlib
import dataclasses
import datetime
import enum
import functools
import gc
import json
import os
import signal
import sys
import threading
import time
from types import TracebackType
from typing import Any, NoReturn, cast

from looptools._safewrite import names_a_folder, why, write_fallback
from looptools.inapp import _attach, _sigtaken, _sigterm_view, _wakeup
from looptools.inapp._shield import GuardedSlot, guarded_slot
from looptools.inapp.detectors import build
from looptools.inapp.hub import Hub
from looptools.inapp.state import LoopState
from looptools.inapp.writer import LISTED_DETECTORS, empty_report, summary_lines, write_report
from looptools.plugins import Driver, LoopPlugin, plugin_for
from looptools.settings import Settings, resolve

_active: Monitor | None = None
_fork_hooks = False


def _before_fork() -> None:
    monitor = _active
    if monitor is not None:
        monitor._before_fork()


def _after_fork_in_parent() -> None:
    monitor = _active
    if monitor is not None:
        monitor._after_fork_in_parent()


def _after_fork_in_child() -> None:
    monitor = _active
    if monitor is not None:
        monitor._forget_in_child()


def _ended_the_program() -> bool:
    """Whether ``sys.last_traceback`` starts at a module's top level (the program
    itself, or runpy running it), not in a callback such as a Qt slot."""
    tb = getattr(sys, "last_traceback", None)
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    return code.co_name == "<module>" or "runpy" in code.co_filename


def _register_fork_hooks() -> None:
    """Once per process (``os.register_at_fork`` cannot be undone; the hooks do
    nothing while no monitor runs)."""
    global _fork_hooks
    if _fork_hooks or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
    _fork_hooks = True


class _QtImportWatch:
    """A ``sys.meta_path`` entry that finds nothing: it tells the Qt-only probe
    that a Qt module starts importing.  Removed when the probe ends."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.startswith(_QT_MODULES):
            try:
                self._monitor._qt_import_started()
            except Exception:
                pass
        return None


def _inside_qt_making(frame: Any) -> bool:
    """Is the interrupted code (``frame`` and its callers) importing a module of
    a Qt binding (or its sip/shiboken), making an enum (which the bindings
    do from C, at import or lazily), running the binding's own Python (PySide's
    import hook and signature support, which shiboken calls from C), or a
    finalizer (which any C code, a class being made lazily too, may set off)?"""
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        if filename == _ENUM_FILE or code.co_name == "__del__" \
                or filename.startswith(_BINDING_SUPPORT) or any(
                    part in filename for part in _BINDING_DIRS):
            return True
        if code.co_name == "_find_and_load" and (
                filename.startswith("<frozen importlib") or filename.endswith(_BOOTSTRAP)):
            name = frame.f_locals.get("name")
            if isinstance(name, str) and name.startswith(_QT_MODULES):
                return True
        frame = frame.f_back
    return False


_ENUM_FILE = enum.__file__
_BOOTSTRAP = os.path.join("importlib", "_bootstrap.py")
_QT_MODULES = ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip", "shiboken2", "shiboken6",
               "shibokensupport")
#: The bindings' own Python: PySide's support code is loaded from an embedded zip as
#: ``shibokensupport/...``; the rest sits in the packages' directories.
_BINDING_SUPPORT = "shibokensupport"
_BINDING_DIRS = tuple(f"{os.sep}{name}{os.sep}" for name in _QT_MODULES[:-1])


def _warn(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:
        pass


def active() -> Monitor | None:
    """The monitor that is running in this process, if any."""
    return _active


class Monitor:
    """Monitors the first event loop that runs on the main thread.

    ``Monitor(threshold_ms=20)`` takes settings as keyword arguments (they win
    over the environment and pyproject.toml); ``start()``/``stop()`` or use it as
    a context manager.  ``stop()`` returns the report as a dict and writes it to
    ``settings.report`` unless that is None.
    """

    def __init__(self, settings: Settings | None = None, *, exit_hooks: bool = False,
                 **overrides: Any) -> None:
        self.settings = settings if settings is not None else resolve(overrides)
        if self.settings.report and not os.path.isabs(self.settings.report):
            # Relative to where the app started: an app that changes folder later must
            # not put its report somewhere else (nor the summary name the wrong file).
            try:
                given = self.settings.report
                absolute = os.path.abspath(given)
                if names_a_folder(given):  # (abspath drops the slash: refused when written)
                    absolute = os.path.join(absolute, "")
                self.settings = dataclasses.replace(self.settings, report=absolute)
            except OSError:
                pass  # no current folder: left as given
        for problem in self.settings.problems:
            _warn(problem)
        self.hub = Hub(warn=_warn)
        for detector in build(self.settings, self.settings.enabled_detectors):
            self.hub.add(detector)
        if self.settings.stream or exit_hooks:
            # Streaming to `looptools profile` (settings.stream) or, for a process
            # monitored by install(), listening so `looptools dashboard PID` can
            # attach: a consumer of hub events and snapshots on its own thread.
            from looptools.live.stream import StreamWriter

            self._maybe_add_sampler()
            self.hub.add(StreamWriter(self.settings, self))
        self.state: LoopState | None = None
        #: the worker-thread loops detector (looptools.inapp.detectors.worker_loops), if on
        self._worker_loops: Any = self.hub.get("worker_loops")
        self.plugin: LoopPlugin | None = None
        self.exit_hooks = exit_hooks
        # Every *_at_s of the report counts from hub.started (perf_counter): started_at
        # is that instant on the wall clock, not the end of building the detectors.
        self.started_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
            seconds=time.perf_counter() - self.hub.started)
        self.started = self.hub.started
        self.attached_at: float | None = None
        self.loop_info: dict[str, Any] | None = None
        self.exit_info: dict[str, Any] = {"reason": "stopped", "signal": None, "exception": None}
        self.report_path: str | None = None
        self.final_report: dict[str, Any] | None = None
        self._interval = self.settings.heartbeat_ms / 1000.0
        self._due = 0.0
        self._next_tick = 0.0
        self._running = False
        self._wakeup_watched = False  # looptools.inapp._wakeup, from start to stop
        self._probe_switch = threading.Lock()  # see _probe_to_pending
        self._stopped = False
        self._lock = threading.RLock()
        # The Qt-only probe (see _start_qt_probe): a plain flag and a raw lock,
        # which a signal handler re-entering stop() cannot deadlock on (a
        # threading.Event's lock did, when SIGTERM came during its set()).
        self._probe_done = False
        self._probe_wake = _thread.allocate_lock()
        self._probe_wake.acquire()
        self._probe_thread: threading.Thread | None = None
        self._probe_signal: int | None = None
        #: How the probe thread has the main thread look: "signal" (a real-time
        #: signal, Linux) or "pending-call" (looptools.inapp._pending); None: no probe.
        self.qt_probe: str | None = None
        self._probe_send: Any = None
        self._probe_posted = False
        self._attaching = False
        #: the app's aboutToQuit connection (Qt-only attach), undone at detach
        self._quit_slot: tuple[Any, GuardedSlot] | None = None
        #: Qt 6 quit from inside a slot: the QObject whose deferred deletion marks
        #: the loop's stop, and the slot its ``destroyed`` calls (_qt_quitting)
        self._quit_mark: tuple[Any, GuardedSlot] | None = None
        #: loop starts so far; while a return to watching Qt is due, the count then
        self._runs = 0
        self._back_to_qt_at: int | None = None
        #: how long a loop that stopped inside Qt's must stay stopped before Qt is
        #: watched again (grows while the app keeps running loops: _back_off)
        self._back_delay_ms = 0
        self._back_since: float | None = None  # when Qt was last watched again
        self._changing = False  # the loop thread is in _loop_changed (holding our locks)
        self._probe_retiring = False
        self._probe_timer: Any = None
        self._probe_armed = False
        self._qt_seen_at: float | None = None  # when a Qt import was first seen
        self._import_watch: _QtImportWatch | None = None
        #: a collection is under way on the main thread (the probe's gc.callbacks
        #: pair, _watch_probe_collections), and the handler is running
        self._probe_collecting = False
        self._probe_gc: tuple[Any, Any] | None = None
        self._probe_gc_codes: tuple[Any, ...] = ()
        self._in_probe_handler = False
        self._qtbinding: Any = None
        #: binding name -> ((QtGui imported, QtWidgets imported), undo of the exec hook)
        self._exec_hooked: dict[str, tuple[tuple[bool, bool], Any]] = {}
        self._previous_sigterm: Any = None
        #: (what os._exit was, our wrapper) while ours is installed
        self._os_exit: tuple[Any, Any] | None = None
        self._shutdown_hook = False  # registered with threading (_at_shutdown)
        self._exiting = False  # stopping (or stopped) from our atexit call
        self._broken = False

    def _maybe_add_sampler(self) -> None:
        # `looptools profile --sampler yappi` asks for yappi through the environment;
        # profile always streams, so the sampler is added with the stream writer.
        if not os.environ.get("LOOPTOOLS_YAPPI") or self.hub.get("yappi") is not None:
            return
        try:
            from looptools.profilers import sampler_from_env

            sampler = sampler_from_env(lambda: self._stopped)
        except Exception as exc:
            _warn(f"looptools: cannot start yappi ({type(exc).__name__}: {exc}); no profile")
            return
        if sampler is not None:
            self.hub.add(sampler)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> Monitor:
        global _active
        if self._running:
            return self
        if _active is not None and _active is not self:
            raise RuntimeError("another looptools monitor is already running in this process")
        _active = self
        self._running = True
        _register_fork_hooks()
        if self._worker_loops is not None:
            self._worker_loops.start(self.hub.get("stalls"))
        _attach.install(self._on_running_loop, self._on_worker_loop)
        if threading.current_thread() is threading.main_thread():
            # From the start, across loops: an app that sets a signal wakeup
            # descriptor later is seen doing so (looptools.inapp._wakeup), uvloop's
            # import included; the probe's signals and the ticks stop writing to it.
            self._wakeup_watched = _wakeup.watch(self._wakeup_noted)
            loop = asyncio._get_running_loop()
            if loop is not None:
                self._on_running_loop(loop)
        if self._wants_heartbeat() or self.hub.get("handoffs") is not None \
                or self.hub.get("affinity") is not None:
            # A Qt main thread without asyncio is found by the probe; the hand-off
            # detector alone needs it too (QTimer.singleShot from threads), and so
            # does the affinity detector (Qt's message handler).
            self._start_qt_probe()
        if self.exit_hooks:
            self._install_exit_hooks()
        return self

    def stop(self, write: bool = True) -> dict[str, Any]:
        """Detach everything, build the report, write it; idempotent."""
        global _active
        with self._lock:
            if self._stopped:
                return self.final_report or self.report()
            self._stopped = True
            self._stop_qt_probe()
            self._detach()
            _attach.uninstall()
            if self._wakeup_watched:
                self._wakeup_watched = False
                _wakeup.unwatch(self._wakeup_noted)
            self._stop_worker_loops()
            self._remove_exit_hooks()
            if _active is self:
                _active = None
            self._running = False
            report = self.report()
            self.final_report = report
        # A process that never ran an event loop (`LOOPTOOLS=1` exported in a shell
        # reaches pip, linters, …) leaves no file and says nothing, unless a
        # report path was asked for explicitly (as `looptools profile` does).
        quiet = self.loop_info is None and not self._worker_loops_ran() \
            and self.settings.sources.get("report") == "default"
        if write and self.settings.report and not quiet:
            self.report_path = self._write(report)
        if self.settings.summary and self.exit_hooks and not quiet:
            for line in summary_lines(report, self.report_path):
                _warn(line)
        return report

    # -- fork ------------------------------------------------------------------------
    def _before_fork(self) -> None:
        for detector in list(self.hub.detectors):
            try:
                detector.before_fork()
            except Exception as exc:
                self.hub.disable(detector, exc, "before fork")

    def _after_fork_in_parent(self) -> None:
        for detector in list(self.hub.detectors):
            try:
                detector.after_fork_in_parent()
            except Exception as exc:
                self.hub.disable(detector, exc, "after fork")

    def _forget_in_child(self) -> None:
        """A child made by ``fork`` is not monitored: undo every patch the parent's
        monitor made, touching no thread, lock or Qt object (none survived), and
        write nothing.  The child then runs exactly as it would without us."""
        global _active
        if _active is self:
            _active = None
        self._lock = threading.RLock()
        self.hub._lock = threading.RLock()
        self._probe_done = True
        self._probe_thread = None  # it did not survive the fork
        self._unhook_exec()
        from looptools.inapp import _pending, _posix_timer

        _posix_timer.forget_all()
        self._probe_timer = None
        self._probe_send = None
        _pending.stop(self._qt_probe_pending)
        self._remove_import_watch()
        signum, self._probe_signal = self._probe_signal, None
        if signum is not None:
            try:
                if signal.getsignal(signum) == self._qt_probe_handler:
                    signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        self._stopped = True
        self._running = False
        self.exit_hooks_removed = True
        self._wakeup_watched = False
        _wakeup.forget()
        _sigtaken.forget()
        try:
            _attach.uninstall()
        except Exception:
            pass
        plugin, self.plugin = self.plugin, None
        self._quit_slot = None  # no Qt call in the child
        self._quit_mark = None
        if plugin is not None:
            try:
                plugin.forget_heartbeat()
                plugin.uninstall_timing()
            except Exception:
                pass
        for detector in list(self.hub.detectors):
            try:
                detector.forget()
            except Exception:
                pass
        self.state = None
        try:
            self._remove_exit_hooks()
        except Exception:
            pass

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.exit_info = {"reason": "exception", "signal": None,
                              "exception": f"{type(exc).__name__}: {exc}"}
        self.stop()

    # -- attaching -----------------------------------------------------------------
    def _wants_heartbeat(self) -> bool:
        needs = {"stalls", "lag", "dispatcher"}
        return bool(needs & {d.name for d in self.hub.detectors})

    def _on_running_loop(self, loop: Any) -> None:
        if self._broken or self._stopped:
            return
        self._changing = True
        try:
            self._loop_changed(loop)
        except Exception as exc:  # our failure must never become the app's
            self._broken = True
            _warn(f"looptools: could not attach to the event loop ({type(exc).__name__}: {exc}); "
                  "monitoring is off for this process")
            try:
                self._detach()
            except Exception:
                pass
        finally:
            self._changing = False

    def _on_worker_loop(self, loop: Any) -> None:
        """On a worker thread: a loop starts (or, None, stops) running there."""
        workers = self._worker_loops
        if workers is None or self._stopped or self._broken:
            return
        try:
            workers.loop_changed(loop)
        except Exception as exc:  # our failure must never become the app's
            self.hub.disable(workers, exc, "worker loop")

    def _stop_worker_loops(self) -> None:
        workers = self._worker_loops
        if workers is None:
            return
        try:
            workers.stop()
        except Exception as exc:
            self.hub.disable(workers, exc, "detach")

    def _worker_loops_ran(self) -> bool:
        workers = self._worker_loops
        return bool(workers is not None and workers.loops)

    def _loop_changed(self, loop: Any) -> None:
        now = time.perf_counter()
        state = self.state
        if loop is None:
            if state is not None and state.running and self.plugin is not None \
                    and self.plugin.kind != "qt":
                watch = state.end_watch
                if watch is not None:
                    # A run armed to be timed that stopped the loop reaches neither
                    # the next callback nor the selector (EndWatch): it ended now.
                    # Its slow callback was lost before (a fresh-eyes trial).
                    watch.reached()
                state.running = False
                self.plugin.stop_heartbeat()
                self.hub.call("loop_stopped", now)
            if state is not None:
                self.hub.call("loop_left", now)
            self._back_to_qt_later()
            return
        if state is None or state.loop is not loop:
            self._back_off(now)
            if state is not None:
                self._detach()
            self._attach_plugin(plugin_for(loop), loop)
            state = self.state
        assert state is not None
        self._start_running(now)

    def _back_to_qt_later(self) -> None:
        """(Main thread, a loop that is not Qt's just stopped.)  Inside a Qt app's event
        loop — an asyncio loop run to completion in a slot, a "guest" loop run a step
        at a time — Qt runs on when it stops, and must be watched again: the next Qt
        iteration attaches to the Qt main thread, unless the loop runs again (see
        :meth:`_back_to_qt`)."""
        plugin = self.plugin
        if plugin is None or plugin.is_qt or self._back_to_qt_at is not None \
                or self._stopped or self._broken \
                or threading.current_thread() is not threading.main_thread():
            return
        try:
            qtbinding = self._qtbinding
            if qtbinding is None:
                from looptools.plugins import _qtbinding as qtbinding
            binding = qtbinding.with_app()
            if binding is None or binding.QtCore.QThread.currentThread().loopLevel() < 1:
                return  # no Qt app, or not inside its event loop
            self._back_to_qt_in(binding, self._back_delay_ms)
        except Exception as exc:  # ours: the loop just stopped is still reported
            self._back_to_qt_at = -1  # (never asked again)
            _warn(f"looptools: cannot watch the Qt main thread again after its asyncio "
                  f"loop stopped ({type(exc).__name__}: {exc})")

    def _back_to_qt_in(self, binding: Any, ms: int) -> None:
        self._back_to_qt_at = self._runs
        binding.QtCore.QTimer.singleShot(
            ms, guarded_slot(functools.partial(self._back_to_qt, binding)).slot)

    def _back_to_qt(self, binding: Any) -> None:
        """(A Qt timer, main thread.)  The loop that stopped did not run again since:
        watch the Qt main thread (Qt-only).  If it ran meanwhile and stopped again (a
        guest loop, run a step at a time from Qt events) look again a threshold later,
        so that a loop started and stopped thousands of times a second costs one timer
        per threshold and no attach; if it runs now, its next stop asks again."""
        ran, self._back_to_qt_at = self._back_to_qt_at, None
        state = self.state
        if self._stopped or self._broken or state is None or state.running \
                or self.plugin is None or self.plugin.is_qt:
            return
        if ran != self._runs:
            self._back_to_qt_in(binding, max(round(self.settings.threshold_s * 1000),
                                             self._back_delay_ms, 1))
            return
        self._detach()
        self.plugin = None
        self.state = None
        self._attach_qt_only(binding)
        self._back_since = time.perf_counter()

    def _back_off(self, now: float) -> None:
        """(A loop starts where Qt was watched again after one stopped.)  An app that
        runs asyncio loops again and again from Qt (a timer's slot every few ms)
        would pay an attach and a detach each time (~1.5 ms each, a fresh-eyes trial
        measured its runs 7x dearer): each time it comes back soon, the next loop
        must stay stopped twice as long (from a threshold, up to 2 s) before Qt is
        watched again; after a while in Qt alone, at once again."""
        since, self._back_since = self._back_since, None
        if since is None or self.plugin is None or self.plugin.kind != "qt":
            return
        delay = self._back_delay_ms
        if now - since < max(1.0, 4.0 * delay / 1000.0):
            threshold_ms = max(1, round(self.settings.threshold_s * 1000))
            self._back_delay_ms = min(max(2 * delay, threshold_ms), 2000)
        else:
            self._back_delay_ms = 0

    def _attach_plugin(self, plugin: LoopPlugin, loop: Any) -> None:
        state = LoopState(loop, threading.get_ident(), self.settings.threshold_s)
        state.conservative = plugin.conservative
        self.state = state
        self.plugin = plugin
        self._end_qt_probe()  # attached: the Qt-only probe can go now
        if threading.current_thread() is threading.main_thread():
            self._unhook_exec()
        self.attached_at = time.perf_counter()
        names = {d.name for d in self.hub.detectors}
        if names & {"slow_callbacks", "stalls"}:
            # The lean hot path needs the watchdog to arm long runs.
            plugin.always_precise = "stalls" not in names
            plugin.install_timing(state)
            call = self.hub.call

            def slow(handle: Any, started: float, duration: float) -> None:
                call("slow_callback", handle, started, duration)

            state.slow = slow
        self.hub.call("attach", state, plugin)
        # Taken now: at exit the plugin is detached and Qt may be gone.
        self.loop_info = plugin.info()
        self.loop_info["attached_at_s"] = round(self.attached_at - self.started, 6)

    def _start_running(self, now: float) -> None:
        state = self.state
        plugin = self.plugin
        assert state is not None and plugin is not None
        if self._wants_heartbeat():
            plugin.stop_heartbeat()
            # The watchdog thread wakes every few ms: it can send asyncio's probes.
            driver = cast("Driver | None", self.hub.get("stalls"))
            plugin.start_heartbeat(self._beat, self._interval, driver)
            # Timestamps after starting the heartbeat: the first QTimer can take
            # tens of ms (PySide6 initialises lazily), which is ours, not a stall.
            now = time.perf_counter()
            self._due = now + self._interval
            self._next_tick = now
        state.restart(now)
        state.running = True
        self._runs += 1
        self.hub.call("loop_started", now)

    def _detach(self) -> None:
        plugin, state = self.plugin, self.state
        if plugin is None:
            return
        if state is not None and state.running:
            state.running = False
            self.hub.call("loop_stopped", time.perf_counter())
        for detector in list(self.hub.detectors):
            try:
                detector.detach()
            except Exception as exc:
                self.hub.disable(detector, exc, "detach")
        try:
            plugin.stop_heartbeat()
        finally:
            plugin.uninstall_timing()
            if state is not None:
                state.slow = None
            self._disconnect_quit()
            self._drop_quit_mark()

    def _disconnect_quit(self) -> None:
        quit_slot, self._quit_slot = self._quit_slot, None
        if quit_slot is None:
            return
        app, slot = quit_slot
        try:
            app.aboutToQuit.disconnect(slot.slot)
        except Exception:  # gone with the application (PySide2 at exit: AttributeError)
            pass
        slot.close()

    def _beat(self, sent: float | None = None) -> None:
        """The heartbeat, on the loop thread: O(1) unless an audit is due.

        ``sent`` is when a probe was queued (plain asyncio); otherwise the beat
        is a timer and its lag is measured against its schedule.
        """
        state = self.state
        if sent is None and state is not None and state.idle_frame is None \
                and self.plugin is not None and self.plugin.is_qt:
            # A Qt timer called us from Qt's event loop: the Python frame
            # below the timer's slot (looptools.inapp._shield) is where the
            # loop thread idles.
            code = sys._getframe(2).f_code
            state.idle_frame = (getattr(code, "co_qualname", code.co_name),
                                code.co_filename)
        self._beat_now(sent)

    def _beat_now(self, sent: float | None) -> None:
        now = time.perf_counter()
        state = self.state
        if state is None:
            return
        if sent is not None:
            lag = now - sent
        else:
            due = self._due
            lag = now - due if now > due else 0.0
            next_due = due + self._interval
            self._due = next_due if next_due > now else now + self._interval
        state.last_beat = now
        state.beats += 1
        hub = self.hub
        hub.call("heartbeat", now, lag)
        if now >= self._next_tick:
            self._next_tick = now + self.settings.task_audit_s
            hub.call("tick", now)
        hub.call("beat_done")

    # -- the Qt-only probe ---------------------------------------------------------
    def _start_qt_probe(self) -> None:
        """Attach to a Qt main thread that never starts an asyncio loop (any binding).

        Only the main thread may touch Qt: a probe thread that called
        ``QCoreApplication.instance()`` itself crashed an app at exit and hung
        one once (PySide builds its enums lazily, and not thread-safely).  So
        the thread only sends a free real-time signal to the main thread while a
        Qt binding is imported (every 10 ms for the first 2 s, then 0.25 s), and
        the handler — on the main thread, between two bytecodes — looks for the
        app: inside its event loop it attaches at once, before it posts the
        attach to the loop.  An
        app that idles in Qt's C++ runs no Python until a slot runs: it is
        attached then.  Without real-time signals or ``pthread_kill`` (macOS,
        Windows) the thread has the main thread run the handler through
        CPython's pending calls instead (looptools.inapp._pending), and without
        POSIX timers it sends every 1 ms itself.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        from looptools.inapp import _posix_timer
        from looptools.plugins import _qtbinding

        # Imported here, not in the handler, which may run in the middle of
        # any import the main thread is making.
        self._qtbinding = _qtbinding
        main = threading.main_thread().ident
        signals = _posix_timer.free_signals(1)
        if signals and hasattr(signal, "pthread_kill") and main is not None:
            signum = signals[0]
            try:
                signal.signal(signum, self._qt_probe_handler)
                signal.siginterrupt(signum, False)
            except (OSError, ValueError, AttributeError):
                return
            self._probe_signal = signum
            self._probe_send = functools.partial(signal.pthread_kill, main, signum)
            self.qt_probe = "signal"
            # The 1 ms signals come from a kernel timer aimed at the main thread:
            # the probe thread needs the GIL to send any, and the main thread can
            # hold it through the few ms from the last import to exec() (PySide2
            # creating the app missed 11 of 15 runs with the thread sending them).
            native_id = threading.main_thread().native_id
            self._probe_timer = None if native_id is None else _posix_timer.create(
                _posix_timer.CLOCK_MONOTONIC, native_id, signum, 0.001, 0.001)
        else:
            from looptools.inapp import _pending

            self._probe_send = _pending.sender(self._qt_probe_pending)
            if self._probe_send is None:
                return
            self.qt_probe = "pending-call"
        if self._probe_timer is not None:
            # Qt's import starting is seen here, on the importing thread, and
            # starts the 1 ms signals at once: on a busy machine the probe
            # thread may not run at all between the imports and exec().
            self._import_watch = _QtImportWatch(self)
            sys.meta_path.insert(0, self._import_watch)
        if _wakeup.fd != -1:
            self._probe_to_pending()
        self._watch_probe_collections()
        thread = threading.Thread(target=self._qt_probe, args=(self._probe_send,),
                                  name="looptools-qt-probe", daemon=True)
        self._probe_thread = thread
        thread.start()

    def _wakeup_noted(self, has_fd: bool) -> None:
        """(Main thread) The app set or took away its signal wakeup descriptor
        (looptools.inapp._wakeup; the stall watchdog's ticks follow it on their own)."""
        if has_fd:
            self._probe_to_pending()

    def _probe_to_pending(self) -> None:
        """Each probe signal would write a byte to the app's wakeup descriptor: send
        pending calls instead, which do not, from now on (the 1 ms timer stops)."""
        if self.qt_probe != "signal" or self._probe_done:
            return
        from looptools.inapp import _pending

        pending = _pending.sender(self._qt_probe_pending)
        if pending is None:
            return
        with self._probe_switch:  # the probe thread arms the timer under it
            timer = self._probe_timer
            if timer is not None:
                self._probe_armed = False
                timer.disarm()
            self._probe_send = pending
            self.qt_probe = "pending-call"

    def _qt_import_started(self) -> None:
        """(Importing thread) A Qt module starts importing: hurry until exec is wrapped."""
        if self._qt_seen_at is None:
            self._qt_seen_at = time.perf_counter()
        with self._probe_switch:
            timer = self._probe_timer
            if timer is not None and not self._probe_armed and not self._probe_done \
                    and self.qt_probe == "signal" \
                    and time.perf_counter() - self._qt_seen_at < 2.0:
                self._probe_armed = True
                timer.arm()

    def _remove_import_watch(self) -> None:
        watch, self._import_watch = self._import_watch, None
        if watch is not None:
            try:
                sys.meta_path.remove(watch)
            except ValueError:
                pass
        self._unwatch_probe_collections()

    def _watch_probe_collections(self) -> None:
        """(Main thread, as the probe starts) Know when the collector runs on the
        main thread: the handler must not touch Qt then.

        A collection runs finalizers and weakref callbacks (Python) wherever it
        was set off, and that can be inside C code of a binding making a class
        lazily (PySide6 builds ``QtWidgets.QApplication`` at its first lookup,
        qasync's import); the probe's signal is handled in that Python, and its
        lookups of the application classes started making the same class again,
        inside the first: 21 of 80 loaded runs of a qasync app with a thread
        leaving cyclic garbage with ``__del__`` crashed in libshiboken6 (helper
        53), none without looptools.  The Python stack cannot show the C below
        it, so the collector says: one function first on ``gc.callbacks`` marks a
        collection's start before any other callback runs, one last marks its
        end after all of them (a callback the app appends later is Python run
        by the collector too: each, called at its own end of the list, puts the
        other back at the far end, which CPython's walk over the live list
        allows without skipping one).  Both go when the probe ends (by
        identity)."""
        main = threading.main_thread().ident
        callbacks = gc.callbacks

        def first(phase: str, info: dict[str, Any]) -> None:
            if phase == "start" and threading.get_ident() == main:
                self._probe_collecting = True
                if callbacks[-1] is not last and last in callbacks:
                    callbacks.remove(last)  # after this one: none is skipped
                    callbacks.append(last)

        def last(phase: str, info: dict[str, Any]) -> None:
            if phase == "stop" and threading.get_ident() == main:
                self._probe_collecting = False
                if callbacks[0] is not first and first in callbacks:
                    callbacks.remove(first)  # before this one, the last: the walk ends
                    callbacks.insert(0, first)

        self._probe_gc = (first, last)
        # A signal is handled as a function starts, before its first line: one
        # handled as `first` starts is in a collection the flag does not show yet.
        self._probe_gc_codes = (first.__code__, last.__code__)
        gc.callbacks.insert(0, first)
        gc.callbacks.append(last)

    def _unwatch_probe_collections(self) -> None:
        pair, self._probe_gc = self._probe_gc, None
        if pair is None:
            return
        for function in pair:
            for i, callback in enumerate(gc.callbacks):
                if callback is function:
                    del gc.callbacks[i]
                    break
        self._probe_collecting = False

    def _qt_probe(self, send: Any) -> None:
        """The probe thread: no Qt here, only sys.modules and ``send()`` (a signal,
        or a pending call, to the main thread)."""
        from looptools.inapp._ourthreads import block_process_signals
        from looptools.plugins._qtbinding import NAMES

        block_process_signals()

        main = threading.main_thread().ident
        # Every 1 ms while a Qt module is imported whose application class's
        # exec is not wrapped yet (for at most 2 s after Qt is first seen): an
        # app can go from its last import to exec() in a few ms, and a handler
        # that runs during a Qt import has to leave Qt alone.  Then every 10 ms
        # for 2 s after the start and after Qt's import, then every 0.25 s.
        started = time.perf_counter()
        wait = 0.01
        timer = self._probe_timer
        try:
            while not self._probe_wake.acquire(timeout=wait):
                if self._probe_done:
                    return
                now = time.perf_counter()
                loaded = [name for name in NAMES if f"{name}.QtCore" in sys.modules]
                if loaded and self._qt_seen_at is None:
                    self._qt_seen_at = now
                seen = self._qt_seen_at
                early = now - max(started, seen or started) < 2.0
                wait = 0.01 if early else 0.25
                # Hurry from the start of Qt's import (seen by the import watch)
                # until every application class imported has its exec wrapped.
                hurry = seen is not None and now - seen < 2.0 and (
                    not loaded or any(self._exec_unhooked(name) for name in loaded))
                with self._probe_switch:
                    if self.qt_probe == "pending-call" and self._probe_send is not None \
                            and send is not self._probe_send:
                        # Switched by _probe_to_pending (the app set a wakeup
                        # descriptor), which disarmed the timer.
                        send, timer = self._probe_send, None
                    if timer is not None and hurry != self._probe_armed:
                        self._probe_armed = hurry
                        timer.arm() if hurry else timer.disarm()
                if hurry:
                    wait = 0.001
                    if timer is not None:
                        continue  # the timer sends them
                if loaded and main is not None:
                    try:
                        send()
                    except (OSError, ValueError):
                        return
        finally:
            if timer is not None and self._probe_armed:
                self._probe_armed = False
                timer.disarm()

    def _exec_unhooked(self, name: str) -> bool:
        """(Probe thread) Is a Qt application class of binding ``name`` imported
        whose exec the handler has not wrapped yet?"""
        known = self._exec_hooked.get(name)
        return known is None or known[0] != (f"{name}.QtGui" in sys.modules,
                                             f"{name}.QtWidgets" in sys.modules)

    def _qt_probe_pending(self, frame: Any) -> None:
        """The probe's pending call (looptools.inapp._pending), on the main thread."""
        self._qt_probe_handler(0, frame)

    def _qt_probe_handler(self, signum: int, frame: Any) -> None:
        """On the main thread: is there a Qt app and no asyncio loop?  Then attach."""
        if self._probe_retiring:  # stopped from another thread
            self._retire_qt_probe()
            return
        if self._in_probe_handler or self._probe_collecting or (
                frame is not None and frame.f_code in self._probe_gc_codes):
            # Not inside itself (a signal handled in the handler: a loaded machine,
            # a fast timer), nor inside a collection (_watch_probe_collections),
            # which may be on the first line of the function that marks it.
            return
        self._in_probe_handler = True
        try:
            self._look_for_qt_app(frame)
        finally:
            self._in_probe_handler = False

    def _look_for_qt_app(self, frame: Any) -> None:
        try:
            if self._probe_done or self._probe_posted or self._attaching \
                    or self.plugin is not None or self._stopped or self._broken:
                return
            if asyncio._get_running_loop() is not None:
                return
            if _inside_qt_making(frame):
                # Not in the middle of importing a Qt module or of making an
                # enum: PyQt5 creates enums in Python while QtWidgets
                # initialises, and touching its classes then crashed; PySide6
                # makes its enums lazily, and touching a class then hung.  The
                # next signal, 1 ms later, tries again.
                return
            _qtbinding = self._qtbinding
            self._hook_exec(_qtbinding)
            timer = self._probe_timer
            loaded = _qtbinding.loaded()
            if timer is not None and self._probe_armed and loaded and not any(
                    self._exec_unhooked(b.name) for b in loaded):
                self._probe_armed = False  # every exec is wrapped: no more hurry
                timer.disarm()
            binding = _qtbinding.with_app()
            if binding is None:
                return
            if binding.QtCore.QThread.currentThread().loopLevel() > 0:
                # Inside the app's event loop (a slot or timer running Python,
                # the first chance we get when the app idles in C): attach now.
                self._attach_qt_only(binding)
                return
            self._probe_posted = True
            # Before the app's event loop: attach when it starts running.
            binding.QtCore.QTimer.singleShot(
                0, guarded_slot(functools.partial(self._attach_qt_only, binding)).slot)
        except Exception as exc:  # a KeyboardInterrupt goes on into the app's frame
            self._end_qt_probe()
            _warn(f"looptools: cannot look for a Qt app without asyncio "
                  f"({type(exc).__name__}: {exc}); such an app is not monitored")

    def _hook_exec(self, qtbinding: Any) -> None:
        """Wrap the application classes' ``exec`` of every binding imported so far
        (main thread): an app that goes from creating itself to its event loop
        with next to no Python in between is attached as it enters it."""
        for candidate in qtbinding.loaded():
            modules = (f"{candidate.name}.QtGui" in sys.modules,
                       f"{candidate.name}.QtWidgets" in sys.modules)
            known = self._exec_hooked.get(candidate.name)
            if known is not None and known[0] == modules:
                continue
            if known is not None:
                known[1]()  # hook the classes imported since, too
            self._exec_hooked[candidate.name] = (modules, qtbinding.hook_exec(
                candidate, functools.partial(self._on_exec, candidate)))

    def _on_exec(self, binding: Any) -> None:
        """The app enters Qt's event loop (main thread): attach once it runs."""
        if self._probe_done or self._probe_posted or self.plugin is not None \
                or self._stopped or self._broken:
            return
        if asyncio._get_running_loop() is not None:
            return
        self._probe_posted = True
        binding.QtCore.QTimer.singleShot(
            0, guarded_slot(functools.partial(self._attach_qt_only, binding)).slot)

    def _unhook_exec(self) -> None:
        """Main thread: put every ``exec`` we wrapped back."""
        hooked, self._exec_hooked = self._exec_hooked, {}
        for _modules, undo in hooked.values():
            try:
                undo()
            except Exception:
                pass

    def _end_qt_probe(self) -> None:
        """Let the probe thread go (any thread; it stops within 0.25 s)."""
        self._probe_done = True
        self._remove_import_watch()
        timer = self._probe_timer
        if timer is not None and self._probe_armed:
            self._probe_armed = False
            timer.disarm()
        try:
            self._probe_wake.release()
        except RuntimeError:  # already released
            pass

    def _stop_qt_probe(self) -> None:
        """End the probe and put ``exec`` and its signal back (Python sets
        handlers on the main thread only: from another, the main thread is sent
        the signal once more and undoes it in the handler)."""
        self._end_qt_probe()
        thread, self._probe_thread = self._probe_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)  # it sends no signal after this
        timer, self._probe_timer = self._probe_timer, None
        if timer is not None:
            timer.delete()  # a signal it sent is handled before the handler goes
        send = self._probe_send
        if send is None:
            return
        if threading.current_thread() is not threading.main_thread():
            # The main thread undoes it, in the handler of one last signal (or
            # pending call).
            self._probe_retiring = True
            try:
                if threading.main_thread().is_alive():
                    send()
            except (OSError, ValueError):
                pass
            return
        self._retire_qt_probe()

    def _retire_qt_probe(self) -> None:
        """Main thread: put ``exec`` and the probe's signal back."""
        self._probe_retiring = False
        self._probe_send = None
        self._unhook_exec()
        signum, self._probe_signal = self._probe_signal, None
        if signum is not None:
            from looptools.inapp import _posix_timer

            _posix_timer.restore_default(signum, self._qt_probe_handler)
        if self.qt_probe == "pending-call":
            from looptools.inapp import _pending

            _pending.stop(self._qt_probe_pending)

    def _attach_qt_only(self, binding: Any) -> None:
        # Runs on the main thread inside the Qt event loop.  The probe's signal
        # handler may run in the middle of it (during an import, say): it finds
        # _probe_posted still set and leaves it alone.
        if self._attaching:
            return
        self._attaching = True
        try:
            if self.plugin is not None or self._stopped or self._broken:
                return
            if asyncio._get_running_loop() is not None:
                return
            from looptools.plugins.qt_only import QtOnlyPlugin

            self._attach_plugin(QtOnlyPlugin(binding), None)
            self._start_running(time.perf_counter())
            app = binding.app()
            if app is not None:
                slot = guarded_slot(self._qt_quitting)
                app.aboutToQuit.connect(slot.slot)
                self._quit_slot = (app, slot)
        except Exception as exc:
            self._broken = True
            _warn(f"looptools: could not attach to the Qt main thread ({exc}); monitoring is off")
        finally:
            self._attaching = False
            self._probe_posted = False

    def _qt_quitting(self) -> None:
        """aboutToQuit, on the main thread.  Qt 5 emits it once ``exec``'s loop has
        ended; Qt 6 emits it inside ``quit()``, so from the slot that called it, which
        may go on blocking (``app.quit(); time.sleep(1)``): the loop stops when that
        slot gives control back.  A QObject deleted later marks that moment — Qt
        deletes it when control is back in the loop, and ``exec`` sends the last
        deferred deletions on its way out."""
        state = self.state
        if state is None or not state.running or self._quit_mark is not None:
            return
        plugin = self.plugin
        binding = getattr(plugin, "binding", None)
        try:
            if binding is not None and binding.QtCore.QThread.currentThread().loopLevel() > 0:
                mark = binding.QtCore.QObject()
                slot = guarded_slot(self._qt_stopped)
                mark.destroyed.connect(slot.slot)
                self._quit_mark = (mark, slot)
                mark.deleteLater()
                return
        except Exception:  # stop now, as on Qt 5 (_qt_stopped drops a mark half made)
            pass
        self._qt_stopped()

    def _qt_stopped(self) -> None:
        """The Qt-only loop has stopped (main thread)."""
        self._drop_quit_mark()
        state = self.state
        if state is not None and state.running:
            state.running = False
            if self.plugin is not None:
                self.plugin.stop_heartbeat()
            self.hub.call("loop_stopped", time.perf_counter())

    def _drop_quit_mark(self) -> None:
        mark, self._quit_mark = self._quit_mark, None
        if mark is not None:
            mark[1].close()  # deleted by Qt, or with the app; the slot does nothing now

    # -- exit ----------------------------------------------------------------------
    def _install_exit_hooks(self) -> None:
        # sys.excepthook is left alone: PyQt aborts on an exception escaping a
        # slot only while it is the default, so replacing it changes how a PyQt
        # app ends.  An unhandled exception is read at exit from sys.last_type.
        atexit.register(self._at_exit)
        self._register_shutdown_hook()
        self._wrap_os_exit()
        # SIGTERM is taken (to write the report, then die of it) only when our
        # heartbeat runs Python on the loop thread: a Python handler runs only when
        # Python runs, and an idle Qt loop runs none of its own, so with no heartbeat
        # (LOOPTOOLS_DETECTORS=tasks) a Qt app ignored SIGTERM.
        if threading.current_thread() is threading.main_thread() and self._wants_heartbeat():
            try:
                if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                    self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
                    # The app asking sees SIG_DFL, as it would without us.
                    _sigterm_view.hide(self._on_sigterm)
            except (ValueError, OSError, AttributeError):
                self._previous_sigterm = None

    def _wrap_os_exit(self) -> None:
        """``os._exit`` runs no exit hook: wrapped, it writes the report first (with the
        status it was given), then exits as asked.  In a forked child, on any other
        pid, after stop, or if the report fails, it is ``os._exit`` and nothing more."""
        original = os._exit
        pid = os.getpid()
        monitor = self

        def _exit(status: int) -> NoReturn:
            if os.getpid() == pid and monitor._os_exit is not None:
                try:
                    code = int(status)
                    info = {"reason": "normal" if code == 0 else "exit",
                            "signal": None, "exception": None, "code": code}
                    if monitor._stopped:
                        monitor._amend_exit(info)
                    else:
                        monitor.exit_info = info
                        monitor.stop()
                except BaseException:
                    pass
            original(status)

        _exit.__doc__ = original.__doc__
        os._exit = _exit
        self._os_exit = (original, _exit)

    def _register_shutdown_hook(self) -> None:
        """Have ``_at_shutdown`` called as the interpreter begins to shut down (by
        ``threading``, before it joins the app's threads and before any atexit call)."""
        register = getattr(threading, "_register_atexit", None)
        if register is None:
            return
        try:
            register(self._at_shutdown)
        except RuntimeError:  # shutting down already: atexit alone
            return
        self._shutdown_hook = True

    def _unregister_shutdown_hook(self) -> None:
        if not self._shutdown_hook:
            return
        self._shutdown_hook = False
        calls = getattr(threading, "_threading_atexits", None)
        if not isinstance(calls, list) or getattr(threading, "_SHUTTING_DOWN", False):
            return  # (once called, it does nothing: the exit hooks are gone)
        for call in list(calls):
            if getattr(call, "func", None) == self._at_shutdown:
                with contextlib.suppress(ValueError):
                    calls.remove(call)

    def _at_shutdown(self) -> None:
        """The main thread is done; the app's other threads are about to be joined,
        then the atexit calls run, last registered first.  Ours, registered as we
        started, would run after every call the app and its libraries registered
        since: after the Qt bindings' clean-up, which deletes the Qt objects
        Python owns, one by one with the GIL released, while it walks the
        binding's table of wrappers.  Our threads ran then, and our hooks were
        still in Qt (FeelUOwn on PyQt6 died of SIGSEGV in that walk, at a freed
        wrapper, under ``looptools profile``, now and then; what freed it was not
        found, see docs/design.md).  Registered again now, ours runs first: the report is
        written, our threads joined and our hooks removed before any library
        tears down, and after the app's own threads have ended.  (An atexit call
        of the app's that runs an event loop is no longer watched.)"""
        if self._stopped or not self.exit_hooks:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
            atexit.register(self._at_exit)

    def _unwrap_os_exit(self) -> None:
        saved, self._os_exit = self._os_exit, None
        if saved is not None and os._exit is saved[1]:
            os._exit = saved[0]  # (a wrapper the app put over ours stays: ours passes through)

    def _remove_exit_hooks(self) -> None:
        if not self.exit_hooks:
            return
        atexit.unregister(self._at_exit)
        self._unregister_shutdown_hook()
        if not self._exiting:
            # (At exit it stays: an atexit call of the app's that runs after ours, as
            # all do now (_at_shutdown), may still end by os._exit(n), see _amend_exit.)
            self._unwrap_os_exit()
        if self._previous_sigterm is not None and \
                threading.current_thread() is threading.main_thread():
            try:
                if _sigterm_view.getsignal(signal.SIGTERM) == self._on_sigterm:
                    signal.signal(signal.SIGTERM, self._previous_sigterm)
            except (ValueError, OSError):
                pass
            _sigterm_view.show()
            self._previous_sigterm = None

    def _at_exit(self) -> None:
        if self.exit_info["reason"] == "stopped":
            # The interpreter sets sys.last_type when it prints an unhandled
            # exception, before atexit functions run.  (Qt bindings print an
            # exception escaping a slot the same way, and the app goes on: one
            # whose traceback does not start at the top level did not end it.)
            exc_type = getattr(sys, "last_type", None) if _ended_the_program() else None
            if isinstance(exc_type, type) and issubclass(exc_type, KeyboardInterrupt):
                self.exit_info = {"reason": "signal", "signal": "SIGINT", "exception": None}
            elif isinstance(exc_type, type) and issubclass(exc_type, BaseException) \
                    and not issubclass(exc_type, SystemExit):
                value = getattr(sys, "last_value", None)
                self.exit_info = {"reason": "exception", "signal": None,
                                  "exception": f"{exc_type.__name__}: {value}"}
            else:
                self.exit_info = {"reason": "normal", "signal": None, "exception": None}
        self._exiting = True
        try:
            self.stop()
        except Exception as exc:
            _warn(f"looptools: could not finish the report: {type(exc).__name__}: {exc}")

    def _amend_exit(self, info: dict[str, Any]) -> None:
        """``os._exit(n)`` after our exit wrote the report (in an atexit call of the
        app's): the report says how the process ends after all."""
        report = self.final_report
        if report is None or self.report_path is None or not self._exiting:
            return
        self.exit_info = info
        report["meta"]["exit"] = dict(info)
        self.report_path = self._write(report)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        try:
            chained = _sigterm_view.getsignal(signal.SIGTERM) != self._on_sigterm
        except (ValueError, OSError):
            chained = False
        if chained:
            # The app installed a handler of its own since, which calls the one it
            # found, ours, though it was shown SIG_DFL (looptools.inapp._sigterm_view:
            # a reference to signal.getsignal taken before we started).  It would not
            # have called SIG_DFL: do nothing, as that would have.  The app handles
            # SIGTERM; the report is written when it ends.
            return
        self.exit_info = {"reason": "signal", "signal": "SIGTERM", "exception": None}
        try:
            if self._changing or self._attaching:
                # The signal came while this thread was attaching us (in a detector's
                # install, holding its lock): stopping here would wait for that lock
                # forever, and the app never died (seen: SIGTERM during blockbuster's
                # import).  Die as the app would, without the report.
                _warn("looptools: SIGTERM while attaching to the loop; no report written")
            else:
                self.stop()
        finally:
            # Die of SIGTERM as the app would have without us.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    # -- output ----------------------------------------------------------------------
    def _write(self, report: dict[str, Any]) -> str | None:
        path = str(self.settings.report)
        try:
            return str(write_report(report, path))
        except OSError as exc:
            reason = why(exc, path)
        # A new private file in the temp folder (never a fixed name another user could
        # plant a link at); the line says where it went.
        try:
            fallback = write_fallback(json.dumps(report, indent=1, default=str) + "\n",
                                      os.getpid())
        except OSError as again:
            _warn(f"looptools: cannot write the report to {path} ({reason}), nor to the "
                  f"temp folder ({again.strerror or again})")
            return None
        _warn(f"looptools: cannot write the report to {path} ({reason}); wrote it to "
              f"{fallback} instead")
        return str(fallback)

    def report(self) -> dict[str, Any]:
        """The report so far, as a dict matching the JSON schema."""
        report = empty_report()
        if self.loop_info is not None:
            report["loop"] = dict(self.loop_info)
        ended = datetime.datetime.now(datetime.timezone.utc)
        report["meta"].update({
            "started_at": self.started_at.isoformat(),
            "ended_at": ended.isoformat(),
            "duration_s": round(time.perf_counter() - self.started, 3),
            "threshold_ms": self.settings.threshold_ms,
            "heartbeat_ms": self.settings.heartbeat_ms,
            "detectors": [d.name for d in self.hub.detectors if d.name in LISTED_DETECTORS],
            "settings_sources": dict(self.settings.sources),
            "exit": dict(self.exit_info),
        })
        if self.settings.rejected:
            report["meta"]["settings_rejected"] = [dict(r) for r in self.settings.rejected]
        for detector in list(self.hub.detectors):
            try:
                detector.contribute(report)
            except Exception as exc:
                self.hub.disable(detector, exc, "report")
        report["detector_errors"] = list(self.hub.errors)
        return report

    def snapshot(self) -> dict[str, Any]:
        """A small view of the current state, for the live dashboard."""
        out: dict[str, Any] = {
            "t": round(time.perf_counter() - self.started, 3),
            "loop": self.loop_info,
            "running": bool(self.state and self.state.running),
        }
        for detector in list(self.hub.detectors):
            try:
                out.update(detector.snapshot())
            except Exception:
                continue
        return out
