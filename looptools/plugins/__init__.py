"""Loop plugins: one per loop kind, each knowing how to time that loop's callbacks.

The kind is detected from the running loop, never configured:

========== ===================================== ===========================================
kind       loop                                  callbacks are timed at
========== ===================================== ===========================================
asyncio    asyncio's selector loops and their    ``asyncio.events.Handle._run`` (class patch)
           subclasses that keep its ``_run_once``
uvloop     ``uvloop.Loop`` and subclasses        not timed (Cython handles); stalls, lag, tasks
qasync     ``qasync.QEventLoop`` and subclasses, ``asyncio.events.Handle._run``
           on any Qt binding
qtasyncio  ``PySide6.QtAsyncio`` event loop and   ``QAsyncioHandle._cb`` (``Handle._run`` is
           subclasses                            never called there)
qt         a Qt main thread with no asyncio loop no asyncio callbacks; Qt heartbeat only
unknown    any other loop                        ``Handle._run`` if its handles use it;
                                                 stalls only inside a timed callback
========== ===================================== ===========================================

The kind is recognised by what the loop *is* (``isinstance`` against the
classes of the libraries the app has imported), never by module name: an app's
own subclass of ``qasync.QEventLoop`` is a qasync loop.  A loop of a kind
looptools does not know is watched conservatively: its idle time cannot be
told from a stall, so only time inside a timed callback counts as stalled, and
the report says what was not measured.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from looptools.inapp.state import LoopState


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
    #: the stall watchdog has no ticks to date runs by: every run is stamped while set
    stamps_needed = False
    #: what set_precise last asked (the Qt dispatcher, while it watches)
    asked_precise = False
    #: the loop's idle time cannot be recognised: only a callback in progress is a stall
    conservative = False
    #: what cannot be measured on this kind of loop, in the report's words
    not_measured: tuple[str, ...] = ()

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
            "recognised": not self.conservative,
            "not_measured": list(self.not_measured),
        }

    # -- callback timing -------------------------------------------------
    def install_timing(self, state: LoopState) -> bool:
        """Start timing this loop's callbacks; False when this loop cannot be timed."""
        return False

    def uninstall_timing(self) -> None:
        """Undo :meth:`install_timing`."""

    def precise_wanted(self) -> bool:
        """Whether the hook should be the precise one: anyone asks for it."""
        return self.asked_precise or self.always_precise or self.stamps_needed

    def set_precise(self, precise: bool) -> None:
        """Switch between the lean and the precise hot path (``looptools.inapp.state``)."""
        self.asked_precise = precise
        self._retime()

    def need_stamps(self, on: bool) -> bool:
        """While ``on``, stamp the start and end of every run (the precise hot path),
        whatever :meth:`set_precise` last asked.  True when every run on the loop
        thread is stamped now, or there are no runs to stamp.

        The stall watchdog asks when it has no ticks (docs/design.md, "Looking"):
        with every run stamped it need not look every few ms to date them."""
        self.stamps_needed = on
        return self._retime() and on

    def _retime(self) -> bool:
        """Put the hook :meth:`precise_wanted` says in place; False when none is installed."""
        return False

    # -- heartbeat ---------------------------------------------------------
    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float,
                        driver: Driver | None = None) -> None:
        """Call ``beat`` on the loop thread every ``interval_s``; ``driver`` may pace it."""
        raise NotImplementedError

    def stop_heartbeat(self) -> None:
        raise NotImplementedError

    def heartbeat_interval_s(self, interval_s: float) -> float:
        """How often :meth:`start_heartbeat` beats when asked for ``interval_s``."""
        return interval_s

    def forget_heartbeat(self) -> None:
        """In a forked child: drop the heartbeat without touching threads, locks or Qt."""

    def thread_fds(self) -> list[int] | None:
        """The descriptors the watchdog thread touches for this loop (its heartbeat
        jobs), or None when they cannot be known (the thread then shares the
        app's descriptor table; see ``looptools.inapp._fdtable``)."""
        return None

    def queued_handles(self) -> list[Any] | None:
        """The handles waiting in the loop's queues to run (ready callbacks and the
        loop's own per-callback timers), or None where the queues cannot be read."""
        return None

    # -- Qt ----------------------------------------------------------------
    def dispatcher(self) -> Any:
        """The Qt event dispatcher of the loop thread, or None."""
        return None


def _class_in(module: str, name: str) -> type | None:
    """``module.name`` if the app has imported ``module`` and it is a class."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) else None


def plugin_for(loop: Any) -> LoopPlugin:
    """The plugin for a running ``loop``, by what it is (most specific first)."""
    from looptools.plugins.asyncio_loop import AsyncioPlugin, UnknownLoopPlugin, UvloopPlugin

    qasync_loop = _class_in("qasync", "_QEventLoop")
    if qasync_loop is not None and isinstance(loop, qasync_loop):
        from looptools.plugins._qtbinding import for_qasync
        from looptools.plugins.qasync_loop import QasyncPlugin

        binding = for_qasync()
        if binding is not None:
            return QasyncPlugin(loop, binding)
        return UnknownLoopPlugin(loop)
    qtasyncio_loop = _class_in("PySide6.QtAsyncio.events", "QAsyncioEventLoop")
    if qtasyncio_loop is not None and isinstance(loop, qtasyncio_loop):
        from looptools.plugins._qtbinding import binding as qt_binding
        from looptools.plugins.qtasyncio_loop import QtAsyncioPlugin

        pyside = qt_binding("PySide6")
        if pyside is not None:
            return QtAsyncioPlugin(loop, pyside)
        return UnknownLoopPlugin(loop)
    uvloop_loop = _class_in("uvloop", "Loop")
    if uvloop_loop is not None and isinstance(loop, uvloop_loop):
        return UvloopPlugin(loop)
    if AsyncioPlugin.matches(loop):
        return AsyncioPlugin(loop)
    return UnknownLoopPlugin(loop)
