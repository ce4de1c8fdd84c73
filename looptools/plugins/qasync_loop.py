"""qasync: callbacks run through ``asyncio.events.Handle._run`` from Qt timer events."""

from __future__ import annotations

from typing import Any

from looptools.plugins._qt import QtLoopPlugin, dispatcher_name
from looptools.plugins.asyncio_loop import AsyncioPlugin


class QasyncPlugin(QtLoopPlugin, AsyncioPlugin):  # type: ignore[misc]
    """Timing as plain asyncio (``Handle._run``); heartbeat and dispatcher as Qt."""

    kind = "qasync"

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return type(loop).__module__.startswith("qasync")

    def info(self) -> dict[str, Any]:
        info = super().info()
        name = type(self.loop).__name__
        info["variant"] = "iocp" if "Iocp" in name or "Proactor" in name else "selector"
        info["qt_dispatcher"] = dispatcher_name(self.dispatcher())
        return info
