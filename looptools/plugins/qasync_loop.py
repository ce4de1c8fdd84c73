"""qasync: callbacks run through ``asyncio.events.Handle._run`` from Qt timer events.

Any subclass of qasync's loop is this kind, on whichever Qt binding qasync chose.
"""

from __future__ import annotations

from typing import Any

from looptools.plugins._qt import QtLoopPlugin, dispatcher_name
from looptools.plugins._qtbinding import QtBinding
from looptools.plugins.asyncio_loop import AsyncioPlugin


class QasyncPlugin(QtLoopPlugin, AsyncioPlugin):  # type: ignore[misc]
    """Timing as plain asyncio (``Handle._run``); heartbeat and dispatcher as Qt."""

    kind = "qasync"

    def __init__(self, loop: Any, binding: QtBinding) -> None:
        super().__init__(loop)
        self.binding = binding

    def info(self) -> dict[str, Any]:
        info = super().info()
        name = type(self.loop).__name__
        info["variant"] = "iocp" if "Iocp" in name or "Proactor" in name else "selector"
        info["qt_dispatcher"] = dispatcher_name(self.dispatcher())
        info.update(self.qt_info())
        return info
