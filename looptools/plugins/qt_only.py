"""A Qt main thread with no asyncio loop (e.g. ``QThreadPool`` workers run ``asyncio.run``).

There are no asyncio callbacks to time on the main thread, but its freezes are
still caught: a Qt heartbeat feeds the stall watchdog, loop lag and the
dispatcher's busy/idle accounting.  Any of the four Qt bindings.
"""

from __future__ import annotations

from typing import Any

from looptools.plugins import LoopPlugin
from looptools.plugins._qt import QtLoopPlugin, dispatcher_name
from looptools.plugins._qtbinding import QtBinding


class QtOnlyPlugin(QtLoopPlugin, LoopPlugin):
    kind = "qt"
    not_measured = ("asyncio callbacks (there is no asyncio loop on this thread)",
                    "blocking calls (recorded only where an asyncio loop runs)")

    def __init__(self, binding: QtBinding) -> None:
        super().__init__(None)
        self.binding = binding

    def need_stamps(self, on: bool) -> bool:
        return True  # no asyncio runs: Qt's are dated by the heartbeat, stamped on this thread

    def info(self) -> dict[str, Any]:
        app = self.binding.app()
        return {
            "kind": self.kind,
            "class": f"{type(app).__module__}.{type(app).__qualname__}" if app else None,
            "variant": None,
            "callback_timing": False,
            "qt_dispatcher": dispatcher_name(self.dispatcher()),
            "recognised": True,
            "not_measured": list(self.not_measured),
            **self.qt_info(),
        }
