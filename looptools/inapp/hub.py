"""The one interface where loop plugins and detectors meet.

Modelled on trio's ``Instrument``: every hook is optional, the hub indexes only
the hooks a detector overrides (an unused hook costs nothing), and a detector
that raises is switched off with one warning instead of hurting the host app.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from looptools.inapp.state import LoopState
    from looptools.plugins import LoopPlugin

HOOKS: tuple[str, ...] = (
    "attach",  # (state, plugin) on the loop thread, when a loop is attached
    "detach",  # () when the loop is detached or the monitor stops
    "loop_started",  # (now) the loop began running (loop thread)
    "loop_stopped",  # (now) the loop stopped running (loop thread)
    "loop_left",  # (now) the loop's run_forever returned (loop thread; after loop_stopped)
    "slow_callback",  # (handle, started, duration) a callback over the threshold (loop thread)
    "heartbeat",  # (now, lag) every heartbeat (loop thread)
    "tick",  # (now) about once per task_audit_s (loop thread)
    "beat_done",  # () as every heartbeat returns, after heartbeat and tick (loop thread)
    "stall_started",  # (stall) watchdog thread
    "stall_ended",  # (stall) watchdog thread
    "event",  # (kind, payload) any detector's notable event, for streaming
)


class Detector:
    """Base class of detectors: override any subset of the hooks.

    Hooks on the loop thread must be O(1): no I/O, no locks, no formatting.
    """

    name: ClassVar[str] = "detector"
    #: set by :meth:`Hub.add`
    hub: Hub | None = None

    def attach(self, state: LoopState, plugin: LoopPlugin) -> None:
        """Called on the loop thread when a loop is attached."""

    def detach(self) -> None:
        """Undo everything :meth:`attach` installed."""

    def forget(self) -> None:
        """In a child made by ``fork``: undo what :meth:`attach` installed without
        waiting on a thread, a lock or Qt (none of them survived the fork).
        The default is :meth:`detach`; detectors with threads or Qt override it."""
        self.detach()

    def before_fork(self) -> None:
        """The process is about to fork (the forking thread): leave nothing running
        that the child would inherit half-way (a C timer thread, a held lock)."""

    def after_fork_in_parent(self) -> None:
        """The fork is done, in the parent: resume what :meth:`before_fork` paused."""

    def loop_started(self, now: float) -> None: ...
    def loop_stopped(self, now: float) -> None: ...
    def loop_left(self, now: float) -> None: ...
    def slow_callback(self, handle: Any, started: float, duration: float) -> None: ...
    def heartbeat(self, now: float, lag: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def beat_done(self) -> None: ...
    def stall_started(self, stall: Any) -> None: ...
    def stall_ended(self, stall: Any) -> None: ...
    def event(self, kind: str, payload: dict[str, Any]) -> None: ...

    def contribute(self, report: dict[str, Any]) -> None:
        """Add this detector's section(s) to ``report`` (off the loop thread)."""

    def snapshot(self) -> dict[str, Any]:
        """A small, JSON-able view of the current state for the dashboard."""
        return {}


def _overrides(detector: Detector, hook: str) -> bool:
    return getattr(type(detector), hook, None) is not getattr(Detector, hook)


class Hub:
    """Dispatches hooks to detectors; removes a detector that raises."""

    def __init__(self, warn: Callable[[str], None] | None = None) -> None:
        self.detectors: list[Detector] = []
        self.errors: list[dict[str, str]] = []
        self._index: dict[str, tuple[Detector, ...]] = {hook: () for hook in HOOKS}
        self._lock = threading.RLock()  # reentrant: see StallWatchdog._lock
        self._warn = warn or (lambda line: print(line, file=sys.stderr))
        self.started = time.perf_counter()

    def add(self, detector: Detector) -> None:
        detector.hub = self
        self.detectors.append(detector)
        self._reindex()

    def _reindex(self) -> None:
        self._index = {
            hook: tuple(d for d in self.detectors if _overrides(d, hook)) for hook in HOOKS
        }

    def has(self, hook: str) -> bool:
        return bool(self._index[hook])

    def get(self, name: str) -> Detector | None:
        for detector in self.detectors:
            if detector.name == name:
                return detector
        return None

    def call(self, hook: str, *args: Any) -> None:
        for detector in self._index[hook]:
            try:
                getattr(detector, hook)(*args)
            except Exception as exc:  # a broken detector must not break the app
                self.disable(detector, exc, hook)

    def disable(self, detector: Detector, exc: BaseException, where: str = "") -> None:
        """Switch ``detector`` off after it raised; warn once."""
        with self._lock:
            if detector not in self.detectors:
                return
            self.detectors.remove(detector)
            self._reindex()
        frames = traceback.extract_tb(exc.__traceback__)
        origin = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        message = f"{type(exc).__name__}: {exc}{origin}"
        self.errors.append({"detector": detector.name, "error": message, "hook": where})
        self._warn(f"looptools: detector {detector.name!r} failed in {where or 'hook'} "
                   f"and was switched off ({message}); the app continues")
        try:
            detector.detach()
        except Exception:
            pass

    def warn(self, line: str) -> None:
        """One line to the user (stderr by default)."""
        self._warn(line)

    def emit(self, kind: str, /, **payload: Any) -> None:
        """A notable event (stall, slow callback, …) for streaming consumers."""
        if self._index["event"]:
            self.call("event", kind, payload)
