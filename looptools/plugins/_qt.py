"""Qt parts shared by the Qt loop plugins: a precise heartbeat timer and the dispatcher.

Works with any of the four bindings (``looptools.plugins._qtbinding``), and
imports none: the plugin is given the binding the app's loop runs on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from looptools.inapp._shield import GuardedSlot, guarded_slot
from looptools.plugins._qtbinding import QtBinding


class QtHeartbeat:
    """A repeating ``PreciseTimer`` on the loop thread."""

    def __init__(self, binding: QtBinding) -> None:
        self.binding = binding
        self._timer: Any = None
        self._slot: GuardedSlot | None = None

    def start(self, beat: Callable[[float | None], None], interval_s: float) -> None:
        core = self.binding.QtCore
        timer = core.QTimer()
        timer.setTimerType(self.binding.enum("TimerType", "PreciseTimer"))
        timer.setInterval(max(1, round(interval_s * 1000)))
        # A slot that is no Python function: a Ctrl-C arriving as it starts is
        # passed on to the app (looptools.inapp._shield).
        self._slot = guarded_slot(functools.partial(beat, None))
        timer.timeout.connect(self._slot.slot)
        timer.start()
        self._timer = timer

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        slot, self._slot = self._slot, None
        if timer is None:
            return
        try:
            timer.stop()
            timer.timeout.disconnect()
        except (RuntimeError, TypeError):  # already gone with the application
            pass
        if slot is not None:
            slot.close()

    def forget(self) -> None:
        """In a forked child: drop the timer without calling Qt."""
        self._timer = None
        self._slot = None


def dispatcher_name(instance: Any) -> str | None:
    if instance is None:
        return None
    try:
        return str(instance.metaObject().className())
    except RuntimeError:
        return type(instance).__name__


class QtLoopPlugin:
    """Mixin for the Qt plugins: the heartbeat is a Qt timer, and there is a dispatcher."""

    is_qt = True
    #: set by the plugin's constructor: the binding the app's Qt loop runs on
    binding: QtBinding
    _heartbeat: QtHeartbeat

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float,
                        driver: Any = None) -> None:
        # A Qt timer on the loop thread: no other thread is needed.
        if not hasattr(self, "_heartbeat"):
            self._heartbeat = QtHeartbeat(self.binding)
        self._heartbeat.start(beat, interval_s)

    def heartbeat_interval_s(self, interval_s: float) -> float:
        # Every ``interval_s``, as asked.  (Defined here, ahead of AsyncioPlugin's in
        # qasync's MRO: that one says plain asyncio's 100 ms probe period, and the
        # report said qasync's lag was sampled every 100 ms while it beat every 10.)
        return interval_s

    def stop_heartbeat(self) -> None:
        if hasattr(self, "_heartbeat"):
            self._heartbeat.stop()

    def forget_heartbeat(self) -> None:
        if hasattr(self, "_heartbeat"):
            self._heartbeat.forget()

    def thread_fds(self) -> list[int] | None:
        return []  # the heartbeat is a Qt timer: the watchdog thread touches no descriptor

    def dispatcher(self) -> Any:
        return self.binding.dispatcher()

    def qt_info(self) -> dict[str, Any]:
        return {"binding": self.binding.name, "binding_version": self.binding.version,
                "qt_version": self.binding.qt_version}
