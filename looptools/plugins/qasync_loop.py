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

    def queued_handles(self) -> list[Any] | None:
        """asyncio's ready queue and qasync's ``call_soon``/``call_later`` handles, each
        waiting on a Qt timer of its ``_SimpleTimer`` (timer id -> handle)."""
        handles = super().queued_handles() or []
        timer = getattr(self.loop, "_timer", None)
        waiting = getattr(timer, "_SimpleTimer__callbacks", None)
        if isinstance(waiting, dict):
            handles += list(waiting.values())
        return handles

    def info(self) -> dict[str, Any]:
        info = super().info()
        name = type(self.loop).__name__
        info["variant"] = "iocp" if "Iocp" in name or "Proactor" in name else "selector"
        info["qt_dispatcher"] = dispatcher_name(self.dispatcher())
        info.update(self.qt_info())
        return info
