"""qasync: callbacks run through ``asyncio.events.Handle._run`` from Qt timer events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from looptools.plugins import LoopPlugin
from looptools.plugins._qt import QtHeartbeat, dispatcher, dispatcher_name
from looptools.plugins.asyncio_loop import install_handle_timing, uninstall_handle_timing


class QasyncPlugin(LoopPlugin):
    kind = "qasync"
    is_qt = True

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self._heartbeat = QtHeartbeat()
        self._timed = False

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return type(loop).__module__.startswith("qasync")

    def info(self) -> dict[str, Any]:
        info = super().info()
        name = type(self.loop).__name__
        info["variant"] = "iocp" if "Iocp" in name or "Proactor" in name else "selector"
        info["callback_timing"] = self._timed
        info["qt_dispatcher"] = dispatcher_name(self.dispatcher())
        return info

    def install_timing(self, state: Any) -> bool:
        install_handle_timing(state)
        self._timed = True
        return True

    def uninstall_timing(self) -> None:
        if self._timed:
            uninstall_handle_timing()
            self._timed = False

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float) -> None:
        self._heartbeat.start(beat, interval_s)

    def stop_heartbeat(self) -> None:
        self._heartbeat.stop()

    def dispatcher(self) -> Any:
        return dispatcher()
