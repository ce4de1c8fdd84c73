"""Loop plugins: one per loop kind, each knowing how to time that loop's callbacks.

The kind is detected from the running loop, never configured:

========== ===================================== ===========================================
kind       loop                                  callbacks are timed at
========== ===================================== ===========================================
asyncio    ``asyncio.BaseEventLoop`` subclasses  ``asyncio.events.Handle._run`` (class patch)
uvloop     ``uvloop.Loop``                       not timed (Cython handles); stalls, lag, tasks
qasync     ``qasync.QEventLoop`` (selector/IOCP) ``asyncio.events.Handle._run``
qtasyncio  ``PySide6.QtAsyncio`` event loop       ``QAsyncioHandle._cb`` (``Handle._run`` is
                                                 never called there)
qt         a Qt main thread with no asyncio loop no asyncio callbacks; Qt heartbeat only
========== ===================================== ===========================================
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from looptools._state import LoopState


class Driver(Protocol):
    """Runs jobs every few ms: ``job(now, dated)`` (the stall watchdog).

    ``dated`` is when the job was due to run by the driver's own schedule (its
    tick), or 0.0 when the driver cannot say.
    """

    def add_job(self, job: Callable[[float, float], Any]) -> None: ...

    def remove_job(self, job: Callable[[float, float], Any]) -> None: ...


class LoopPlugin:
    """How looptools attaches to one kind of loop.  Every install has an uninstall."""

    kind = "none"
    is_qt = False
    #: time every callback precisely even when nobody asks (no watchdog to arm runs)
    always_precise = False

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return False

    def info(self) -> dict[str, Any]:
        loop_type = type(self.loop)
        return {
            "kind": self.kind,
            "class": f"{loop_type.__module__}.{loop_type.__qualname__}" if self.loop else None,
            "variant": None,
            "callback_timing": False,
            "qt_dispatcher": None,
        }

    # -- callback timing -------------------------------------------------
    def install_timing(self, state: LoopState) -> bool:
        """Start timing this loop's callbacks; False when this loop cannot be timed."""
        return False

    def uninstall_timing(self) -> None:
        """Undo :meth:`install_timing`."""

    def set_precise(self, precise: bool) -> None:
        """Switch between the lean and the precise hot path (``looptools._state``)."""

    # -- heartbeat ---------------------------------------------------------
    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float,
                        driver: Driver | None = None) -> None:
        """Call ``beat`` on the loop thread every ``interval_s``; ``driver`` may pace it."""
        raise NotImplementedError

    def stop_heartbeat(self) -> None:
        raise NotImplementedError

    def thread_fds(self) -> list[int] | None:
        """The descriptors the watchdog thread touches for this loop (its heartbeat
        jobs), or None when they cannot be known (the thread then shares the
        app's descriptor table; see ``looptools._fdtable``)."""
        return None

    # -- Qt ----------------------------------------------------------------
    def dispatcher(self) -> Any:
        """The Qt event dispatcher of the loop thread, or None."""
        return None


def plugin_for(loop: Any) -> LoopPlugin:
    """The plugin for a running ``loop`` (checked most specific first)."""
    from looptools.plugins.asyncio_loop import AsyncioPlugin, UvloopPlugin

    candidates: list[type[LoopPlugin]] = []
    module = type(loop).__module__
    if "PySide6.QtAsyncio" in sys.modules and module.startswith("PySide6"):
        from looptools.plugins.qtasyncio_loop import QtAsyncioPlugin

        candidates.append(QtAsyncioPlugin)
    if "qasync" in sys.modules and module.startswith("qasync"):
        from looptools.plugins.qasync_loop import QasyncPlugin

        candidates.append(QasyncPlugin)
    candidates += [UvloopPlugin, AsyncioPlugin]
    for candidate in candidates:
        if candidate.matches(loop):
            return candidate(loop)
    return AsyncioPlugin(loop)
