"""A Qt main thread with no asyncio loop (e.g. ``QThreadPool`` workers run ``asyncio.run``).

There are no asyncio callbacks to time on the main thread, but its freezes are
still caught: a Qt heartbeat feeds the stall watchdog, loop lag and the
dispatcher's busy/idle accounting.
"""

from __future__ import annotations

from typing import Any

from looptools.plugins import LoopPlugin
from looptools.plugins._qt import QtLoopPlugin, dispatcher_name


class QtOnlyPlugin(QtLoopPlugin, LoopPlugin):
    kind = "qt"

    def __init__(self, loop: Any = None) -> None:
        super().__init__(loop)

    def info(self) -> dict[str, Any]:
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        return {
            "kind": self.kind,
            "class": f"{type(app).__module__}.{type(app).__qualname__}" if app else None,
            "variant": None,
            "callback_timing": False,
            "qt_dispatcher": dispatcher_name(self.dispatcher()),
        }
