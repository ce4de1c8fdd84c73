"""Qt parts shared by the Qt loop plugins: a precise heartbeat timer and the dispatcher.

Imported only when attaching to a loop whose module is already loaded, so the
monitor never imports Qt for an app that does not use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractEventDispatcher, QCoreApplication, Qt, QTimer


class QtHeartbeat:
    """A repeating ``PreciseTimer`` on the loop thread."""

    def __init__(self) -> None:
        self._timer: QTimer | None = None

    def start(self, beat: Callable[[float | None], None], interval_s: float) -> None:
        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(max(1, round(interval_s * 1000)))
        timer.timeout.connect(lambda: beat(None))
        timer.start()
        self._timer = timer

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is None:
            return
        try:
            timer.stop()
            timer.timeout.disconnect()
        except (RuntimeError, TypeError):  # already gone with the application
            pass


def dispatcher() -> Any:
    if QCoreApplication.instance() is None:
        return None
    return QAbstractEventDispatcher.instance()


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
    _heartbeat: QtHeartbeat

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float,
                        driver: Any = None) -> None:
        # A Qt timer on the loop thread: no other thread is needed.
        if not hasattr(self, "_heartbeat"):
            self._heartbeat = QtHeartbeat()
        self._heartbeat.start(beat, interval_s)

    def stop_heartbeat(self) -> None:
        if hasattr(self, "_heartbeat"):
            self._heartbeat.stop()

    def thread_fds(self) -> list[int] | None:
        return []  # the heartbeat is a Qt timer: the watchdog thread touches no descriptor

    def dispatcher(self) -> Any:
        return dispatcher()
